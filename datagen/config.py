"""Typed specs for tasks, prompts, pipelines and runs; YAML loading with readable errors; dotted overrides."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from datagen.errors import ConfigError


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=False)


# ---------------------------------------------------------------------------------------------- task


class FilterSpec(Spec):
    min: float | None = None
    """Reject a candidate whose score is below this value (None: no lower bound)."""
    max: float | None = None
    """Reject a candidate whose score is above this value (None: no upper bound)."""
    enabled: bool = True
    """False keeps the score in the manifest but never rejects on it."""
    reason: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,40}$")
    """The reason counted when this filter rejects (default: `{score}_low` or `{score}_high`), e.g. `unchanged`."""

    @model_validator(mode="after")
    def _ordered(self) -> FilterSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class SessionRule(Spec):
    """Where a task may stand in a multi-turn session (`--turns`, datagen/sessions.py) and what its edit does to the
    objects the next turn's writer may name."""

    position: Literal["any", "first", "last", "later"] = "any"
    """any; first: only as a session's first turn (its pair's input is not the image it was given: `add` removes
    the object first); last: only as its last turn (its output is a map or an annotation, no photo to edit on);
    later: only after a first turn (`backtrack` goes back to an earlier image of the session)."""
    objects: Literal["keep", "remove", "replace"] = "keep"
    """keep: the objects stay; remove: the edit's `objects` leave the image; replace: they become its
    `new_object`, in the candidate's mask."""


class GeneratorSpec(Spec):
    kind: str
    """Generator kind: a module in datagen/generators (e.g. grounded_inpaint)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments of that generator kind; each kind documents and validates its own."""


class Calibrated(Spec):
    """A measurement of a task's gates, made when they were set (`datagen calibrate`), that the dataset card of every
    run of the task on that pipeline quotes."""

    pipeline: str
    """The pipeline the labelled run was made on."""
    labels: Literal["people", "oracle"]
    """Whose labels: people's (datagen review) or exact ground truth's (calibrate --oracle)."""
    labelled: int = Field(ge=1)
    """Kept pairs labelled."""
    precision: float = Field(ge=0, le=1)
    """The share of them labelled good."""
    interval: tuple[float, float]
    """Its 95% Wilson interval."""
    kept: float = Field(ge=0, le=1)
    """The share of samples the gates kept on that run: the yield."""
    date: str
    note: str = ""
    """What was labelled, and how."""


