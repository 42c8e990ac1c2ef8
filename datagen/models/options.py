"""The arguments each model backend takes (`roles.ROLE.args` in a pipeline file), declared and checked.

An unknown, misspelt or out-of-range argument is a configuration error naming the field and what is allowed,
before any work starts; nothing is ignored silently. The settings that make a role fast on a GPU (SDPA,
channels_last, fused q/k/v projections, torch.compile) are arguments like any other; bf16 is the role's `dtype`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from datagen.arguments import Arguments, parse_arguments


class Options(Arguments):
    @classmethod
    def parse(cls, args: dict, role: str) -> Options:
        """`args` checked against this backend's fields; a ConfigError names `roles.ROLE.args.FIELD`."""
        return parse_arguments(cls, args, f"roles.{role}.args", "backend")


class NoOptions(Options):
    """Backends without arguments (oracle, scene, template ...)."""


class VisionOptions(Options):
    """transformers vision models (SAM, CLIP, DINOv2, Depth Anything, SegFormer, ViTPose)."""

    attention: Literal["sdpa", "eager"] | None = None
    """Attention implementation (transformers' `attn_implementation`); None keeps the model's default (SDPA
    where the architecture has it). `eager` is the naive baseline of `datagen bench gpu`."""


class GroundingOptions(VisionOptions):
    box_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    """A named object is found when its best box scores at least this (the Grounding DINO authors' default)."""
    text_threshold: float = Field(default=0.25, ge=0.0, le=1.0)
    """Tokens of the phrase scoring at least this make up a box's label (the authors' default)."""


class DiffusionOptions(Options):
    """diffusers text-to-image and inpainting (Stable Diffusion 1.5 and SDXL families)."""

    steps: int = Field(default=25, ge=1, le=1000)
    """Denoising steps."""
    guidance: float = Field(default=7.5, ge=0.0, le=50.0)
    """Classifier-free guidance scale."""
    negative_prompt: str = ""
    """Text the images are steered away from."""
    strength: float = Field(default=1.0, gt=0.0, le=1.0)
    """Inpainting: how much of the masked region is re-noised (1 repaints it from scratch)."""
    pipeline: str | None = None
    """The diffusers pipeline class (default: AutoPipelineForText2Image / AutoPipelineForInpainting)."""
    attention: Literal["sdpa", "eager"] = "sdpa"
    """PyTorch's scaled-dot-product attention (diffusers' default) or the classic processors (the naive baseline)."""
    channels_last: bool = False
    """UNet and VAE in the NHWC layout that tensor cores want; tested to give the same pixels."""
    fuse_qkv: bool = False
    """One fused q/k/v projection matmul instead of three per self-attention (UNet and VAE)."""
    compile: bool = False
    """torch.compile of the UNet (inpainting and text-to-image; prompt-to-prompt's attention processors are left
    uncompiled). Its warm-up is the first micro-batch of a worker; `datagen bench` warms up outside the timing."""
    batch_encode: bool = True
    """Inpainting with Stable Diffusion's pipeline (a 9-channel UNet, strength 1): the text embedded once per distinct
    prompt of a call, and the masked images VAE-encoded as one batch, each item's noise still drawn from its own
    generator in diffusers' order; false: diffusers' own path, which encodes one item at a time (the baseline)."""


class FluxOptions(Options):
    """What the diffusers FLUX.1 backends share (datagen/models/flux.py)."""

    steps: int = Field(default=28, ge=1, le=1000)
    """Denoising steps (flow matching; Black Forest Labs' examples use 28-50)."""
    guidance: float = Field(default=30.0, ge=0.0, le=100.0)
    """Distilled guidance, fed to the transformer (one forward per step, no classifier-free pass)."""
    max_sequence_length: int = Field(default=512, ge=16, le=512)
    """T5 tokens of the prompt (FLUX.1's limit is 512); shorter is faster, and captions rarely need 512."""
    pipeline: str | None = None
    """The diffusers pipeline class (default: FluxFillPipeline for inpaint, FluxKontextPipeline for the editor)."""
    fuse_qkv: bool = False
    """One fused q/k/v projection matmul instead of three per attention of the transformer."""
    compile: bool = False
    """torch.compile of the transformer; its warm-up is the first micro-batch of a worker."""
    batch_encode: bool = True
    """The text (CLIP and T5) embedded once per distinct prompt of a call; false: once per item (the baseline)."""


class FluxFillOptions(FluxOptions):
    """FLUX.1 Fill (inpaint): the image repainted where the mask is, from a caption; guidance 30 is its default."""

    strength: float = Field(default=1.0, gt=0.0, le=1.0)
    """How much of the masked region is re-noised (1 repaints it from scratch)."""


class FluxKontextOptions(FluxOptions):
    """FLUX.1 Kontext (editor): the image redrawn as an instruction asks."""

    guidance: float = Field(default=2.5, ge=0.0, le=100.0)
    """Distilled guidance (Kontext's default 2.5); a generator may ask for other values per item."""


class OpenCVOptions(Options):
    method: Literal["telea", "ns"] = "telea"
    """Telea's fast marching or Navier-Stokes."""
    radius: int | float = Field(default=5, ge=1, le=50)
    """Neighbourhood radius in pixels."""


class ClassifierOptions(Options):
    """The bag-of-words task classifier (datagen classify)."""


