"""Phases, shard workers, Ray distribution, resume and the run summary.

The unit of work is the shard. `ShardWorker.write_shard(i)` and `.render_shard(i)` run anywhere — inline for
debugging, or inside a Ray actor that builds the models once and renders many shards.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datagen import __version__, generators, models, shards
from datagen.config import RunConfig
from datagen.errors import ConfigError, Reject, RunStopped
from datagen.progress import Progress, log_event
from datagen.record import sample_key, sample_seed
from datagen.render import ShardRender
from datagen.sources import BadSource, build_source, check_text
from datagen.storage import Folder
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


class ShardWorker:
    """Renders shards of one run; builds its models once, on first use."""

    def __init__(self, config: RunConfig, shared: dict[str, Any] | None = None):
        self.config = config
        self._models: ModelSet | None = None
        self._shared = shared
        self._source = None

    @property
    def models(self) -> ModelSet:
        if self._models is None:
            self._models = ModelSet(self.config, self._shared)
        return self._models

    @property
    def source(self):
        if self._source is None:
            run = self.config.run
            self._source = build_source(run.source, self.config.pipeline.image_size, run.input)
        return self._source

    def load(self, phase: str) -> None:
        """Build and load every model `phase` needs now, so a model that cannot load (missing, corrupt, too big
        for the memory) fails the worker at its start instead of failing each of its shards in turn."""
        if phase == "write":
            self.models["llm"]
            return
        spec = self.config.generator
        roles = generators.roles(generators.get(spec.kind), spec.args)
        for role in (*roles, "clip", "dino", "classifier"):
            self.models.get(role)

    def run(self, phase: str, shard: int) -> dict[str, Any]:
        """Run one phase of one shard, never raising: {'ok': True, 'stats': ...} or {'ok': False, 'error': ...}."""
        try:
            stats = self.write_shard(shard) if phase == "write" else self.render_shard(shard)
            return {"ok": True, "stats": stats}
        except Exception as e:  # a failing shard is retried, then recorded; the run goes on
            result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            if storage_failure(e):  # ... unless OUT itself cannot take it: then every shard would fail the same way
                result["storage"] = True
                with contextlib.suppress(Exception):  # give back the space this shard's published files hold
                    shards.clear_uncommitted(
                        shards.shard_paths(self.config.run.out, phase, self.config.task.name, shard)
                    )
            return result

    # ------------------------------------------------------------------------------------ phase 1: write

    def write_shard(self, shard: int) -> dict[str, Any]:
        run, task = self.config.run, self.config.task
        paths = shards.shard_paths(run.out, "write", task.name, shard)
        if shards.is_committed(paths):
            return shards.read_stats(paths)
        shards.clear_uncommitted(paths)
        started = time.perf_counter()
        writer = self.models["llm"]
        caption_field = f"{self.config.prompt.caption_role}_caption"
        texts, items = [], {}
        for index in range(run.shard_len(shard)):
            seed = sample_seed(run.seed, task.name, shard, index)
            text = {
                "key": sample_key(task.name, shard, index),
                "task": task.name,
                "shard": shard,
                "index": index,
                "seed": seed,
                "source": None,
                "input_caption": "",
                "instruction": "",
                "output_caption": "",
                "objects": [],
                "source_caption": "",
                "edit": {},
                "status": "ok",
                "reason": "",
                "detail": "",
                "writer": writer.model_id,
            }
            try:
                text["source"] = self.source.ref(seed, shard * run.shard_size + index)
                item = self.source.item(text["source"])
                if item.topic is None:
                    item.caption = check_text(item.caption, "caption")
                else:  # the writer writes the caption from the topic
                    item.topic = check_text(item.topic, "topic")
                item.objects = [check_text(name, "object") for name in item.objects]
                items[index] = item
                text[caption_field] = text["source_caption"] = item.caption
            except Reject as e:
                text.update(status="rejected", reason=e.reason, detail=str(e)[:500])
            texts.append(text)
        written = writer.write_batch(list(items.values()), [texts[i]["seed"] for i in items])  # one batched call
        for index, output in zip(items, written, strict=True):
            if isinstance(output, WriterReject):
                texts[index].update(status="rejected", reason=output.reason, detail=str(output)[:500])
            elif bad := _bad_output(output):
                texts[index].update(status="rejected", reason=bad.reason, detail=str(bad)[:500])
            else:
                output = dict(output)
                if "source_caption" in output:  # written by the LLM from a topic
                    texts[index][caption_field] = texts[index]["source_caption"] = output.pop("source_caption")
                for name in TEXT_FIELDS:
                    if name in output:
                        texts[index][name] = output.pop(name)
                texts[index]["edit"] = output  # the task's own fields: new object, style, colour op, direction ...
        reasons = Counter(t["reason"] for t in texts if t["status"] != "ok")
        lines = [json.dumps(t, sort_keys=True, ensure_ascii=False) for t in texts]
        data = ("\n".join(lines) + "\n").encode()
        sha = paths.folder.write_atomic(paths.jsonl, data)
        stats = {
            "phase": "write",
            "task": task.name,
            "shard": shard,
            "records": len(lines),
            "rejected": sum(reasons.values()),
            "reasons": dict(sorted(reasons.items())),
            "jsonl": {"name": paths.jsonl, "bytes": len(data), "sha256": sha},
            "config": self.config.fingerprint(),
            "seconds": round(time.perf_counter() - started, 3),
            "committed": _now(),
        }
        paths.folder.write_atomic(paths.stats, json.dumps(stats, indent=1, sort_keys=True).encode())
        return stats

    # ----------------------------------------------------------------------------------- phase 2: render

    def render_shard(self, shard: int) -> dict[str, Any]:
        run, task, pipe = self.config.run, self.config.task, self.config.pipeline
        texts = shards.shard_paths(run.out, "write", task.name, shard)
        if not shards.is_committed(texts):
            raise RuntimeError(f"instructions of shard {texts.name} are not written yet: run `datagen write` first")
        paths = shards.shard_paths(run.out, "render", task.name, shard)
        if shards.is_committed(paths):
            return shards.read_stats(paths)
        shards.clear_uncommitted(paths)
        started = time.perf_counter()
        render = ShardRender(self.config, self.models, self.source)
        tar = shards.TarShardWriter(
            paths.folder, paths.tar, pipe.image_format, pipe.image_quality, pipe.png_compression
        )
        lines = (json.loads(line) for line in texts.folder.read_text(texts.jsonl).splitlines())
        try:
            records = render.run(lines, tar)
            tar_info = tar.commit()
        except BaseException:
            tar.abort()
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
        stats = {
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
            "parquet": {
                "name": paths.parquet,
                "bytes": len(manifest),
                "sha256": parquet_sha,
                "rows": len(records),
            },
            "config": self.config.fingerprint(),
            **render.stats(),
            "seconds": round(time.perf_counter() - started, 3),
            "committed": _now(),
        }
        paths.folder.write_atomic(paths.stats, json.dumps(stats, indent=1, sort_keys=True).encode())
        return stats


class MixtureWorker:
    """One worker (inline, or a Ray actor) for every task of a run: each task's ShardWorker, with the vision models
    shared between tasks and the vLLM engine shared by every task's agent (engines are per process)."""

    def __init__(self, configs: list[RunConfig], phase: str | None = None):
        shared: dict[str, Any] = {}
        self.workers = {c.task.name: ShardWorker(c, shared) for c in configs}
        if phase is not None:  # models resident from the start; a worker that cannot load them never takes a shard
            for worker in self.workers.values():
                worker.load(phase)

    def ready(self) -> bool:
        """Answers once the worker is built: the driver gives shards only to workers that started."""
        return True

    def run(self, task: str, phase: str, shard: int) -> dict[str, Any]:
        return self.workers[task].run(phase, shard)


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