class TaskSpec(Spec):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """Task name; also the stem of its file in tasks/ and prompts/, and the first part of every sample key."""
    group: Literal["region", "free-form", "vision", "translation"]
    """Emu Edit task group."""
    description: str
    """One sentence: what an edit of this task does."""
    prompt: str | None = None
    """Prompt file stem in prompts/ (default: the task name)."""
    generator: GeneratorSpec | None = None
    """How an instruction record becomes (input, output) candidates on neural pipelines, and on local ones unless
    `local` says otherwise; None: the task has no neural method yet."""
    local: GeneratorSpec | Literal["none"] | None = None
    """On pipelines of family `local`: None uses `generator` (its roles are played by classical backends there),
    a spec names the classical generator, 'none' says no classical method can make this task."""
    editor: GeneratorSpec | None = None
    """On pipelines that have an `editor` role (an instruction-editing model, e.g. FLUX.1 Kontext): the generator
    used there instead of `generator` (kind instruct_edit); None: `generator` there too."""
    sources: list[str] | None = Field(default=None, min_length=1)
    """Only to restrict them: the input sources (datagen/sources: SOURCES) this task accepts, the first being the
    default. None (the usual): every registered source, procedural scenes first."""
    default_inputs: dict[str, str] = Field(default_factory=dict)
    """Source -> the input it reads when --input is not given, a path relative to the configuration folder (pose:
    captions of people, drawn by text-to-image)."""
    needs_caption: bool = True
    """Whether its instruction is written about the input's caption (objects named in it, a prompt-to-prompt
    rewrite). A task that needs none (a colour adjustment, a map) still runs on a photo without a caption when no
    vision-language writer can caption it: its caption is UNCAPTIONED."""
    filters: dict[str, FilterSpec] = Field(default_factory=dict)
    """Score name -> thresholds. Every score is stored; only these gate a candidate."""
    select_by: list[str] = Field(default_factory=list)
    """Scores that rank a sample's passing candidates, first available wins; '-name' means lower is better."""
    calibrated: list[Calibrated] = Field(default_factory=list)
    """The gates' precision as measured when they were set, quoted by the dataset card of runs on that pipeline."""
    oracle: dict[str, FilterSpec] = Field(default_factory=dict)
    """Ground-truth score -> the limits a candidate within which is good (`datagen calibrate --oracle`): on sources
    with exact truth (scenes) it labels every candidate, and every other score and the judge are measured against
    those labels. Stricter than the gates: what a careful person would accept."""
    session: SessionRule = Field(default_factory=SessionRule)
    """Where it may stand in a multi-turn session, and what it does to the image's objects."""

    @property
    def prompt_name(self) -> str:
        return self.prompt or self.name

    def generator_for(self, family: str, roles: Collection[str] = ()) -> GeneratorSpec | None:
        """The generator this task uses on a pipeline of `family` with `roles`; None where it cannot run there."""
        if family == "local" and self.local is not None:
            return None if self.local == "none" else self.local
        if self.editor is not None and "editor" in roles:
            return self.editor
        return self.generator

    @model_validator(mode="after")
    def _has_a_generator(self) -> TaskSpec:
        if self.generator is None and self.local in (None, "none"):
            raise ValueError("a task needs a `generator` (neural pipelines) or a `local` one (classical)")
        return self


# -------------------------------------------------------------------------------------------- prompt


class PromptExample(Spec):
    caption: str
    """Input caption of the example."""
    output: dict[str, Any]
    """The answer, in the prompt's output schema."""


EDIT_KINDS = (
    "remove_object",
    "add_object",
    "replace_object",
    "retexture_object",
    "change_background",
    "global_change",
    "stylize",
    "color_adjust",
    "detect_object",
    "segment_object",
    "translate",
    "text_edit",
    "backtrack",
)
PLACEHOLDERS = ("verb", "Verb", "object", "a", "new", "a_new", "value", "old", "where", "nth")


class PromptTemplates(Spec):
    edit: Literal[EDIT_KINDS]
    """What the template writer does (datagen/template_writer.py): which object it picks, which value it draws and
    how the caption changes. remove_object's source caption is the input's, add_object's the output's."""
    instruction: list[str] = Field(min_length=1)
    """Instruction templates; placeholders {verb}, {Verb} (capitalised), {object}, {a} (its article), {new} and
    {a_new} (a replacement object), {value} (the drawn style, change, colour wording, map or text), {old} (the text
    replaced), {where} (a position) and {nth} (an ordinal: backtrack's edit to go back before)."""
    inverse: list[str] = Field(default_factory=list)
    """Templates of the other direction, where a kind has two: a map back to the image (translate), text removed
    (text_edit)."""
    choices: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(default_factory=dict)
    """Values the kind draws from (styles, changes, backgrounds, textures, objects, texts, positions, wording of
    each colour operation ...); see the kind in datagen/template_writer.py for the keys it reads."""

    @model_validator(mode="after")
    def _placeholders(self) -> PromptTemplates:
        blank = dict.fromkeys(PLACEHOLDERS, "x")
        lists = {"instruction": self.instruction, "inverse": self.inverse}
        lists.update({f"choices.{key}": values for key, values in self.choices.items()})
        for field_name, templates in lists.items():
            for n, template in enumerate(templates):
                try:
                    template.format(**blank)
                except (KeyError, IndexError, ValueError) as e:
                    allowed = " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                    raise ValueError(
                        f"{field_name}[{n}] {template!r}: bad placeholder {e}; allowed: {allowed}"
                    ) from None
        return self


