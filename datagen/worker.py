"""One shard in one process: a worker builds its models once, then writes or renders shard after shard.

`ShardWorker.write_shard(i)` and `.render_shard(i)` run anywhere: inline for debugging, or inside a Ray actor
(`MixtureWorker`, one per process, every task of a run sharing its models); datagen/distribute.py hands them shards.
A shard's render is datagen/render.py's staged, batched render.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

from datagen import generators, models, session_shard, shards
from datagen.config import RoleSpec, RunConfig
from datagen.environment import library_versions, version_changes
from datagen.errors import ConfigError, Reject
from datagen.lease import LeaseLost, check_held
from datagen.record import InstructionRecord, instruction_line, new_instruction, read_instructions, sample_seed
from datagen.render import ShardRender
from datagen.resolve import roles_used
from datagen.shards.layout import ShardPaths
from datagen.shards.run import recorded_versions
from datagen.sources import INPUT_ERROR, UNCAPTIONED, BadSource, check_text, pipeline_source, source_class
from datagen.template_writer import SESSION_KINDS, TemplateWriter
from datagen.writer import WriterReject

TEXT_FIELDS = ("instruction", "input_caption", "output_caption", "objects")
"""Writer output fields every task shares; the rest of a task's schema lands in the record's `edit` (then params)."""


class ModelLoadError(RuntimeError):
    """A pipeline's model is on this machine but does not load (corrupt weights, wrong architecture, no memory)."""


class ModelSet:
    """The pipeline's role adapters, each built and loaded on first use, then kept for every later shard."""

    def __init__(self, config: RunConfig, shared: dict[str, Any] | None = None):
        self.config = config
        self._built: dict[str, Any] = {}
        self._shared = shared if shared is not None else {}
        """Adapters of roles that do not depend on the task (every role but the LLM's agent), shared by the tasks
        of a mixture that run in one worker."""

    def __contains__(self, role: str) -> bool:
        return role in self.config.pipeline.roles

    def __getitem__(self, role: str) -> Any:
        cache = self._built if role == "llm" else self._shared
        if role not in cache:
            spec = self.config.pipeline.roles[role]
            try:
                adapter = models.build(role, spec, **self.config.model_context())
                adapter.load()
            except ConfigError:
                raise
            except Exception as e:  # corrupt or incompatible weights, out of (GPU) memory: say which model
                raise ModelLoadError(
                    f"the {role} model {spec.model!r} ({spec.backend}) could not be loaded: {type(e).__name__}: {e}"
                ) from e
            cache[role] = adapter
        return cache[role]

    def get(self, role: str) -> Any | None:
        return self[role] if role in self else None

    def built(self) -> dict[str, Any]:
        """Role -> adapter, of the roles built so far."""
        return {**self._shared, **self._built}


STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
"""OSErrors that say the output location cannot take what is written (full, over quota, read-only, forbidden)."""


def storage_failure(error: BaseException) -> bool:
    """Whether an error (or what caused it) is OUT refusing writes, rather than something wrong with one shard."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            return True
        if isinstance(error, PermissionError):
            return True
        error = error.__cause__ or error.__context__
    return False


def attempt(work: Callable[[], dict[str, Any]], paths: ShardPaths) -> dict[str, Any]:
    """One shard's work (`paths` its files), never raising: {'ok': True, 'stats': ...} or {'ok': False, 'error': ...,
    'traceback': ...}, the result datagen/distribute.py hands the driver. A lost lease is `lease_lost` (the driver
    stops, touching nothing); OUT refusing writes is `storage` (every shard would fail the same way: the driver
    stops), after giving back the space the shard's published files hold."""
    try:
        return {"ok": True, "stats": work()}
    except Exception as e:  # a failing shard is retried, then recorded; the run goes on
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        if isinstance(e, LeaseLost):
            result["lease_lost"] = True
        elif storage_failure(e):
            result["storage"] = True
            with contextlib.suppress(Exception):
                shards.clear_uncommitted(paths)
        return result


