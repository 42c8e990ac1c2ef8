"""`datagen verify OUT`: every committed shard checked against its stats marker, member by member.

A committed shard passes when its tar and parquet have the sizes and sha256 its marker records, every tar member is
a regular file with a safe name of the form key.field, a sample's members are contiguous and complete, its keys
belong to the shard, and the tar, the marker and the manifest's kept rows count the same samples. Uncommitted
leftovers are listed, not errors: readers ignore them and a resumed run removes them.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from datagen.shards.layout import MEMBER_RE, committed_names, read_parquet, safe_member_name
from datagen.storage import Folder


@dataclass
class Verdict:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)


def verify_shard(folder: Folder, stats_name: str) -> tuple[int, list[str]]:
    """Check one committed shard; returns (kept samples, problems)."""
    problems: list[str] = []
    name = stats_name[: -len(".stats.json")]
    try:
        stats = json.loads(folder.read_text(stats_name))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        return 0, [f"{stats_name}: unreadable stats ({e})"]
    tar_name, parquet_name = f"{name}.tar", f"{name}.parquet"
    present = set(folder.names())
    for member, entry in ((tar_name, stats.get("tar", {})), (parquet_name, stats.get("parquet", {}))):
        if member not in present:
            problems.append(f"{member}: missing")
            continue
        size = folder.size(member)
        if size != entry.get("bytes"):
            problems.append(f"{member}: {size} bytes, stats say {entry.get('bytes')}")
        if folder.sha256(member) != entry.get("sha256"):
            problems.append(f"{member}: sha256 differs from the stats")
    if problems:
        return 0, problems

    image_members = {f"input.{stats['image_format']}", f"output.{stats['image_format']}", "mask.png", "json", "txt"}
    keys: list[str] = []
    fields: dict[str, set[str]] = {}
    try:
        with folder.open(tar_name) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    problems.append(f"{tar_name}: {member.name!r} is not a regular file")
                    continue
                if not safe_member_name(member.name):
                    problems.append(f"{tar_name}: unsafe member name {member.name!r}")
                    continue
                match = MEMBER_RE.fullmatch(member.name)
                if not match:
                    problems.append(f"{tar_name}: member {member.name!r} is not key.field")
                    continue
                key, suffix = match["key"], match["field"]
                if not keys or keys[-1] != key:
                    if key in fields:
                        problems.append(f"{tar_name}: members of {key} are not contiguous")
                    keys.append(key)
                    fields[key] = set()
                fields[key].add(suffix)
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    problems.append(f"{tar_name}: {member.name} truncated")
    except (tarfile.TarError, OSError, EOFError) as e:
        problems.append(f"{tar_name}: unreadable tar ({e})")
        return 0, problems
    for key, got in fields.items():
        if got != image_members:
            problems.append(f"{tar_name}: {key} has members {sorted(got)}, expected {sorted(image_members)}")
        if not key.startswith(f"{stats['task']}_{stats['shard']:06d}_"):
            problems.append(f"{tar_name}: key {key} does not belong to shard {name}")
    try:
        table = read_parquet(folder, parquet_name, ["key", "status"])
    except (OSError, pa.ArrowException) as e:
        problems.append(f"{parquet_name}: unreadable parquet ({e})")
        return len(fields), problems
    kept_rows = [k for k, s in zip(table["key"].to_pylist(), table["status"].to_pylist(), strict=True) if s == "kept"]
    counts = {
        "tar samples": len(fields),
        "stats kept": stats.get("kept"),
        "parquet kept rows": len(kept_rows),
    }
    if len(set(counts.values())) != 1:
        problems.append(f"{name}: counts disagree: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if table.num_rows != stats.get("candidates"):
        problems.append(f"{parquet_name}: {table.num_rows} rows, stats say {stats.get('candidates')} candidates")
    if sorted(kept_rows) != sorted(fields):
        problems.append(f"{name}: kept keys in the parquet differ from the keys in the tar")
    return len(fields), problems


def verify(out: str | Path) -> Verdict:
    """Check every committed shard under OUT/shards; list uncommitted leftovers (ignored, not errors)."""
    folder = Folder(out).sub("shards")
    verdict = Verdict()
    stems, verdict.uncommitted = committed_names(folder)
    if not stems and not verdict.uncommitted:
        verdict.problems.append(f"{folder}: no shards (nothing was rendered here)")
        return verdict
    for stem in stems:
        samples, problems = verify_shard(folder, f"{stem}.stats.json")
        verdict.shards += 1
        verdict.samples += samples
        verdict.problems.extend(problems)
    return verdict


def flags(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check every committed shard: tar readable and safe, members of a key contiguous and complete, counts agree "
        "across tar, parquet and stats, checksums match. Exits 1 on any problem."
    )
    parser.add_argument("out", help="run directory")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run(args: argparse.Namespace) -> int:
    verdict = verify(args.out)
    if args.json:
        print(json.dumps(verdict.__dict__, indent=1))
    else:
        for problem in verdict.problems:
            print(f"PROBLEM {problem}")
        if verdict.uncommitted:
            print(
                f"ignored {len(verdict.uncommitted)} uncommitted file(s) (no stats marker): "
                + ", ".join(verdict.uncommitted[:5])
            )
        state = "OK" if not verdict.problems else f"{len(verdict.problems)} problem(s)"
        print(f"{args.out}: {verdict.shards} committed shards, {verdict.samples} samples: {state}")
    return 1 if verdict.problems else 0