# --------------------------------------------------------------------------------------------- runs


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0], "datagen": __version__}
    for name in ("numpy", "opencv-python-headless", "pillow", "pyarrow", "ray", "webdataset", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _fingerprint_view(data: dict) -> dict:
    view = json.loads(json.dumps(data))
    view["run"].pop("out", None)  # a run directory may be moved or mounted elsewhere
    return view


def start_run(configs: list[RunConfig]) -> None:
    """Write OUT/run.json for these tasks (one, or a mixture), or check that an existing one plans the same run."""
    out = Folder(configs[0].run.out)
    out.makedirs()
    resolved = {c.task.name: c.model_dump(mode="json", by_alias=True) for c in configs}
    if out.exists("run.json"):
        previous = read_run(out)
        if set(previous) != set(resolved):
            raise ConfigError(
                f"{out} holds a run of task(s) {', '.join(sorted(previous))}, not {', '.join(sorted(resolved))}; "
                f"resuming would mix two runs. Use another --out, or the original tasks."
            )
        diffs = []
        for task, config in resolved.items():
            diffs += _diff(_fingerprint_view(previous[task]), _fingerprint_view(config), f"{task}.")
        if diffs:
            raise ConfigError(
                f"{out} holds a run with a different configuration ({'; '.join(diffs[:5])}); resuming would mix "
                f"two runs. Use another --out, or the original settings."
            )
        return
    record = {
        "runs": {c.task.name: {"config": resolved[c.task.name], "fingerprint": c.fingerprint()} for c in configs},
        "seed": configs[0].run.seed,
        "versions": versions(),
        "created": _now(),
    }
    try:
        out.write_atomic("run.json", json.dumps(record, indent=1, sort_keys=True).encode())
    except (OSError, ValueError) as e:  # a missing bucket, no permission, a full disk
        raise ConfigError(f"{out}: cannot write run.json there ({type(e).__name__}: {e})") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_run(out: Folder) -> dict[str, dict]:
    """Task name -> resolved configuration, from OUT/run.json."""
    path = out.url("run.json")
    try:
        record = json.loads(out.read_text("run.json"))
        if "config" in record and "runs" not in record:  # a single-task run written before mixtures existed
            return {record["config"]["task"]["name"]: record["config"]}
        return {task: run["config"] for task, run in record["runs"].items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); move it away to start a new run in {out}") from None


def load_runs(out: str) -> list[RunConfig]:
    """The configurations of the run in OUT (resume without --task)."""
    folder = Folder(out)
    path = folder.url("run.json")
    if not folder.exists("run.json"):
        raise ConfigError(f"--task is required: {path} does not exist, so there is no run to resume")
    configs = []
    for task, data in sorted(read_run(folder).items()):
        try:
            config = RunConfig.model_validate(data)
        except Exception as e:
            raise ConfigError(f"{path}: the run of task {task!r} is not a datagen configuration ({e})") from None
        config.run.out = out
        configs.append(config)
    return configs


def split_n(n: int, weights: dict[str, float]) -> dict[str, int]:
    """N samples shared by weight, largest remainders first, so the parts add up to N exactly."""
    total = sum(weights.values())
    exact = {task: n * w / total for task, w in weights.items()}
    parts = {task: int(value) for task, value in exact.items()}
    for task in sorted(exact, key=lambda t: (parts[t] - exact[t], t))[: n - sum(parts.values())]:
        parts[task] += 1
    return parts


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


@dataclass
class Summary:
    phase: str
    shards_total: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    samples: int = 0
    kept: int = 0
    errors: int = 0
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    written: Summary | None = None
    """For generate: the summary of its write phase."""

    def add(self, stats: dict[str, Any]) -> None:
        self.shards_done += 1
        if stats.get("phase") == "render":
            self.samples += stats["samples"]
            self.kept += stats["kept"]
            self.errors += stats["errors"]
        else:
            self.samples += stats["records"]
        self.reasons.update(stats["reasons"])

    def lines(self, task: str, out: str) -> list[str]:
        rate = self.samples / self.seconds if self.seconds else 0.0
        head = (
            f"{task} {self.phase}: {self.shards_done}/{self.shards_total} shards done "
            f"({self.shards_skipped} already committed)"
        )
        lines = self.written.lines(task, out) if self.written else []
        lines.append(head)
        if self.phase == "write":
            lines.append(f"  instructions: {self.samples} records, {sum(self.reasons.values())} rejected")
        else:
            pct = 100.0 * self.kept / self.samples if self.samples else 0.0
            lines.append(f"  samples: {self.kept} kept of {self.samples} attempted ({pct:.1f}%), {self.errors} errors")
        if self.reasons:
            lines.append("  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in self.reasons.most_common()))
        lines.append(f"  {rate:.1f} samples/s over {self.seconds:.1f} s (this invocation)")
        if self.failed:
            lines.append(f"  FAILED shards: {len(self.failed)} (tracebacks in {out}/failed/; rerun to retry them)")
            for shard, error in sorted(self.failed.items())[:10]:
                lines.append(f"    {shard:06d}: {error}")
        return lines


def pending_shards(config: RunConfig, phase: str) -> list[int]:
    """Shards whose last phase is not committed yet (resume planning). One streaming pass over the folder's names
    into a bitmap of the run's shards: a million committed shards plan in about a second in a few MB."""
    run, task = config.run, config.task
    folder = Folder(run.out).sub("texts" if phase == "write" else "shards")
    done = bytearray(run.num_shards)
    prefix, suffix = f"{task.name}-", ".stats.json"
    for name in folder.iter_names(prefix):
        number = name[len(prefix) : -len(suffix)]
        if name.endswith(suffix) and number.isdigit() and int(number) < run.num_shards:
            done[int(number)] = 1
    return [i for i in range(run.num_shards) if not done[i]]


def record_failure(config: RunConfig, phase: str, shard: int, result: dict[str, Any], attempts: int) -> None:
    body = {
        "phase": phase,
        "shard": shard,
        "attempts": attempts,
        "error": result.get("error"),
        "traceback": result.get("traceback"),
    }
    failed = Folder(config.run.out).sub("failed")
    failed.write_atomic(f"{shards.shard_name(config.task.name, shard)}.json", json.dumps(body, indent=1).encode())


def clear_failure(config: RunConfig, shard: int) -> None:
    Folder(config.run.out).sub("failed").remove(f"{shards.shard_name(config.task.name, shard)}.json")


def execute_all(
    configs: list[RunConfig],
    phase: str,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[Summary]:
    """Run `phase` over every shard not yet committed, for one task or a mixture sharing OUT: 'write', 'render',
    or 'generate' (every task's shards written, then every task's shards rendered, each phase on its own actors,
    which every task shares: the LLM's GPUs are free before the image models load). One summary per task."""
    start_run(configs)
    if phase != "generate":
        return _execute_phase(configs, phase, ray_address, workers, progress)
    written = _execute_phase(configs, "write", ray_address, workers, progress)
    if workers == 0:
        from datagen.writer import release_engines

        release_engines("cuda")  # the LLM's GPU memory goes back before the image models load in this process
    rendered = _execute_phase(
        configs,
        "render",
        ray_address,
        workers,
        progress,
        skip={(c.task.name, s) for c, w in zip(configs, written, strict=True) for s in w.failed},
    )
    for summary, write in zip(rendered, written, strict=True):
        summary.written = write
    return rendered


def execute(
    config: RunConfig, phase: str, ray_address: str | None = None, workers: int | None = None, progress: bool = True
) -> Summary:
    """One task's run (see execute_all)."""
    return execute_all([config], phase, ray_address, workers, progress)[0]


def _execute_phase(
    configs: list[RunConfig],
    phase: str,
    ray_address: str | None,
    workers: int | None,
    progress: bool,
    skip: set[tuple[str, int]] = frozenset(),
) -> list[Summary]:
    by_task = {c.task.name: c for c in configs}
    summaries = {name: Summary(phase=phase, shards_total=c.run.num_shards) for name, c in by_task.items()}
    todo = []
    for name, config in by_task.items():
        pending = [s for s in pending_shards(config, phase) if (name, s) not in skip]
        summaries[name].shards_skipped = config.run.num_shards - len(pending) - sum(1 for t, _ in skip if t == name)
        todo += [(name, s) for s in pending]
    started = time.perf_counter()
    label = configs[0].task.name if len(configs) == 1 else f"{len(configs)} tasks"
    bar = Progress(len(todo), f"{label} {phase}", unit="shard", enabled=progress)

    def on_result(item: tuple[str, int], result: dict[str, Any], attempts: int, final: bool = False) -> bool:
        """Returns True when the shard is finished (committed or given up); `final` gives it up without retry."""
        name, shard = item
        config, summary = by_task[name], summaries[name]
        if result.get("storage"):
            if progress:
                log_event("run_stopped", task=name, shard=shard, phase=phase, error=result["error"])
            raise RunStopped(
                f"{config.run.out}: cannot write shard {shards.shard_name(name, shard)} there "
                f"({result['error'][:300]}). Every shard committed so far is complete and kept, and nothing "
                f"half-written is visible; free space (or fix permissions) and rerun the same command to resume."
            )
        if result["ok"]:
            summary.add(result["stats"])
            clear_failure(config, shard)
        elif not final and attempts <= config.run.max_shard_retries:
            return False
        else:
            summary.failed[shard] = result["error"]
            record_failure(config, phase, shard, result, attempts)
            if progress:
                log_event(
                    "shard_failed", task=name, shard=shard, phase=phase, attempts=attempts, error=result["error"]
                )
        elapsed = time.perf_counter() - started
        done = sum(s.samples for s in summaries.values())
        counts = {"kept": sum(s.kept for s in summaries.values())} if phase != "write" else {}
        bar.update(1, samples=done, **counts, samples_per_s=round(done / max(elapsed, 1e-9), 1))
        return True

    try:
        if workers == 0:
            _run_inline(configs, phase, todo, on_result)
        else:
            _run_ray(configs, phase, todo, on_result, ray_address, workers)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    for summary in summaries.values():
        summary.seconds = seconds
    return [summaries[c.task.name] for c in configs]


def _run_inline(configs: list[RunConfig], phase: str, todo: list[tuple[str, int]], on_result) -> None:
    try:
        worker = MixtureWorker(configs, phase)
    except Exception as e:  # a model that cannot load: every shard fails with the reason, nothing is attempted
        result = {"ok": False, "error": f"worker could not start: {type(e).__name__}: {e}"[:800]}
        result["traceback"] = traceback.format_exc()
        for item in todo:
            on_result(item, result, 0, final=True)
        return
    for item in todo:
        attempts = 0
        while True:
            attempts += 1
            if on_result(item, worker.run(item[0], phase, item[1]), attempts):
                break


def init_ray(address: str | None) -> None:
    """Join RAY_ADDRESS / --ray-address, or start an embedded single-machine cluster bound to loopback."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=True)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(_node_ip_address="127.0.0.1", **common)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def actor_error(error: Exception) -> str:
    """One line for a dead worker: the exception its constructor raised, or how it died (node lost, killed)."""
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    if not lines:
        return f"worker died: {type(error).__name__}"
    if "creation task" in lines[0]:  # the constructor raised: its exception is the last line of the traceback
        return f"worker could not start: {lines[-1]}"[:800]
    return f"worker died: {lines[0]}"[:800]


WAITING_NOTE_S = 60.0
"""How often the driver says it is waiting for workers the cluster cannot place yet."""


def _run_ray(
    configs: list[RunConfig],
    phase: str,
    todo: list[tuple[str, int]],
    on_result,
    address: str | None,
    workers: int | None,
) -> None:
    """Shards go only to workers that answered `ready` (their models loaded), two in flight each. A worker that dies
    (its node lost, killed, out of memory) or cannot start is replaced while the budget lasts (actor.max_restarts
    per worker); its shards go back to the queue, each attempt counted. Replacements the cluster cannot place stay
    pending without holding work; when no worker is left and none is starting, the remaining shards fail with the
    last worker's error."""
    if not todo:
        return
    import ray
    from ray.exceptions import RayActorError

    init_ray(address)
    pipeline = configs[0].pipeline
    actor = pipeline.writer_actor if phase == "write" else pipeline.actor
    resources = ray.cluster_resources()
    count = workers or max(1, int(resources.get("CPU", 1.0) // actor.num_cpus))
    if actor.num_gpus > 0:  # actors that cannot be placed would wait forever
        fit = int(resources.get("GPU", 0.0) // actor.num_gpus)
        if fit == 0:
            raise ConfigError(
                f"the {phase} actors need {actor.num_gpus} GPU(s) each and the Ray cluster has "
                f"{resources.get('GPU', 0.0):g}; join a cluster with GPUs (--ray-address) or lower "
                f"{'writer_actor' if phase == 'write' else 'actor'}.num_gpus"
            )
        count = min(count, fit)
    count = min(count, len(todo))
    Remote = ray.remote(num_cpus=actor.num_cpus, num_gpus=actor.num_gpus, max_restarts=0)(MixtureWorker)
    starting: dict[Any, Any] = {}  # ready() ref -> worker not answering yet
    ready: list[Any] = []
    queue = list(reversed(todo))
    attempts: Counter[tuple[str, int]] = Counter()
    in_flight: dict[Any, tuple[tuple[str, int], Any]] = {}
    per_actor: Counter[int] = Counter()
    budget = actor.max_restarts * count
    last_error = ""

    def start() -> None:
        handle = Remote.remote(configs, phase)
        starting[handle.ready.remote()] = handle

    def lose(handle, error: str) -> None:
        nonlocal budget, last_error
        last_error = error
        ray.kill(handle, no_restart=True)
        log_event("worker_lost", phase=phase, error=error, replacements_left=budget)
        if budget > 0:
            budget -= 1
            start()

    def submit(handle) -> None:
        item = queue.pop()
        attempts[item] += 1
        in_flight[handle.run.remote(item[0], phase, item[1])] = (item, handle)
        per_actor[id(handle)] += 1

    for _ in range(count):
        start()
    waited_since = time.monotonic()
    try:
        while queue or in_flight:
            for handle in ready:
                while queue and per_actor[id(handle)] < 2:  # two in flight keeps a worker busy between results
                    submit(handle)
            if not (ready or starting or in_flight):
                restarts = f"{actor.max_restarts} restart(s) per worker"
                error = f"no worker left after {restarts}; the last: {last_error or 'died'}"
                for item in queue:
                    on_result(item, {"ok": False, "error": error}, attempts[item], final=True)
                break
            done, _ = ray.wait([*in_flight, *starting], num_returns=1, timeout=WAITING_NOTE_S)
            if not done:
                if not ready:
                    log_event(
                        "waiting_for_workers", phase=phase, starting=len(starting),
                        seconds=round(time.monotonic() - waited_since), cluster=ray.available_resources(),
                    )  # fmt: skip
                continue
            for ref in done:
                if ref in starting:
                    handle = starting.pop(ref)
                    try:
                        ray.get(ref)
                        ready.append(handle)
                    except RayActorError as e:
                        lose(handle, actor_error(e))
                    continue
                item, handle = in_flight.pop(ref)
                per_actor[id(handle)] -= 1
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    error = actor_error(e)
                    result = {"ok": False, "error": error, "traceback": _ANSI.sub("", str(e))}
                    if handle in ready:
                        ready.remove(handle)
                        lose(handle, error)
                if not on_result(item, result, attempts[item]):
                    queue.append(item)
    finally:
        for handle in [*ready, *starting.values()]:
            ray.kill(handle, no_restart=True)