class ShardWorker:
    """Renders shards of one run; builds its models once, on first use."""

    def __init__(self, config: RunConfig, shared: dict[str, Any] | None = None, lease: str | None = None):
        self.config = config
        self.lease = lease
        """The token of the driver's lease on OUT (datagen/lease.py): checked before this worker clears leftovers or
        commits, so a worker whose driver is gone (killed, taken over) never writes beside the new writer."""
        self._models: ModelSet | None = None
        self._shared = shared
        self._source = None
        self._template_writer = None
        self.siblings: dict[str, ShardWorker] = {config.task.name: self}
        """Task -> the worker of each task of the run in this process (MixtureWorker's); a session's turns are
        written and rendered by their own tasks' workers (datagen/session_shard.py)."""

    @property
    def models(self) -> ModelSet:
        if self._models is None:
            self._models = ModelSet(self.config, self._shared)
        return self._models

    @property
    def writer(self):
        """The instruction writer: the pipeline's llm role, or for a task written from its session alone (the
        template writer's SESSION_KINDS: backtrack) the template writer, on every pipeline."""
        templates = self.config.prompt.templates
        if templates is None or templates.edit not in SESSION_KINDS:
            return self.models["llm"]
        if self._template_writer is None:
            self._template_writer = TemplateWriter(RoleSpec(backend="template"), self.config.prompt)
        return self._template_writer

    @property
    def source(self):
        if self._source is None:
            run = self.config.run
            self._source = pipeline_source(run.source, self.config.pipeline, run.input)
        return self._source

    @functools.cached_property
    def version_note(self) -> dict[str, Any]:
        """{'version_change': {library: [recorded, current]}} when this worker's libraries that decide the bytes are
        not those run.json recorded (a resume with --allow-version-change), else {}: every shard's stats carry it."""
        changes = version_changes(recorded_versions(self.config.run.out), library_versions())
        return {"version_change": changes} if changes else {}

    def _check_lease(self) -> None:
        if self.lease is not None:
            check_held(self.config.run.out, self.lease)

    def load(self, phase: str) -> None:
        """Build and load every model `phase` needs now (resolve.roles_used: the judge, text-to-image and the
        detector gate included), so a model that cannot load (missing, corrupt, too big for the memory) fails the
        worker once, at its start, instead of failing each of its shards in turn."""
        for role in roles_used(self.config, phase):
            self.models[role]

    def run(self, phase: str, shard: int) -> dict[str, Any]:
        """Run one phase of one shard, never raising (see `attempt`)."""
        paths = shards.shard_paths(self.config.run.out, phase, self.config.task.name, shard)
        return attempt(lambda: self.write_shard(shard) if phase == "write" else self.render_shard(shard), paths)

    # ------------------------------------------------------------------------------------ phase 1: write

    def write_shard(self, shard: int) -> dict[str, Any]:
        run, task = self.config.run, self.config.task
        paths = shards.shard_paths(run.out, "write", task.name, shard)
        if shards.is_committed(paths):
            return shards.read_stats(paths)
        self._check_lease()
        shards.clear_uncommitted(paths)
        started = time.perf_counter()
        if run.turns > 1:  # each sample is a session: its first turn is written here, the rest as it renders
            texts = session_shard.first_turns(self, shard)
        else:
            texts = []
            for index in range(run.shard_len(shard)):
                seed = sample_seed(run.seed, task.name, shard, index)
                texts.append(new_instruction(task.name, shard, index, seed, self.models["llm"].model_id))
            self.write_records(texts)
        reasons = Counter(t["reason"] for t in texts if t["status"] != "ok")
        lines = [instruction_line(t) for t in texts]
        data = ("\n".join(lines) + "\n").encode()
        sha = paths.folder.write_atomic(paths.jsonl, data)
        stats: shards.WriteStats = {
            "phase": "write",
            "task": task.name,
            "shard": shard,
            "records": len(lines),
            "rejected": sum(reasons.values()),
            "reasons": dict(sorted(reasons.items())),
            "jsonl": {"name": paths.jsonl, "bytes": len(data), "sha256": sha},
        }
        return self._commit(paths, stats, started)

    def write_records(self, texts: list[InstructionRecord]) -> None:
        """Fill in these new instruction records of this task from the run's source, in one batched writer call:
        each input's reference and caption (a photo without one captioned from the image where a model can), then
        what the writer writes; an input or an output that is unusable leaves its record rejected with the reason."""
        run, writer = self.config.run, self.writer
        caption_field = f"{self.config.prompt.caption_role}_caption"
        items = {}
        uncaptioned: list[int] = []
        captioner = self._captioner(writer)
        for position, text in enumerate(texts):
            try:
                text["source"] = self.source.ref(text["seed"], text["shard"] * run.shard_size + text["index"])
                item = self.source.item(text["source"])
                judged = False  # captioned by the judge from the image, below
                if item.topic is not None:  # the writer writes the caption from the topic
                    item.topic = check_text(item.topic, "topic")
                elif item.caption.strip() or not source_class(run.source).photos:
                    item.caption = check_text(item.caption, "caption")
                elif captioner is None:
                    item.caption = self._uncaptioned(text["source"])
                else:  # the writer captions it from the image, or the judge does below
                    judged = captioner == "judge"
                item.objects = [check_text(name, "object") for name in item.objects]
                if getattr(writer, "sees_image", False) or judged:  # the image itself is looked at
                    item.image = self.source.load(text["source"], run.max_image_pixels).image
                items[position] = item
                text[caption_field] = text["source_caption"] = item.caption
                if judged:
                    uncaptioned.append(position)
            except Reject as e:
                text.update(status="rejected", reason=e.reason, detail=str(e)[:500])
            except Exception as e:  # noqa: BLE001  whatever one input raises (a decoder's bug, an absurd allocation)
                text.update(status="rejected", reason=INPUT_ERROR, detail=f"{type(e).__name__}: {e}"[:500])
        if uncaptioned:
            self._caption(items, texts, uncaptioned, caption_field)
        self.write_items(texts, items)

    def write_items(self, texts: list[InstructionRecord], items: dict[int, Any]) -> None:
        """Write the edits of these records (position in `texts` -> its SourceItem: caption, objects, and the image
        where it is looked at) in one batched writer call; a record whose output is unusable is rejected."""
        writer = self.writer
        caption_field = f"{self.config.prompt.caption_role}_caption"
        seen = self._look(items, texts)
        written = writer.write_batch(list(items.values()), [texts[i]["seed"] for i in items])  # one batched call
        for index, output in zip(items, written, strict=True):
            if isinstance(output, WriterReject):
                texts[index].update(status="rejected", reason=output.reason, detail=str(output)[:500])
            elif bad := _bad_output(output):
                texts[index].update(status="rejected", reason=bad.reason, detail=str(bad)[:500])
            else:
                output = dict(output)
                if "source_caption" in output:  # written by the LLM from a topic, or from a photo without a caption
                    texts[index][caption_field] = texts[index]["source_caption"] = output.pop("source_caption")
                for name in TEXT_FIELDS:
                    if name in output:
                        texts[index][name] = output.pop(name)
                edit = self._generator.with_seen(seen[index], output) if index in seen else output
                if isinstance(edit, Reject):
                    texts[index].update(status="rejected", reason=edit.reason, detail=str(edit)[:500])
                else:
                    texts[index]["edit"] = edit  # the task's own fields: new object, style, colour op, direction ...

    def _captioner(self, writer) -> str | None:
        """Who captions a photo that came without a caption: the writer when it sees images, else the pipeline's
        vision-language judge (loaded when the first such photo comes), else nobody."""
        if getattr(writer, "captions_images", False):
            return "writer"
        judge = self.config.pipeline.roles.get("judge")
        if judge is not None and judge.backend == "vllm" and self.config.caption_prompt is not None:
            return "judge"
        return None

    def _caption(self, items: dict[int, Any], texts: list[InstructionRecord], indices: list[int], field: str) -> None:
        """Caption photos without one with the judge, one batched call; one it cannot caption is rejected."""
        judge = self.models["judge"]
        seeds = [texts[index]["seed"] ^ 0x5F3759DF for index in indices]
        captions = judge.caption_batch([items[index].image for index in indices], seeds, self.config.caption_prompt)
        for index, caption in zip(indices, captions, strict=True):
            try:
                if isinstance(caption, Reject):
                    raise caption
                items[index].caption = check_text(caption, "caption", injection=False)
            except Reject as e:
                texts[index].update(status="rejected", reason=e.reason, detail=str(e)[:500])
                del items[index]
                continue
            texts[index][field] = texts[index]["source_caption"] = items[index].caption
            if not getattr(self.models["llm"], "sees_image", False):
                items[index].image = None  # the writer reads the caption, not the image

    def _uncaptioned(self, ref: dict[str, Any]) -> str:
        """A photo without a caption, where no writer can caption it: UNCAPTIONED for a task that needs none, else
        rejected, saying what to add."""
        task = self.config.task
        if not task.needs_caption:
            return UNCAPTIONED
        raise BadSource(
            "caption_empty",
            f"{describe_ref(ref)} has no caption and task {task.name!r} writes its edit about the caption; add one "
            f"({source_class(self.config.run.source).caption_where}), or caption photos from the image with a "
            f"vision-language writer (--set pipeline.roles.llm.args.see_image=true on a pipeline whose llm is one), "
            f"or run a task that needs none: {', '.join(tasks_without_captions())}",
        )

    @property
    def _generator(self):
        return generators.get(self.config.generator.kind)

    def _look(self, items: dict[int, Any], texts: list[InstructionRecord]) -> dict[int, dict[str, Any]]:
        """Where the task reads its input before the writer writes (generators.write_roles: the text task's OCR on
        photos), each input's image loaded and all of them looked at in one batched call. Returns index -> what
        was seen (also set on the item for the writer); an input with nothing to edit is rejected with the reason,
        and leaves `items`."""
        spec, run = self.config.generator, self.config.run
        readers = generators.write_roles(self._generator, spec.args, run.source)
        if not readers or not items:
            return {}
        for index in list(items):
            try:
                if items[index].image is None:
                    items[index].image = self.source.load(texts[index]["source"], run.max_image_pixels).image
            except Reject as e:
                texts[index].update(status="rejected", reason=e.reason, detail=str(e)[:500])
                del items[index]
            except Exception as e:  # noqa: BLE001  as in write_records: this input's, not the shard's
                texts[index].update(status="rejected", reason=INPUT_ERROR, detail=f"{type(e).__name__}: {e}"[:500])
                del items[index]
        args = self._generator.Args.parse(spec.args, "task file")
        looked = self._generator.look(
            args, {role: self.models[role] for role in readers}, [items[i].image for i in items]
        )
        seen = {}
        for index, outcome in zip(list(items), looked, strict=True):
            if isinstance(outcome, Reject):
                texts[index].update(status="rejected", reason=outcome.reason, detail=str(outcome)[:500])
                del items[index]
                continue
            for name, value in outcome.items():
                setattr(items[index], name, value)
            seen[index] = outcome
        return seen

    # ----------------------------------------------------------------------------------- phase 2: render

    def render_shard(self, shard: int) -> dict[str, Any]:
        run, task, pipe = self.config.run, self.config.task, self.config.pipeline
        texts = shards.shard_paths(run.out, "write", task.name, shard)
        if not shards.is_committed(texts):
            raise RuntimeError(f"instructions of shard {texts.name} are not written yet: run `datagen write` first")
        paths = shards.shard_paths(run.out, "render", task.name, shard)
        if shards.is_committed(paths):
            return shards.read_stats(paths)
        self._check_lease()
        shards.clear_uncommitted(paths)
        started = time.perf_counter()
        if run.turns > 1:
            render = session_shard.SessionRender(self)
        else:
            render = ShardRender(self.config, self.models, self.source)
        codec = (pipe.image_format, pipe.image_quality, pipe.png_compression)
        tar = shards.TarShardWriter(paths.folder, paths.tar, *codec)
        rejected = shards.RejectedTarWriter(paths.folder, paths.rejected_tar, *codec) if pipe.keep_rejected else None
        instructions = read_instructions(texts.folder.read_text(texts.jsonl))
        try:
            records = render.run(instructions, tar, rejected)
            tar_info = tar.commit()
            rejected_info = {"rejected_tar": rejected.commit()} if rejected is not None else {}
        except BaseException:
            tar.abort()
            if rejected is not None:
                rejected.abort()
            raise
        manifest = shards.manifest_bytes(records)
        parquet_sha = paths.folder.write_atomic(paths.parquet, manifest)
        first = {}
        for record in records:
            first.setdefault(record.key, record)
        kept = [r for r in records if r.status == "kept"]
        kept_keys = {r.key for r in kept}
        sample_reasons = Counter(r.reason for key, r in first.items() if key not in kept_keys)
        errors = sum(1 for key, r in first.items() if r.status == "error")
        stats: shards.ShardStats = {
            "phase": "render",
            "task": task.name,
            "shard": shard,
            "samples": len(first),
            "candidates": len(records),
            "kept": len(kept),
            "rejected": len(first) - len(kept) - errors,
            "errors": errors,
            "reasons": dict(sorted(sample_reasons.items())),
            "candidate_reasons": dict(sorted(Counter(r.reason for r in records if r.reason).items())),
            "image_format": pipe.image_format,
            "tar": tar_info,
            **rejected_info,
            "parquet": {
                "name": paths.parquet,
                "bytes": len(manifest),
                "sha256": parquet_sha,
                "rows": len(records),
            },
            **render.stats(),
        }
        return self._commit(paths, stats, started)

    def _commit(self, paths: ShardPaths, stats: dict[str, Any], started: float) -> dict[str, Any]:
        """A shard's stats completed with what every phase records (the configuration's fingerprint, the seconds
        since `started`, the commit time, a version change) and published as its commit marker, last, while this
        worker's driver still holds OUT."""
        stats.update(
            config=self.config.fingerprint(),
            seconds=round(time.perf_counter() - started, 3),
            committed=shards.now(),
            **self.version_note,
        )
        self._check_lease()
        shards.write_stats(paths, stats)
        return stats