class JudgePrompt(Spec):
    """prompts/judge/GROUP.yaml: what the judge is told about one task group's edits."""

    group: Literal["region", "free-form", "vision", "translation"]
    system: str = Field(min_length=1)
    """Who the judge is and what it sees (the input image, the output image, the instruction)."""
    rubric: str = Field(min_length=1)
    """What each score (following, preservation, quality, overall; 0-10) means for this group's edits."""


def judge_prompt(group: str) -> JudgePrompt:
    """The judge's rubric of a task group (prompts/judge/GROUP.yaml)."""
    path = config_root() / "prompts" / "judge" / f"{group}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (the judge's rubric of task group {group!r})")
    prompt = validate(JudgePrompt, read_yaml(path), str(path))
    if prompt.group != group:
        raise ConfigError(f"{path}: field `group`: {prompt.group!r}; allowed: {group!r} (the file's name)")
    return prompt


class PromptSpec(Spec):
    name: str
    """Prompt name (the file stem)."""
    system: str
    """System text for the LLM writer."""
    task_description: str
    """What the task is, told to the LLM writer in every request."""
    examples: list[PromptExample] = Field(default_factory=list)
    """Hand-written in-context examples."""
    output_schema: dict[str, Any] = Field(alias="schema")
    """JSON schema every writer output must satisfy (the LLM's structured-output schema too)."""
    verbs: list[str] = Field(default_factory=list)
    """Verbs swapped into the examples' instructions (and the templates) for diversity."""
    templates: PromptTemplates | None = None
    """Templates for the offline (template) writer; a prompt without them needs an LLM writer."""
    caption_role: Literal["input", "output"] = "input"
    """Which image of the pair the source caption describes: input (remove: the LLM writes the output caption) or
    output (add, made by a removal swapped: the LLM writes the caption of the image without the object)."""
    input_label: str = "Caption"
    """Label of the text the LLM is given in each request ("Caption: ...", "Topic: ...")."""
    example_fraction: float = Field(default=0.6, gt=0, le=1)
    """Share of the examples shown per request, drawn and shuffled anew each time (Emu Edit: 60%)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)

    @model_validator(mode="after")
    def _schema_is_valid(self) -> PromptSpec:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(self.output_schema)
        except jsonschema.SchemaError as e:
            raise ValueError(f"schema is not a valid JSON schema: {e.message}") from None
        if self.templates is not None:
            expected = "output" if self.templates.edit == "add_object" else "input"
            if self.caption_role != expected:
                raise ValueError(f"templates.edit {self.templates.edit!r} needs caption_role: {expected}")
        validator = jsonschema.Draft202012Validator(self.output_schema)
        for n, example in enumerate(self.examples):
            error = jsonschema.exceptions.best_match(validator.iter_errors(example.output))
            if error is not None:
                raise ValueError(f"examples[{n}].output does not match the schema: {error.message}")
        return self


# ------------------------------------------------------------------------------------------ pipeline


class RoleSpec(Spec):
    backend: str
    """Adapter that plays this role (e.g. oracle, opencv, template)."""
    model: str | None = None
    """Model id or local directory, for backends that load weights."""
    revision: str | None = None
    """Model revision, recorded with every sample."""
    device: str = "cpu"
    """Device the adapter runs on."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Compute dtype."""
    batch_size: int = Field(default=1, ge=1, le=1024)
    """Items per call of the model: a micro-batch's items go through it in calls of this many."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Backend-specific arguments."""
    license: str | None = Field(default=None, min_length=1, max_length=200)
    """The licence the model's weights (or the backend's code) come under, as its card declares it (a Hugging Face
    licence id where there is one): every export's dataset card lists it, since some decide what the data may be
    used for (FLUX.1-dev's outputs: non-commercial). None: not declared here."""


