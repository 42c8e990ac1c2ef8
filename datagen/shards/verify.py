"""`datagen verify OUT`: every committed shard checked against its stats marker, member by member.

A committed shard passes when its tar and parquet have the sizes and sha256 its marker records, every tar member is
a regular file with a safe name of the form key.field, a sample's members are contiguous and complete, its keys
belong to the shard, and the tar, the marker and the manifest's kept rows count the same samples. A shard made with
pipeline.keep_rejected has its rejected tar checked the same way, its candidates against the manifest's rendered rows
that were not kept. A shard of sessions (`--turns`) has every kept session whole (or, made with --keep-prefix, a
prefix of its turns), and its turns chain: turn k's input bytes are turn k-1's output bytes. Uncommitted leftovers
are listed, not errors: readers ignore them and a resumed run removes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from datagen.scores import SCORE_PREFIX
from datagen.shards.layout import (
    MEMBER_RE,
    REJECTED_FIELD_RE,
    committed_names,
    read_parquet,
    safe_member_name,
)
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
    tar_name, parquet_name, rejected_name = f"{name}.tar", f"{name}.parquet", f"{name}.rejected.tar"
    files = {tar_name: stats.get("tar", {}), parquet_name: stats.get("parquet", {})}
    if "rejected_tar" in stats:  # pipeline.keep_rejected
        files[rejected_name] = stats.get("rejected_tar") or {}
    present = set(folder.names())
    for member, entry in files.items():
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
    sessions = stats.get("sessions")
    contents: dict[str, dict[str, bytes]] | None = {} if sessions else None
    fields = _scan_tar(folder, tar_name, problems, contents)
    if fields is None:
        return 0, problems
    own = re.compile(rf"^{re.escape(stats['task'])}_(t\d+_)?{stats['shard']:06d}_\d{{5}}$")
    for key, got in fields.items():
        if got != image_members:
            problems.append(f"{tar_name}: {key} has members {sorted(got)}, expected {sorted(image_members)}")
        if not own.fullmatch(key):
            problems.append(f"{tar_name}: key {key} does not belong to shard {name}")
    if sessions:
        problems += _verify_sessions(tar_name, sessions, contents)
    try:
        rendered = ["candidate", f"{SCORE_PREFIX}mask_area"] if rejected_name in files else []
        table = read_parquet(folder, parquet_name, ["key", "status", *rendered])
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
    if rejected_name in files:
        problems += _verify_rejected(folder, rejected_name, stats, table)
    return len(fields), problems


def _scan_tar(
    folder: Folder, tar_name: str, problems: list[str], contents: dict[str, dict[str, bytes]] | None = None
) -> dict[str, set[str]] | None:
    """A tar's keys in order -> their fields, every member checked (regular file, safe key.field name, contiguous
    keys, whole); None, with the problem, if the tar cannot be read. With `contents`, each key's json member and the
    sha256 of its images go there (key -> field -> bytes)."""
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
                if contents is not None:
                    kept = data if suffix == "json" else hashlib.sha256(data).digest()
                    contents.setdefault(key, {})[suffix.split(".")[0]] = kept
    except (tarfile.TarError, OSError, EOFError) as e:
        problems.append(f"{tar_name}: unreadable tar ({e})")
        return None
    return fields


def _verify_sessions(tar_name: str, counts: dict, contents: dict[str, dict[str, bytes]]) -> list[str]:
    """Every kept session whole (turns 1..K, or with keep_prefix 1..k), its turns chained by key and by bytes: turn
    k's input is turn k-1's output."""
    problems: list[str] = []
    by_session: dict[str, dict[int, tuple[str, dict]]] = {}
    for key, members in contents.items():
        try:
            meta = json.loads(members["json"])
            by_session.setdefault(str(meta["session"]), {})[int(meta["turn"])] = (key, meta)
        except (KeyError, ValueError, TypeError) as e:
            problems.append(f"{tar_name}: {key}.json names no session and turn ({e})")
    turns = int(counts.get("turns", 0))
    for session, kept in sorted(by_session.items()):
        have = sorted(kept)
        whole = have == list(range(1, turns + 1))
        prefix = bool(counts.get("keep_prefix")) and have == list(range(1, len(have) + 1))
        if not session or not (whole or prefix):
            problems.append(f"{tar_name}: session {session!r} holds turns {have}, expected 1..{turns}")
            continue
        for turn in have[1:]:
            key, meta = kept[turn]
            before = kept[turn - 1][0]
            if meta.get("previous") != before:
                problems.append(f"{tar_name}: {key} follows {meta.get('previous')!r}, not turn {turn - 1} ({before})")
            elif contents[key].get("input") != contents[before].get("output"):
                problems.append(f"{tar_name}: {key}'s input is not {before}'s output (the chain is broken)")
    if len(by_session) != counts.get("kept"):
        problems.append(f"{tar_name}: {len(by_session)} sessions, stats say {counts.get('kept')} kept")
    return problems


def _verify_rejected(folder: Folder, tar_name: str, stats: dict, table: pa.Table) -> list[str]:
    """The rejected tar (pipeline.keep_rejected): each candidate complete (input, output, mask, json), its candidates
    exactly the manifest's rendered rows that were not kept (rendered: they carry the pixel scores every rendered
    candidate gets), as many as its stats say."""
    problems: list[str] = []
    fields = _scan_tar(folder, tar_name, problems)
    if fields is None:
        return problems
    fmt = stats["image_format"]
    want = {f"input.{fmt}", f"output.{fmt}", "mask.png", "json"}
    stored: set[tuple[str, int]] = set()
    for key, got in fields.items():
        if not key.startswith(f"{stats['task']}_{stats['shard']:06d}_"):
            problems.append(f"{tar_name}: key {key} does not belong to shard {stats['task']}-{stats['shard']:06d}")
        candidates: dict[int, set[str]] = {}
        for suffix in got:
            match = REJECTED_FIELD_RE.fullmatch(suffix)
            if not match:
                problems.append(f"{tar_name}: member {key}.{suffix} is not key.c<candidate>.field")
                continue
            candidates.setdefault(int(match["candidate"]), set()).add(match["member"])
        for number, members in candidates.items():
            if members != want:
                problems.append(
                    f"{tar_name}: {key} candidate {number} has members {sorted(members)}, expected {sorted(want)}"
                )
            stored.add((key, number))
    rows = table.to_pylist()
    rendered = {
        (r["key"], r["candidate"]) for r in rows if r["status"] != "kept" and r[f"{SCORE_PREFIX}mask_area"] is not None
    }
    kept = {(r["key"], r["candidate"]) for r in rows if r["status"] == "kept"}
    if stored & kept:
        problems.append(f"{tar_name}: holds kept candidates: {sorted(stored & kept)[:3]}")
    if stored != rendered:
        problems.append(
            f"{tar_name}: its candidates differ from the manifest's rendered rows that were not kept "
            f"({len(stored)} stored, {len(rendered)} in the manifest)"
        )
    digest = stats.get("rejected_tar") or {}
    counts = (len(stored), len(fields))
    if counts != (digest.get("candidates"), digest.get("samples")):
        problems.append(
            f"{tar_name}: {counts[0]} candidates of {counts[1]} samples, stats say {digest.get('candidates')} of "
            f"{digest.get('samples')}"
        )
    return problems


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
