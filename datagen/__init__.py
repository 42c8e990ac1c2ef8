"""datagen: training data for instruction-based image editing, the Emu Edit way."""

__version__ = "0.1.0"