class ActorSpec(Spec):
    num_cpus: float = Field(default=1, gt=0, le=256)
    """CPUs reserved per worker actor."""
    num_gpus: float = Field(default=0, ge=0, le=8)
    """GPUs reserved per worker actor (fractional shares a GPU between actors)."""
    max_restarts: int = Field(default=2, ge=0, le=100)
    """Times a dead worker actor is replaced before its shards are failed."""
    prefetch: int = Field(default=1, ge=0, le=64)
    """Micro-batches whose inputs (image reads and decodes, scene drawing) load on threads while the current one
    renders, so the models never wait for the disk; 0 loads each input in turn when it is needed."""
    io_threads: int = Field(default=2, ge=1, le=64)
    """Threads that load inputs ahead and encode kept pairs (PNG/JPEG/WebP) while the models work on the next
    micro-batch."""
    stall_seconds: float = Field(default=0, ge=0, le=86_400)
    """A Ray worker that finishes no shard within this many seconds of starting one has stalled (a model call or a
    read that never returns: a wedged GPU, a hung network filesystem): it is killed and replaced, and the shard
    retried, counted as `worker_stalled`. 0 turns the check off (the default: on CPUs a shard's time varies with the
    machine by orders of magnitude); GPU pipelines set about ten times a shard's time. Inline runs (--workers 0)
    have no second process to replace the first: the check is for Ray workers."""


BUCKET_AREA_TOLERANCE = 0.15
"""How far a bucket's area may stray from the pixel budget: SDXL's 640x1536 is 6% under 1 MP, a typo is far off."""


PHOTO_RATIOS = ((1, 1), (5, 4), (4, 5), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16), (2, 1), (1, 2))
"""Width:height of the buckets photos are fitted to where a pipeline names none: the camera and screen formats,
from square to 2:1 (beyond that, the curate phase's aspect gate drops it)."""


def ratio_buckets(side: int, multiple: int) -> list[tuple[int, int]]:
    """PHOTO_RATIOS as (width, height) of about side² pixels, each side a multiple of `multiple` (at least 32)."""
    out: list[tuple[int, int]] = []
    for w, h in PHOTO_RATIOS:
        width = max(32, round(side * math.sqrt(w / h) / multiple) * multiple)
        height = max(32, round(side * math.sqrt(h / w) / multiple) * multiple)
        if (width, height) not in out and abs(width * height / side**2 - 1) <= BUCKET_AREA_TOLERANCE:
            out.append((width, height))
    return out


