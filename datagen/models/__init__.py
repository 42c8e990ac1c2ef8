"""Model adapters, one module per family. Each role: cheap constructor, lazy `load()`, batched call, `model_id`.

`BACKENDS` declares every adapter a pipeline file can name; `build(role, spec)` returns it built, its arguments
checked. Heavy libraries are imported only inside adapters. What each role's adapter offers: models/roles.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from datagen.config import RoleSpec
from datagen.errors import ConfigError
from datagen.models.options import (
    AestheticOptions,
    ClassifierOptions,
    DiffusionOptions,
    FluxFillOptions,
    FluxKontextOptions,
    GroundingOptions,
    JudgeOptions,
    NoOptions,
    NSFWOptions,
    OCROptions,
    OpenCVOptions,
    Options,
    RewardOptions,
    TesseractOptions,
    VisionOptions,
    WriterOptions,
)


@dataclass(frozen=True)
class Backend:
    """One adapter that can play a role: what a pipeline file's `roles.ROLE.backend` names."""

    role: str
    """The role it plays (models/roles.py: its Protocol)."""
    name: str
    """Its name in a pipeline file, unique within the role."""
    target: str
    """"module:Class" of the adapter; the module is imported only when the role is built."""
    options: type[Options]
    """The arguments it takes (`roles.ROLE.args`), declared in datagen/models/options.py."""
    weights: bool
    """Whether it loads weights: its role then needs `model`, and preflight checks the model is on this machine."""
    tiny: str | None = None
    """The tiny random twin of its weights that tests and the `tiny` pipeline load (`tiny:NAME`, built by
    models/tiny.py's BUILDERS[NAME]); None for a backend without weights."""
    packages: tuple[str, ...] = ()
    """The distributions it imports when it loads (beyond datagen's own imports): preflight checks each is
    installed, so that a missing one is one line naming it and the install command, not a traceback."""
    libraries: tuple[str, ...] = ()
    """The OS libraries it calls (names as ctypes.util.find_library takes them). A missing one does not stop a run:
    the backend is then unavailable, and the run says so once (preflight.require) and carries on without it."""
    without: str = ""
    """What a run loses where one of its libraries is missing (the line preflight.require prints)."""


BACKENDS: tuple[Backend, ...] = (
    Backend("llm", "template", "datagen.template_writer:TemplateWriter", NoOptions, weights=False),
    Backend("llm", "vllm", "datagen.writer:VLLMWriter", WriterOptions, weights=True, tiny="tiny:llm",
            packages=("vllm",)),
    Backend("t2i", "diffusers", "datagen.models.diffusion:DiffusionText2Image", DiffusionOptions, weights=True,
            tiny="tiny:t2i", packages=("torch", "diffusers")),
    Backend("grounding", "oracle", "datagen.models.oracle:OracleGrounding", NoOptions, weights=False),
    Backend("grounding", "grounding_dino", "datagen.models.grounding_dino:GroundingDINO", GroundingOptions,
            weights=True, tiny="tiny:grounding"),
    Backend("grounding", "mm_grounding_dino", "datagen.models.grounding_dino:MMGroundingDINO", GroundingOptions,
            weights=True, tiny="tiny:grounding_mm"),
    Backend("segmenter", "oracle", "datagen.models.oracle:OracleSegmenter", NoOptions, weights=False),
    Backend("segmenter", "sam", "datagen.models.sam:SAMSegmenter", VisionOptions, weights=True, tiny="tiny:segmenter"),
    Backend("segmenter", "sam2", "datagen.models.sam:SAM2Segmenter", VisionOptions, weights=True,
            tiny="tiny:segmenter_sam2"),
    Backend("inpaint", "opencv", "datagen.models.opencv_inpaint:OpenCVInpainter", OpenCVOptions, weights=False),
    Backend("inpaint", "diffusers", "datagen.models.diffusion:DiffusionInpainter", DiffusionOptions, weights=True,
            tiny="tiny:inpaint", packages=("torch", "diffusers")),
    Backend("inpaint", "flux_fill", "datagen.models.flux:FluxInpainter", FluxFillOptions, weights=True,
            tiny="tiny:flux_fill", packages=("torch", "diffusers")),
    Backend("editor", "flux_kontext", "datagen.models.flux:FluxEditor", FluxKontextOptions, weights=True,
            tiny="tiny:flux_kontext", packages=("torch", "diffusers")),
    Backend("depth", "scene", "datagen.models.oracle:SceneDepth", NoOptions, weights=False),
    Backend("depth", "depth_anything", "datagen.models.dense:DepthAnything", VisionOptions, weights=True,
            tiny="tiny:depth"),
    Backend("semseg", "scene", "datagen.models.oracle:SceneClasses", NoOptions, weights=False),
    Backend("semseg", "segformer", "datagen.models.dense:SegFormer", VisionOptions, weights=True, tiny="tiny:semseg"),
    Backend("pose", "vitpose", "datagen.models.dense:ViTPose", VisionOptions, weights=True, tiny="tiny:pose"),
    Backend("clip", "clip", "datagen.models.embeddings:CLIPEmbedder", VisionOptions, weights=True, tiny="tiny:clip"),
    # Its model is the folder `datagen classify` trains and writes, not weights to fetch: preflight leaves it be.
    Backend("classifier", "bow", "datagen.classifier:ClassifierRole", ClassifierOptions, weights=False),
    Backend("dino", "dinov2", "datagen.models.embeddings:DINOEmbedder", VisionOptions, weights=True, tiny="tiny:dino"),
    Backend("judge", "vllm", "datagen.models.judge:VLLMJudge", JudgeOptions, weights=True, tiny="tiny:vlm",
            packages=("vllm",)),
    # Real weights on every pipeline: PP-OCRv4's ONNX files ship inside the rapidocr-onnxruntime wheel.
    Backend("ocr", "rapidocr", "datagen.models.ocr:RapidOCRReader", OCROptions, weights=False,
            packages=("rapidocr-onnxruntime", "onnxruntime")),
    # A trained reward model (EditReward, Qwen2.5-VL with two reward heads): the `reward` score, gated off by default.
    Backend("reward", "editreward", "datagen.models.reward:EditReward", RewardOptions, weights=True,
            tiny="tiny:reward", packages=("torch", "transformers")),
    # Shares no weights with the ocr role: the text task's independent read-back. An OS library, not a package.
    Backend("reader", "tesseract", "datagen.models.tesseract:TesseractReader", TesseractOptions, weights=False,
            libraries=("tesseract",), without="the text task's edits are read back by the ocr role's own model "
            "alone, and the dataset card says so"),
    # Real weights on every pipeline: NudeNet's 320n ONNX detector ships inside the nudenet wheel.
    Backend("nsfw", "nudenet", "datagen.models.nsfw:NudeNetScorer", NSFWOptions, weights=False,
            packages=("nudenet", "onnxruntime")),
    # The model is CLIP ViT-L/14; its `head` (LAION's MLP, safetensors) is checked by preflight too.
    Backend("aesthetic", "laion", "datagen.models.aesthetic:LAIONAesthetic", AestheticOptions, weights=True,
            tiny="tiny:clip"),
)  # fmt: skip
"""Every model backend, grouped by role in the order `unknown role` messages list them."""