class WriterOptions(Options):
    """The instruction writer served by vLLM (datagen/writer.py); temperature and top-p are Emu Edit's."""

    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    """GPUs the model is split over (vLLM's multiprocessing executor, inside the write actor's GPUs)."""
    temperature: float = Field(default=0.9, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=8, le=8192)
    """Room for the answer: instruction, output caption and objects in the task's JSON schema."""
    max_model_len: int = Field(default=4096, ge=256, le=1 << 20)
    """Prompt (system text, in-context examples, the caption) plus answer."""
    gpu_memory_utilization: float = Field(default=0.9, ge=0.01, le=1.0)
    kv_cache_memory_bytes: int | None = Field(default=None, ge=1 << 20)
    """A fixed KV cache instead of a share of GPU memory (always fixed on CPU: 256 MiB unless given)."""
    enforce_eager: bool | None = None
    """None: eager on CPU, CUDA graphs on GPUs."""
    engine_args: dict[str, Any] = {}
    """More vllm.LLM arguments (not trust_remote_code or load_format)."""
    see_image: bool = False
    """A vision-language model writes from the input image itself as well as its caption (X2Edit, Pico-Banana);
    sources without an image (captions, topics) write from the caption alone."""
    image_edge: int = Field(default=768, ge=28, le=4096)
    """Longest edge in pixels of the image the writer sees (larger ones are shrunk, keeping their aspect)."""


class JudgeOptions(Options):
    """A vision-language judge served by vLLM (datagen/models/judge.py)."""

    max_tokens: int = Field(default=384, ge=16, le=8192)
    """Room for the answer: the reasoning (at most 240 characters), four scores, the rewritten instruction."""
    max_model_len: int = Field(default=8192, ge=256, le=1 << 20)
    """Prompt (rubric, instruction, both images' tokens) plus answer."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """0: greedy, the same verdict for the same pair."""
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    kv_cache_memory_bytes: int | None = Field(default=None, ge=1 << 20)
    """A fixed KV cache instead of a share of GPU memory (always fixed on CPU: 256 MiB unless given)."""
    enforce_eager: bool | None = None
    """None: eager on CPU, CUDA graphs on GPUs."""
    image_edge: int = Field(default=768, ge=28, le=4096)
    """Longest edge in pixels of the two images sent (larger ones are shrunk, keeping their aspect)."""
    rewrite: bool = False
    """Also write `instruction_rewritten`: an instruction saying what the edit actually did (re-captioning)."""
    engine_args: dict[str, Any] = {}
    """More vllm.LLM arguments (not trust_remote_code or load_format)."""


NSFW_CLASSES = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED",
    "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED",
    "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)  # fmt: skip
"""What the 320n detector finds (nudenet 3.4)."""
NSFW_GATED = ("BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "ANUS_EXPOSED",
         "MALE_GENITALIA_EXPOSED")  # fmt: skip
"""The classes an image is gated on by default: exposed intimate parts (not faces, feet, bellies or armpits)."""


class NSFWOptions(Options):
    """nudenet: NudeNet's 320n detector on onnxruntime."""

    classes: list[str] = Field(default_factory=lambda: list(NSFW_GATED), min_length=1)
    """The classes an image's nsfw score is taken over (default: the exposed intimate parts). Allowed: NudeNet's
    18 classes (datagen/models/nsfw.py: CLASSES)."""

    threads: int | None = Field(default=None, ge=1, le=256)
    """onnxruntime's intra-op threads; None lets it choose (all cores). One per worker process on a cluster."""

    @field_validator("classes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in NSFW_CLASSES]
        if unknown:
            raise ValueError(f"unknown class(es) {', '.join(unknown)}: allowed {', '.join(NSFW_CLASSES)}")
        return value


class AestheticOptions(VisionOptions):
    """laion: LAION-Aesthetics V2's MLP over the role's CLIP image embedding."""

    head: str | None = Field(default=None, min_length=1)
    """The predictor's weights: a folder holding model.safetensors, the file, or `tiny:aesthetic`; None: tiny's
    head over a tiny CLIP, else ~/.cache/datagen/laion-aesthetic-v2 (datagen/models/aesthetic.py says how to
    convert LAION's published .pth into it)."""


class RewardOptions(VisionOptions):
    """editreward: EditReward's Qwen2.5-VL reward model through transformers (datagen/models/reward.py)."""

    pixels: int = Field(default=256 * 28 * 28, ge=4 * 28 * 28, le=16384 * 28 * 28)
    """Each image is resized to about this many pixels (the authors' min_pixels = max_pixels = 256 * 28 * 28: 256
    tokens an image)."""
    checkpoint: str | None = Field(default=None, min_length=1, max_length=300)
    """The EditReward checkpoint (a model id such as TIGER-Lab/EditReward-Qwen2.5-7B-VL, or a local folder) whose
    `model.safetensors` (the whole model, heads included) is loaded strictly over the Qwen2.5-VL base that `model`
    names; None where the model's own weights hold the heads (the tiny twin). Preflight checks it is here."""


class TesseractOptions(Options):
    """tesseract: Tesseract 5, the OS library (datagen/models/tesseract.py)."""

    language: str = Field(default="eng", pattern=r"^[a-z_]{3,16}(\+[a-z_]{3,16})*$")
    """Tesseract's language model(s), `eng` or `eng+deu` (each installed as tesseract-ocr-LANG)."""


class OCROptions(Options):
    """rapidocr: PP-OCRv4 on onnxruntime."""

    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    """Lines read with a lower recognition confidence are dropped (rapidocr's own default text_score)."""
    threads: int | None = Field(default=None, ge=1, le=256)
    """onnxruntime's intra- and inter-op threads; None lets it choose (all cores)."""