class PipelineSpec(Spec):
    name: str
    """Pipeline name (the file stem)."""
    family: Literal["local", "neural"] = "neural"
    """local: classical methods with exact ground truth (tasks use their `local` generator); neural: models."""
    description: str
    """What this model stack is for."""
    image_size: int = Field(default=256, ge=32, le=4096, multiple_of=8)
    """Side of the square images the pipeline produces; with `buckets`, the side of the square whose area is the
    pixel budget every bucket holds to (1024: 1 MP)."""
    bucket_multiple: int = Field(default=8, ge=8, le=512)
    """What every side of `buckets` is a multiple of, as the models need: 16 for FLUX (8x VAE, 2x2 patches), 64 for
    Stable Diffusion (8x VAE, three UNet downsamplings)."""
    buckets: list[tuple[int, int]] | None = None
    """Aspect-ratio buckets, [width, height] each, so that images keep their shape: an input image is resized and
    centre-cropped to the bucket nearest its aspect ratio; scenes and text-to-image inputs are drawn in a bucket
    drawn from the sample's seed (datagen/images.py). Each side a multiple of `bucket_multiple`, each area within
    BUCKET_AREA_TOLERANCE of image_size². None: one square bucket, image_size x image_size."""

    @field_validator("buckets")
    @classmethod
    def _buckets_fit(cls, buckets: list[tuple[int, int]] | None, info: ValidationInfo) -> list[tuple[int, int]] | None:
        if buckets is None or "image_size" not in info.data or "bucket_multiple" not in info.data:
            return buckets  # (a bad image_size or bucket_multiple is reported on its own)
        if not buckets:
            raise ValueError("give at least one [width, height], or null for image_size squares")
        budget, multiple = info.data["image_size"] ** 2, info.data["bucket_multiple"]
        for n, (width, height) in enumerate(buckets):
            bucket = f"[{width}, {height}]"
            if width % multiple or height % multiple or min(width, height) < 32:
                raise ValueError(f"{bucket}: each side must be a multiple of bucket_multiple ({multiple}), >= 32")
            if abs(width * height / budget - 1) > BUCKET_AREA_TOLERANCE:
                raise ValueError(
                    f"{bucket}: {width * height} pixels, more than {BUCKET_AREA_TOLERANCE:.0%} off the pixel budget "
                    f"image_size² = {budget}; change the bucket or image_size"
                )
            if (width, height) in buckets[:n]:
                raise ValueError(f"{bucket} is listed twice")
        return buckets

    def bucket_sizes(self) -> list[tuple[int, int]]:
        """The (width, height) buckets images are made in: `buckets`, or the one image_size square."""
        return list(self.buckets) if self.buckets else [(self.image_size, self.image_size)]

    def photo_buckets(self) -> list[tuple[int, int]]:
        """The buckets input photos are fitted to: `buckets`, or else PHOTO_RATIOS at the image_size² budget, so
        that a photo keeps its shape on every pipeline (a 640x360 photo is made 344x192 on `local`, not cropped to
        256x256); images a pipeline draws itself stay in `bucket_sizes`."""
        if self.buckets:
            return list(self.buckets)
        return ratio_buckets(self.image_size, self.bucket_multiple)

    image_format: Literal["png", "jpg", "webp"] = "png"
    """Codec of input and output images in the tar (masks are always PNG)."""
    image_quality: int = Field(default=95, ge=1, le=100)
    """Quality for jpg/webp."""
    png_compression: int = Field(default=1, ge=0, le=9)
    """zlib level for PNG members. 1 by measurement (`datagen bench writer`, docs/benchmarks.md): at 512x512 it
    encodes in 16 ms against level 3's 20 ms and level 6's 31 ms, for files within 1-3% of their size."""
    roles: dict[str, RoleSpec]
    """Role name -> adapter that plays it. A role set to null is left out: `--set pipeline.roles.judge=null`
    renders without the judge."""

    @field_validator("roles", mode="before")
    @classmethod
    def _drop_null_roles(cls, roles: Any) -> Any:
        return {name: spec for name, spec in roles.items() if spec is not None} if isinstance(roles, dict) else roles

    micro_batch: int = Field(default=8, ge=1, le=4096)
    """Samples rendered together, stage by stage: every model role gets all of a micro-batch's items at once (in
    calls of its own `batch_size`), e.g. all mask variants of all its samples in one inpainting batch. Each item
    keeps its own seed, so the micro-batch never changes what a sample becomes. Bounded by memory: a CUDA
    out-of-memory error halves it for that micro-batch (counted as `oom_backoff` in the shard's stats)."""
    enforce_filters: bool = True
    """False computes and stores every score but rejects nothing on them (for random-weight pipelines like tiny,
    whose scores are noise): the whole path to the tar is exercised."""
    curate: dict[str, FilterSpec] = Field(default_factory=dict)
    """The curate phase's gates on input photos: score name (scores.CURATION_SCORES) -> thresholds and the reason
    counted when one drops an input, as a task's filters gate candidates."""

    @field_validator("curate")
    @classmethod
    def _curation_scores(cls, value: dict[str, FilterSpec]) -> dict[str, FilterSpec]:
        from datagen.scores import CURATION_SCORES

        unknown = [name for name in value if name not in CURATION_SCORES]
        if unknown:
            raise ValueError(f"unknown curation score(s) {', '.join(unknown)}: allowed {', '.join(CURATION_SCORES)}")
        return value

    keep_rejected: bool = False
    """Also store the images of every rendered candidate that was not kept (rejected by a gate or the judge, or
    outranked) in a second tar per shard, `{shard}.rejected.tar`: failures as data, for preference pairs
    (`datagen export --format preference`) and for the report's gallery. Off by default: it roughly doubles what a
    shard writes."""
    actor: ActorSpec = Field(default_factory=ActorSpec)
    """Resources of each Ray actor of the render phase (images, filters, shards)."""
    writer_actor: ActorSpec = Field(default_factory=ActorSpec)
    """Resources of each Ray actor of the write phase (the LLM): for vLLM on GPUs, num_gpus is the model's
    tensor_parallel_size, so a 70B model gets its own GPUs, apart from the render actors."""