_BY_ROLE: dict[str, dict[str, Backend]] = {
    role: {entry.name: entry for entry in BACKENDS if entry.role == role}
    for role in dict.fromkeys(entry.role for entry in BACKENDS)
}


def backend(role: str, name: str, where: str = "pipeline file") -> Backend:
    """The declared backend `name` of `role`; a ConfigError lists the known roles or the role's known backends."""
    if role not in _BY_ROLE:
        raise ConfigError(f"{where}: field `roles.{role}`: unknown role; known roles: {', '.join(_BY_ROLE)}")
    if name not in _BY_ROLE[role]:
        raise ConfigError(
            f"{where}: field `roles.{role}.backend`: unknown backend {name!r}; "
            f"known for {role}: {', '.join(_BY_ROLE[role])}"
        )
    return _BY_ROLE[role][name]


def check_model(role: str, spec: RoleSpec, where: str) -> None:
    entry = backend(role, spec.backend, where)
    if entry.weights and not spec.model:
        raise ConfigError(
            f"{where}: field `roles.{role}.model`: backend {spec.backend!r} loads weights; name a model id, a local "
            f"directory or {entry.tiny}"
        )


def role_options(role: str, spec: RoleSpec) -> Options:
    """The role's arguments checked against its backend's declared fields."""
    return backend(role, spec.backend).options.parse(spec.args, role)


def check_args(role: str, spec: RoleSpec, where: str) -> None:
    """`roles.ROLE.args` checked against the declared fields of the backend it names, without building it: an
    unknown, misspelt or out-of-range argument is a ConfigError naming the file `where`, the field and what is
    allowed. What `datagen preflight` and every run check for each role of a pipeline, beside check_model."""
    entry = backend(role, spec.backend, where)
    try:
        entry.options.parse(spec.args, role)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


IMPORT_NAMES = {"rapidocr-onnxruntime": "rapidocr_onnxruntime", "vllm": "vllm"}
"""A distribution's top-level module where it is not the name with '-' made '_'."""


def _importable(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules (set to None)
        return False


def missing_packages(roles: dict[str, RoleSpec]) -> list[str]:
    """One line for each of these roles whose backend needs a distribution that is not installed: the role, the
    package and the command that installs it."""
    lines = []
    for role, spec in roles.items():
        for package in backend(role, spec.backend).packages:
            if not _importable(IMPORT_NAMES.get(package, package.replace("-", "_"))):
                lines.append(
                    f"the {role} role's backend {spec.backend!r} needs the Python package {package!r}, "
                    f"which is not installed here: run `make install` (on a GPU machine `make install "
                    f"GPU=1`), which installs every locked package"
                )
    return lines


def missing_libraries(roles: dict[str, RoleSpec]) -> list[str]:
    """One line for each of these roles whose backend calls an OS library that is not installed here."""
    import ctypes.util

    lines = []
    for role, spec in roles.items():
        for library in backend(role, spec.backend).libraries:
            if ctypes.util.find_library(library) is None:
                lines.append(
                    f"the {role} role's backend {spec.backend!r} calls the library lib{library}, which is not "
                    f"installed here (`make install-ocr` installs it): "
                    f"{backend(role, spec.backend).without or 'the run goes on without it'}"
                )
    return lines


def adapter_class(entry: Backend) -> type:
    """The adapter class of a backend (its module imported now)."""
    module_name, _, class_name = entry.target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def build(role: str, spec: RoleSpec, **context: Any) -> Any:
    """The adapter of `role` as `spec` configures it, not loaded; context: what some adapters take besides (the
    prompt of an LLM writer, the pipeline's image size)."""
    parsed = role_options(role, spec)
    return adapter_class(backend(role, spec.backend))(spec, options=parsed, **context)