class MixtureWorker:
    """One worker (inline, or a Ray actor) for every task of a run: each task's ShardWorker, with the vision models
    shared between tasks and the vLLM engine shared by every task's agent (engines are per process)."""

    def __init__(self, configs: list[RunConfig], phase: str | None = None, lease: str | None = None):
        shared: dict[str, Any] = {}
        self.workers = {c.task.name: ShardWorker(c, shared, lease) for c in configs}
        for worker in self.workers.values():
            worker.siblings = self.workers
        if phase is not None:  # models resident from the start; a worker that cannot load them never takes a shard
            for worker in self.workers.values():
                worker.load(phase)

    def ready(self) -> bool:
        """Answers once the worker is built: the driver gives shards only to workers that started."""
        return True

    def run(self, task: str, phase: str, shard: int) -> dict[str, Any]:
        return self.workers[task].run(phase, shard)


def describe_ref(ref: dict[str, Any]) -> str:
    """A source ref in words: the photo's path, or its tar and key (a curated input's, that of its source)."""
    if isinstance(ref.get("of"), dict):
        return describe_ref(ref["of"])
    if "tar" in ref:
        return f"photo {ref.get('key')} in {ref['tar']}"
    return f"photo {ref['path']}" if "path" in ref else "the photo"


@functools.cache
def tasks_without_captions() -> list[str]:
    """The tasks whose files say needs_caption: false."""
    from datagen.config import TaskSpec, find_config, known, read_yaml, validate

    paths = {name: find_config("tasks", name) for name in known("tasks")}
    return [name for name, path in paths.items() if not validate(TaskSpec, read_yaml(path), str(path)).needs_caption]


def _bad_output(output: dict[str, Any]) -> BadSource | None:
    """A writer output whose texts are empty, too long or hold control characters (a model's stray bytes)."""
    checks = {"instruction": "instruction", "output_caption": "caption", "source_caption": "caption"}
    try:
        for name, what in checks.items():
            if isinstance(output.get(name), str):
                check_text(output[name], what, injection=False)
    except BadSource as e:
        return BadSource(f"{name}_{e.reason.split('_', 1)[1]}", str(e).split(": ", 1)[1])
    return None


def write_shard(config: RunConfig, shard: int) -> dict[str, Any]:
    """Phase 1 of one shard, without Ray (debugging, single-machine benchmarks); returns its stats."""
    return ShardWorker(config).write_shard(shard)


def render_shard(config: RunConfig, shard: int) -> dict[str, Any]:
    """Phase 2 of one shard, without Ray; its instructions must be written. Returns its stats."""
    return ShardWorker(config).render_shard(shard)
