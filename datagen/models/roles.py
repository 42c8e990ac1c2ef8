"""The model roles, one Protocol each: what the pipeline calls on the adapter a pipeline file names for the role.

Every backend of a role (datagen/models/__init__.py: BACKENDS) satisfies its Protocol: a cheap constructor,
`load()` (the weights onto the device, once; a no-op for backends without weights), `model_id` (recorded with every
sample) and the role's calls, each taking a micro-batch's items at once where the pipeline batches them. An item
that fails alone is returned as its exception in the item's place, so one sample costs one sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from datagen.errors import Reject
    from datagen.models.oracle import Detection
    from datagen.sources import LoadedInput, SourceItem


@runtime_checkable
class Role(Protocol):
    model_id: str
    """The model (and revision) the samples record; `oracle`, `template:NAME` ... for backends without weights."""

    def load(self) -> None:
        """Weights onto the role's device; called once, before the first call."""


@runtime_checkable
class Writer(Role, Protocol):
    """llm: an instruction record (instruction, captions, objects, the edit's values) per source item (worker.py)."""

    def write_batch(self, items: list[SourceItem], seeds: list[int]) -> list[dict[str, Any] | Reject]: ...


@runtime_checkable
class TextToImage(Role, Protocol):
    """t2i: the inputs of text-only sources (render.py), the pairs of prompt-to-prompt (generators/)."""

    def generate_batch(
        self, prompts: list[str], seeds: list[int], sizes: list[tuple[int, int]] | None = None
    ) -> list[np.ndarray]:
        """One image per prompt and seed, each of its (width, height) in `sizes` (default: the pipeline's square)."""

    def can_invert(self) -> bool:
        """Whether `plug_and_play` can edit a given image (DDIM inversion needs the pipeline's own text encoder)."""

    def prompt_to_prompt(
        self, source: str, target: str, seed: int, size: tuple[int, int] | None = None, **edit: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(image of `source`, image of `target`) of (width, height) `size` from one paired run with the attention
        edit."""

    def plug_and_play(self, image: np.ndarray, source: str, target: str, seed: int, **edit: float) -> np.ndarray:
        """`image` (described by `source`) edited towards `target`."""


@runtime_checkable
class Grounding(Role, Protocol):
    """grounding: the named objects found in each image (grounded_inpaint, overlay; translate's pose, per image)."""

    def locate_batch(self, items: Sequence[tuple[LoadedInput, list[str]]]) -> list[list[Detection] | Exception]: ...

    def locate(self, inputs: LoadedInput, names: list[str]) -> list[Detection]: ...


@runtime_checkable
class DetectorGate(Grounding, Protocol):
    """A grounding model whose boxes score presence (Grounding DINO): filters.py's detector gate asks it how surely
    each named object is in the input and the output; translate's pose takes every person it finds."""

    scores_presence: bool

    def confidence_batch(self, queries: Sequence[tuple[np.ndarray, str]]) -> list[float]: ...

    def locate_all(self, inputs: LoadedInput, name: str, limit: int = 8, overlap: float = 0.5) -> list[Detection]: ...


@runtime_checkable
class Segmenter(Role, Protocol):
    """segmenter: a bool mask per detection of each image (grounded_inpaint, overlay)."""

    def segment_batch(self, items: Sequence[tuple[LoadedInput, list[Detection]]]) -> list[list[np.ndarray]]: ...


@runtime_checkable
class Inpainter(Role, Protocol):
    """inpaint: each image repainted where its mask is 255, from its prompt and seed (grounded_inpaint)."""

    follows_prompt: bool
    """Whether the prompt changes what is painted (a diffusion model's does, a classical method's does not): the
    text task asks such an inpainter to write a string itself."""
    reads_glyph_template: bool
    """Whether it paints from an in-context template beside the image (FLUX.1 Fill, X2Edit's glyph condition)."""

    def inpaint_batch(
        self, images: list[np.ndarray], masks: list[np.ndarray], prompts: list[str], seeds: list[int]
    ) -> list[np.ndarray]: ...

    # A model on a torch device may also offer `inpaint_batch_on_device(...)` (the same call, each image a uint8
    # (H, W, 3) tensor left on the device): grounded_inpaint then composites and scores there (filters.py).


@runtime_checkable
class Editor(Role, Protocol):
    """editor: each image redrawn as its instruction says, from its seed, at its guidance (None: the role's own);
    the whole image may change, the caller composites where the edit must stay in a region (instruct_edit)."""

    guidance: float
    """The guidance of items given none (the role's `args.guidance`), recorded with each candidate."""

    def edit_batch(
        self, images: list[np.ndarray], instructions: list[str], seeds: list[int], guidance: list[float] | None = None
    ) -> list[np.ndarray]: ...


@runtime_checkable
class Depth(Role, Protocol):
    """depth: float depth in [0, 1] (1 nearest) per image (translate: depth, normal)."""

    def depth_batch(self, items: list[LoadedInput]) -> list[np.ndarray | Exception]: ...


@runtime_checkable
class SemanticClasses(Role, Protocol):
    """semseg: an integer class per pixel of each image, 0 background (translate: segmap)."""

    def classes_batch(self, items: list[LoadedInput]) -> list[np.ndarray | Exception]: ...


@runtime_checkable
class Pose(Role, Protocol):
    """pose: COCO keypoints, a (17, 3) array of x, y, score per detected person (translate: pose)."""

    def keypoints(self, inputs: LoadedInput, detections: list[Detection]) -> list[np.ndarray]: ...


@runtime_checkable
class ImageTextEmbedder(Role, Protocol):
    """clip: unit embeddings of images and captions in one space, for the CLIP scores (filters.py)."""

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class ImageEmbedder(Role, Protocol):
    """dino: unit image embeddings, for the DINO score (filters.py)."""

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray: ...


@runtime_checkable
class TaskJudge(Role, Protocol):
    """classifier: the probability that an instruction asks for its own task, None where it cannot judge the task."""

    def task_prob(self, instruction: str, task: str) -> float | None: ...


@runtime_checkable
class PairJudge(Role, Protocol):
    """judge: a verdict on each (input, output, instruction, task group, seed): scores 0-10 and the reasoning, or
    the reason there is none (filters.py: judge_scores)."""

    def judge_batch(self, items: Sequence[tuple[np.ndarray, np.ndarray, str, str, int]]) -> list[Any]: ...


@runtime_checkable
class RewardScorer(Role, Protocol):
    """reward: a trained reward model's score of each (input, output, instruction), higher better (filters.py:
    reward_scores)."""

    def reward_batch(self, items: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> list[float]: ...


@runtime_checkable
class TextReader(Role, Protocol):
    """ocr: the text lines of each image (quadrilateral, string, confidence): the text task reads its photos with it
    before writing (generators/text.py: look)."""

    def read_batch(self, images: Sequence[np.ndarray]) -> list[list[Any]]: ...


@runtime_checkable
class LineReader(Role, Protocol):
    """reader: a second text reader that shares no weights with the ocr role: what each rectified line crop reads
    (models/ocr.py: line_crop). The text task reads back its edits with it and takes the word gaps of the lines it
    edits from it; `available` is False where it is not installed (the ocr role's reading then stands alone)."""

    available: bool

    def read_lines(self, crops: Sequence[np.ndarray]) -> list[str]: ...


@runtime_checkable
class NSFWScorer(Role, Protocol):
    """nsfw: each image's nsfw score in [0, 1] (the curate phase's gate) and its detections per class."""

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]: ...

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]: ...


@runtime_checkable
class AestheticScorer(Role, Protocol):
    """aesthetic: each image's aesthetic score (LAION's scale, about 1-10; the curate phase's gate)."""

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]: ...


PROTOCOLS: dict[str, type[Role]] = {
    "llm": Writer,
    "t2i": TextToImage,
    "grounding": Grounding,
    "segmenter": Segmenter,
    "inpaint": Inpainter,
    "editor": Editor,
    "depth": Depth,
    "semseg": SemanticClasses,
    "pose": Pose,
    "clip": ImageTextEmbedder,
    "classifier": TaskJudge,
    "dino": ImageEmbedder,
    "judge": PairJudge,
    "reward": RewardScorer,
    "ocr": TextReader,
    "reader": LineReader,
    "nsfw": NSFWScorer,
    "aesthetic": AestheticScorer,
}
"""Role name (a pipeline file's `roles.ROLE`) -> the Protocol its adapters satisfy."""
