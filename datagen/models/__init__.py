"""Model adapters, one module per family. Each role: cheap constructor, lazy `load()`, batched call, `model_id`.

`build(role, spec)` returns the adapter a pipeline YAML names; heavy libraries are imported only inside adapters.
"""

from __future__ import annotations

from typing import Any

from datagen.config import RoleSpec
from datagen.errors import ConfigError

# role -> backend -> "module:Class"; the module is imported only when the role is built.
BACKENDS: dict[str, dict[str, str]] = {
    "llm": {"template": "datagen.template_writer:TemplateWriter", "vllm": "datagen.writer:VLLMWriter"},
    "t2i": {"diffusers": "datagen.models.diffusion:DiffusionText2Image"},
    "grounding": {
        "oracle": "datagen.models.oracle:OracleGrounding",
        "grounding_dino": "datagen.models.grounding_dino:GroundingDINO",
    },
    "segmenter": {"oracle": "datagen.models.oracle:OracleSegmenter", "sam": "datagen.models.sam:SAMSegmenter"},
    "inpaint": {
        "opencv": "datagen.models.opencv_inpaint:OpenCVInpainter",
        "diffusers": "datagen.models.diffusion:DiffusionInpainter",
    },
    "depth": {"scene": "datagen.models.oracle:SceneDepth", "depth_anything": "datagen.models.dense:DepthAnything"},
    "semseg": {"scene": "datagen.models.oracle:SceneClasses", "segformer": "datagen.models.dense:SegFormer"},
    "pose": {"vitpose": "datagen.models.dense:ViTPose"},
    "clip": {"clip": "datagen.models.embeddings:CLIPEmbedder"},
    "classifier": {"bow": "datagen.classifier:ClassifierRole"},
    "dino": {"dinov2": "datagen.models.embeddings:DINOEmbedder"},
}
OPTIONS: dict[str, str | None] = {
    "template": "NoOptions",
    "vllm": None,  # datagen/writer.py checks its own (engine arguments, sampling)
    "diffusers": "DiffusionOptions",
    "oracle": "NoOptions",
    "grounding_dino": "GroundingOptions",
    "sam": "VisionOptions",
    "opencv": "OpenCVOptions",
    "scene": "NoOptions",
    "depth_anything": "VisionOptions",
    "segformer": "VisionOptions",
    "vitpose": "VisionOptions",
    "clip": "VisionOptions",
    "bow": "NoOptions",
    "dinov2": "VisionOptions",
}
"""Backend -> the typed arguments it takes (datagen/models/options.py); unknown keys are configuration errors."""
WEIGHTED = {"vllm", "grounding_dino", "sam", "diffusers", "clip", "dinov2", "depth_anything", "segformer", "vitpose"}
"""Backends that load weights: their role needs `model`, and preflight checks it is on this machine."""


def check_backend(role: str, backend: str, where: str) -> None:
    if role not in BACKENDS:
        raise ConfigError(f"{where}: field `roles.{role}`: unknown role; known roles: {', '.join(BACKENDS)}")
    if backend not in BACKENDS[role]:
        raise ConfigError(
            f"{where}: field `roles.{role}.backend`: unknown backend {backend!r}; "
            f"known for {role}: {', '.join(BACKENDS[role])}"
        )


def check_model(role: str, spec: RoleSpec, where: str) -> None:
    if spec.backend in WEIGHTED and not spec.model:
        raise ConfigError(
            f"{where}: field `roles.{role}.model`: backend {spec.backend!r} loads weights; name a model id, a local "
            f"directory or tiny:{role}"
        )


def role_options(role: str, spec: RoleSpec):
    """The role's arguments checked against its backend's declared fields (None: the backend checks its own)."""
    import importlib

    declared = importlib.import_module("datagen.models.options")

    name = OPTIONS[spec.backend]
    return None if name is None else getattr(declared, name).parse(spec.args, role)


def build(role: str, spec: RoleSpec, **context: Any) -> Any:
    import importlib

    parsed = role_options(role, spec)
    module_name, _, class_name = BACKENDS[role][spec.backend].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(spec, options=parsed, **context)