# ----------------------------------------------------------------------------------------------- run


class RunSpec(Spec):
    """One task's run. Its fields are `generate`'s, `write`'s and `render`'s flags (datagen/flags.py): each default
    and help text is written here, once."""

    task: str
    """Task name."""
    pipeline: str = "local"
    """Pipeline name in pipelines/."""
    out: str
    """Run directory (created; an existing run there is resumed)."""
    n: int = Field(default=200, ge=1, le=10**10)
    """Samples to attempt (instruction records); kept samples are fewer, by the filters' rejection rate. A mixture
    shares them by weight."""
    shard_size: int = Field(default=100, ge=1, le=100_000)
    """Samples per shard: the unit of work, retry and resume."""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    """Run seed; every sample's seed derives from it and the sample key."""
    source: str | None = None
    """Input source (default: the task's first)."""
    input: str | None = None
    """The source's input: image folder, tar folder, curated set, caption file or topic file."""
    repeat: bool = False
    """Photo sources: allow --n larger than the number of photos, reusing them; without it such a run stops before
    any work, saying how many distinct photos the input holds."""
    max_image_pixels: int = Field(default=50_000_000, ge=1024)
    """Larger input images are rejected as decompression bombs."""
    max_shard_retries: int = Field(default=2, ge=0, le=20)
    """Retries of a failing shard before it is recorded as failed."""
    turns: int = Field(default=1, ge=1, le=8)
    """Edits per sample: K > 1 makes each sample a session of K chained edits of one input (datagen/sessions.py),
    each turn's task drawn from the run's mixture, every turn checked."""
    keep_prefix: bool = False
    """Sessions: keep a session's passing turns when a later one fails (default: the whole session or nothing)."""
    thresholds: str | None = None
    """A thresholds file (`datagen calibrate` writes OUT/thresholds.yaml): each task's gates in it replace the task
    file's bounds of the same scores, for this run (run.json records the gates it ran with)."""

    @property
    def num_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_len(self, shard: int) -> int:
        return min(self.shard_size, self.n - shard * self.shard_size)


class CurateSpec(Spec):
    """`datagen curate`: photos gated and deduplicated into a curated set. Its fields are the command's flags."""

    source: str
    """What --input holds: a photo source that curates."""
    input: str
    """The photos: a folder of images, or of WebDataset tars (local or an object store's URL)."""
    out: str
    """Where the curated set is written (a folder `--source curated` reads); an existing one is resumed."""
    pipeline: str = "local"
    """Whose scoring roles (nsfw, aesthetic, ocr) and `curate:` gates."""
    shard_size: int = Field(default=100, ge=1, le=100_000)
    """Inputs per committed shard: the unit of work, retry and resume."""
    workers: int = Field(default=0, ge=0, le=100_000)
    """0: inline, in this process; N: at most N workers on Ray (RAY_ADDRESS or a local cluster), and the
    deduplication on Ray Data."""
    max_shard_retries: int = Field(default=2, ge=0, le=20)
    """Retries of a failing shard before it is recorded as failed."""


