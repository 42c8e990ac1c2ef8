"""The run's own files: OUT/run.json (what the run is), resume planning (which shards are still to do) and the
failure records of OUT/failed/.

run.json is written once, when a run starts; a rerun with the same OUT checks that it plans the same run (the
same tasks and configuration, `out` aside: a run folder may be moved) and resumes it, or refuses to mix two runs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from datagen import __version__
from datagen.config import RunConfig
from datagen.environment import library_versions, version_changes
from datagen.errors import ConfigError
from datagen.shards.layout import STATS, now, phase_folder, shard_name
from datagen.shards.reader import RunFolder
from datagen.storage import Folder


def versions() -> dict[str, str]:
    """What run.json records of the environment: Python, datagen, the libraries that decide the bytes
    (environment.BYTE_LIBRARIES, which a resume checks) and the ones that read and write the shards."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0], "datagen": __version__}
    for name in ("pyarrow", "ray", "webdataset"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return {**found, **library_versions()}


def recorded_versions(out: str) -> dict[str, str]:
    """The versions OUT/run.json recorded when the run started ({} for a run folder without one)."""
    folder = Folder(out)
    return RunFolder(folder).record().get("versions", {}) if folder.exists("run.json") else {}


def check_versions(out: Folder, allow_change: bool) -> None:
    """A resume under other versions of the libraries that decide the bytes stops and names them, unless the user
    allows it: then run.json notes the change, and every shard committed from now on says so in its stats."""
    record = RunFolder(out).record()
    changes = version_changes(record.get("versions", {}), library_versions())
    if not changes:
        return
    said = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changes.items())
    if not allow_change:
        raise ConfigError(
            f"{out} was started under other versions of the libraries that decide its bytes ({said}); resuming "
            f"would mix shards made by both. `make install` restores the locked versions (requirements/*.lock), or "
            f"pass --allow-version-change to go on (the shards committed from now on say so in their stats)."
        )
    record.setdefault("version_changes", []).append({"at": now(), "changes": changes})
    out.write_atomic("run.json", json.dumps(record, indent=1, sort_keys=True).encode())


def _fingerprint_view(data: dict) -> dict:
    view = json.loads(json.dumps(data))
    view["run"].pop("out", None)  # a run directory may be moved or mounted elsewhere
    return view


def start_run(configs: list[RunConfig], allow_version_change: bool = False, command: str | None = None) -> None:
    """Write OUT/run.json for these tasks (one, or a mixture) and the command that started the run, or check that an
    existing one plans the same run under the same versions of the libraries that decide its bytes (see
    check_versions)."""
    out = Folder(configs[0].run.out)
    out.makedirs()
    resolved = {c.task.name: c.model_dump(mode="json", by_alias=True) for c in configs}
    if out.exists("run.json"):
        previous = RunFolder(out).configs()
        if set(previous) != set(resolved):
            raise ConfigError(
                f"{out} holds a run of task(s) {', '.join(sorted(previous))}, not {', '.join(sorted(resolved))}; "
                f"resuming would mix two runs. Use another --out, or the original tasks."
            )
        diffs = []
        for task, config in resolved.items():
            diffs += _diff(_fingerprint_view(_current(previous[task])), _fingerprint_view(config), f"{task}.")
        if diffs:
            raise ConfigError(
                f"{out} holds a run with a different configuration ({'; '.join(diffs[:5])}); resuming would mix "
                f"two runs. Use another --out, or the original settings."
            )
        check_versions(out, allow_version_change)
        return
    record = {
        "runs": {c.task.name: {"config": resolved[c.task.name], "fingerprint": c.fingerprint()} for c in configs},
        "seed": configs[0].run.seed,
        "versions": versions(),
        "created": now(),
        "command": command,
    }
    try:
        out.write_atomic("run.json", json.dumps(record, indent=1, sort_keys=True).encode())
    except (OSError, ValueError) as e:  # a missing bucket, no permission, a full disk
        raise ConfigError(f"{out}: cannot write run.json there ({type(e).__name__}: {e})") from None


def _current(data: dict) -> dict:
    """A stored configuration as this version writes it: fields added since it was stored take their defaults (so
    a run started before they existed resumes); one the schema no longer reads is compared as it was."""
    try:
        return RunConfig.model_validate(data).model_dump(mode="json", by_alias=True)
    except Exception:
        return data


def load_runs(out: str) -> list[RunConfig]:
    """The configurations of the run in OUT (resume without --task)."""
    folder = Folder(out)
    path = folder.url("run.json")
    if not folder.exists("run.json"):
        raise ConfigError(f"--task is required: {path} does not exist, so there is no run to resume")
    configs = []
    for task, data in sorted(RunFolder(folder).configs().items()):
        try:
            config = RunConfig.model_validate(data)
        except Exception as e:
            raise ConfigError(f"{path}: the run of task {task!r} is not a datagen configuration ({e})") from None
        config.run.out = out
        configs.append(config)
    return configs


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def pending_shards(config: RunConfig, phase: str) -> list[int]:
    """Shards whose last phase is not committed yet (resume planning). One streaming pass over the folder's names
    into a bitmap of the run's shards: a million committed shards plan in about a second in a few MB."""
    run, task = config.run, config.task
    done = bytearray(run.num_shards)
    prefix = f"{task.name}-"
    for name in phase_folder(run.out, phase).iter_names(prefix):
        number = name[len(prefix) : -len(STATS)]
        if name.endswith(STATS) and number.isdigit() and int(number) < run.num_shards:
            done[int(number)] = 1
    return [i for i in range(run.num_shards) if not done[i]]


def record_failure(
    out: str | Folder, task: str, phase: str, shard: int, result: dict[str, Any], attempts: int
) -> None:
    """OUT/failed/{task}-{shard:06d}.json: a shard that failed after its retries, with its error and traceback (a
    run's, or a curated set's: task `curate`)."""
    body = {
        "phase": phase,
        "shard": shard,
        "attempts": attempts,
        "error": result.get("error"),
        "traceback": result.get("traceback"),
    }
    failed = (out if isinstance(out, Folder) else Folder(out)).sub("failed")
    failed.write_atomic(f"{shard_name(task, shard)}.json", json.dumps(body, indent=1).encode())


def clear_failure(out: str | Folder, task: str, shard: int) -> None:
    (out if isinstance(out, Folder) else Folder(out)).sub("failed").remove(f"{shard_name(task, shard)}.json")