class RunConfig(Spec):
    """Everything a worker needs: the resolved specs. Stored as OUT/run.json."""

    run: RunSpec
    task: TaskSpec
    prompt: PromptSpec
    pipeline: PipelineSpec
    caption_prompt: PromptSpec | None = None
    """prompts/caption.yaml, for runs whose captions the LLM writes from topics (source `topics`)."""

    @property
    def generator(self) -> GeneratorSpec:
        """The task's generator on this pipeline (check() has made sure it exists)."""
        return self.task.generator_for(self.pipeline.family, self.pipeline.roles)

    def model_context(self) -> dict[str, Any]:
        """What role adapters are built with besides their RoleSpec."""
        return {"prompt": self.prompt, "caption_prompt": self.caption_prompt, "image_size": self.pipeline.image_size}

    def fingerprint(self) -> str:
        """sha256 of the resolved configuration; shards reference it."""
        blob = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


# ------------------------------------------------------------------------------------------- loading


def config_root() -> Path:
    """Directory holding tasks/, prompts/ and pipelines/ (DATAGEN_CONFIG_DIR, else the repository)."""
    env = os.environ.get("DATAGEN_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent


def known(kind: str) -> list[str]:
    folder = config_root() / kind
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_config(kind: str, name: str) -> Path:
    """Path of tasks/NAME.yaml (or a YAML path given directly); an unknown name lists the known ones."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        return path
    path = config_root() / kind / f"{name}.yaml"
    if not path.is_file():
        listing = ", ".join(known(kind)) or "none"
        singular = kind.rstrip("s")
        raise ConfigError(f"unknown {singular} {name!r}; known {kind}: {listing} (files in {config_root() / kind})")
    return path


class TaskThresholds(Spec):
    """One task's entry in a thresholds file: its gates, in the task files' own form."""

    filters: dict[str, FilterSpec] = Field(default_factory=dict)


def read_thresholds(path: str | Path) -> dict[str, TaskThresholds]:
    """A thresholds file (task -> {filters: {score: {min, max}}}), validated; the scores are checked where a run or
    an export applies them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--thresholds {path}: no such file (`datagen calibrate OUT` writes OUT/thresholds.yaml)")
    data = read_yaml(path) if path.read_text(encoding="utf-8").strip() else {}
    return {str(task): validate(TaskThresholds, entry or {}, f"{path}: {task}") for task, entry in data.items()}


def with_thresholds(filters: dict[str, Any], entry: TaskThresholds | None) -> dict[str, Any]:
    """A task's filters (as YAML gives them) with a thresholds entry's bounds put in: each score's min and max are
    the entry's where it gives them; a score it adds becomes a gate."""
    out = {name: dict(spec or {}) for name, spec in filters.items()}
    for name, spec in (entry.filters if entry else {}).items():
        bounds = spec.model_dump(exclude_unset=True)
        out.setdefault(name, {}).update(bounds)
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}, column {where.column + 1}:" if where else ""
        raise ConfigError(f"{path}:{line} not valid YAML ({getattr(e, 'problem', e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def _allowed_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed at loc's parent, for 'unknown field' messages."""
    current: Any = model
    for part in loc[:-1]:
        origin = getattr(current, "__origin__", None)
        if origin in (dict, list):  # `part` is a key or an index into the container
            current = current.__args__[-1]
            continue
        current = _strip_optional(current)
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if info is None:
            return []
        current = info.annotation
    current = _strip_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items())
    return []


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in getattr(annotation, "__args__", ()) or () if a is not type(None)]
    if getattr(annotation, "__origin__", None) is None and len(args) == 1:  # X | None
        return args[0]
    return annotation


def format_validation(path: str, model: type[BaseModel], error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        loc = tuple(e["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, loc)
            msg = "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        elif e["type"] == "missing":
            msg = "required field is missing"
        value = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        lines.append(f"{path}: field `{field}`: {msg}{value}")
    return "\n".join(lines)


def validate(model: type[Spec], data: dict[str, Any], path: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation(path, model, e)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """'filters.mask_area.min=0.02' -> (['filters', 'mask_area', 'min'], 0.02); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected PATH=VALUE, e.g. --set filters.mask_area.min=0.02")
    key, _, raw = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty part in the dotted path {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any, origin: str) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {origin}: `{part}` is a {type(child).__name__}, not a mapping")
        node = child
    node[parts[-1]] = value
