"""Shard format, commit protocol and verify, on real runs of the local pipeline."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from datagen.errors import ConfigError
from datagen.images import decode_member
from datagen.resolve import load_run
from datagen.runner import execute
from datagen.shards import MEMBERS, verify

FAST = ["pipeline.image_size=96"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    config = load_run("remove", "local", out=str(out), n=50, shard_size=25, overrides=FAST)
    summary = execute(config, "generate", workers=0, progress=False)
    assert not summary.failed and summary.kept > 20
    return out


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(run_dir, dest)
    return dest


def test_layout_and_members(run_dir):
    assert (run_dir / "run.json").is_file()
    run = json.loads((run_dir / "run.json").read_text())
    assert (
        run["seed"] == 0 and "numpy" in run["versions"] and run["runs"]["remove"]["config"]["task"]["name"] == "remove"
    )
    names = sorted(p.name for p in (run_dir / "shards").iterdir())
    assert names == [f"remove-00000{i}.{ext}" for i in range(2) for ext in ("parquet", "stats.json", "tar")]
    texts = sorted(p.name for p in (run_dir / "texts").iterdir())
    assert texts == [f"remove-00000{i}.{ext}" for i in range(2) for ext in ("jsonl", "stats.json")]
    with tarfile.open(run_dir / "shards" / "remove-000000.tar") as tar:
        members = tar.getmembers()
    assert all(m.isfile() and m.mtime == 0 and m.uid == 0 for m in members)
    keys = []
    for m in members:
        key, _, field = m.name.partition(".")
        assert "." not in key and key.startswith("remove_000000_")
        if not keys or keys[-1] != key:
            keys.append(key)
    fields = [m.name.partition(".")[2] for m in members[:5]]
    assert fields == ["input.png", "output.png", "mask.png", "json", "txt"] and len(MEMBERS) == 5
    assert len(members) == 5 * len(keys) and len(set(keys)) == len(keys), "members of a key are contiguous"


def test_manifest_holds_every_candidate_with_scores(run_dir):
    table = pq.read_table(run_dir / "shards" / "remove-000000.parquet").to_pylist()
    stats = json.loads((run_dir / "shards" / "remove-000000.stats.json").read_text())
    assert len(table) == stats["candidates"]
    assert len({r["key"] for r in table}) == stats["samples"] == 25
    kept = [r for r in table if r["status"] == "kept"]
    assert len(kept) == stats["kept"] and all(r["selected"] for r in kept)
    assert len({r["key"] for r in kept}) == len(kept), "at most one kept candidate per sample"
    for row in table:
        assert row["status"] in ("kept", "rejected")
        assert (row["status"] == "kept") == (row["reason"] == "")
        if row["reason"] != "object_not_found":
            assert row["score_mask_area"] is not None and row["score_outside_l1"] is not None
        assert json.loads(row["models"])["inpaint"].startswith("opencv-")
    variants = {json.loads(r["params"]).get("mask_variant") for r in table}
    assert variants == {"exact", "dilated", "bbox"}


def test_webdataset_reads_every_sample_with_all_members(run_dir):
    import webdataset as wds

    urls = sorted(str(p) for p in (run_dir / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    kept = sum(json.loads(p.read_text())["kept"] for p in (run_dir / "shards").glob("*.stats.json"))
    assert len(samples) == kept > 0
    for sample in samples:
        assert {"input.png", "output.png", "mask.png", "json", "txt"} <= set(sample)
        meta = json.loads(sample["json"])
        assert meta["key"] == sample["__key__"]
        assert sample["txt"].decode() == meta["instruction"]
        before, after, mask = (decode_member(sample[k]) for k in ("input.png", "output.png", "mask.png"))
        assert before.shape == after.shape == (96, 96, 3) and mask.shape == (96, 96)
        assert (before[mask == 0] == after[mask == 0]).all(), "pixels outside the mask are the input's"
        assert meta["objects"][0] in meta["instruction"]


def test_verify_accepts_a_clean_run(run_dir):
    verdict = verify(run_dir)
    assert verdict.problems == [] and verdict.shards == 2 and verdict.uncommitted == []
    assert verdict.samples == sum(json.loads(p.read_text())["kept"] for p in (run_dir / "shards").glob("*.stats.json"))


def test_verify_catches_a_truncated_tar(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    tar = out / "shards" / "remove-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    problems = verify(out).problems
    assert any("remove-000001.tar" in p and "bytes" in p for p in problems)
    assert any("sha256" in p for p in problems)


def test_verify_catches_a_count_mismatch(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    stats_path = out / "shards" / "remove-000000.stats.json"
    stats = json.loads(stats_path.read_text())
    stats["kept"] += 1
    stats_path.write_text(json.dumps(stats))
    problems = verify(out).problems
    assert any("counts disagree" in p and f"stats kept {stats['kept']}" in p for p in problems)


def _rewrite_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, None if data is None else io.BytesIO(data))


def _restat(stats_path: Path, tar: Path) -> None:
    import hashlib

    stats = json.loads(stats_path.read_text())
    stats["tar"].update(bytes=tar.stat().st_size, sha256=hashlib.sha256(tar.read_bytes()).hexdigest())
    stats_path.write_text(json.dumps(stats))


@pytest.mark.parametrize("attack", ["absolute", "dotdot", "symlink", "split_key", "missing_member"])
def test_verify_refuses_unsafe_or_malformed_members(run_dir, tmp_path, attack):
    out = _copy(run_dir, tmp_path)
    tar_path = out / "shards" / "remove-000000.tar"
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    info = tarfile.TarInfo()
    if attack == "absolute":
        info.name, info.size = "/etc/remove_000000_00000.txt", 1
        members.append((info, b"x"))
    elif attack == "dotdot":
        info.name, info.size = "../remove_000000_00000.txt", 1
        members.append((info, b"x"))
    elif attack == "symlink":
        info.name, info.type, info.linkname = "remove_000000_00099.txt", tarfile.SYMTYPE, "/etc/passwd"
        members.append((info, None))
    elif attack == "split_key":
        members.append(members.pop(1))  # first sample's output moved to the end: not contiguous
    elif attack == "missing_member":
        members.pop(2)
    _rewrite_tar(tar_path, members)
    _restat(out / "shards" / "remove-000000.stats.json", tar_path)
    problems = verify(out).problems
    expected = {
        "absolute": "unsafe member name",
        "dotdot": "unsafe member name",
        "symlink": "not a regular file",
        "split_key": "not contiguous",
        "missing_member": "has members",
    }[attack]
    assert any(expected in p for p in problems), problems


def test_verify_ignores_uncommitted_leftovers(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    (out / "shards" / "remove-000001.stats.json").unlink()
    (out / "shards" / ".remove-000002.tar.123.tmp").write_bytes(b"partial")
    verdict = verify(out)
    assert verdict.problems == [] and verdict.shards == 1
    assert sorted(verdict.uncommitted) == [".remove-000002.tar.123.tmp", "remove-000001.parquet", "remove-000001.tar"]


def test_same_seed_same_bytes_other_seed_other_samples(run_dir, tmp_path):
    again = load_run("remove", "local", out=str(tmp_path / "again"), n=50, shard_size=25, overrides=FAST)
    execute(again, "generate", workers=0, progress=False)
    for name in ("remove-000000.tar", "remove-000000.parquet", "remove-000001.tar", "remove-000001.parquet"):
        assert (tmp_path / "again" / "shards" / name).read_bytes() == (run_dir / "shards" / name).read_bytes()
    other = load_run("remove", "local", out=str(tmp_path / "other"), n=50, shard_size=25, seed=1, overrides=FAST)
    execute(other, "generate", workers=0, progress=False)
    a = pq.read_table(run_dir / "shards" / "remove-000000.parquet").column("instruction").to_pylist()
    b = pq.read_table(tmp_path / "other" / "shards" / "remove-000000.parquet").column("instruction").to_pylist()
    assert a != b
    np.testing.assert_array_equal(
        pq.read_table(run_dir / "shards" / "remove-000000.parquet").column("candidate").to_numpy()[:3], [0, 1, 2]
    )


def test_render_shard_runs_without_ray(run_dir, tmp_path):
    from datagen.shards.run import start_run
    from datagen.worker import render_shard, write_shard

    config = load_run("remove", "local", out=str(tmp_path / "solo"), n=50, shard_size=25, overrides=FAST)
    start_run([config])
    assert write_shard(config, 1)["records"] == 25
    stats = render_shard(config, 1)
    reference = json.loads((run_dir / "shards" / "remove-000001.stats.json").read_text())
    assert stats["tar"]["sha256"] == reference["tar"]["sha256"] and stats["kept"] == reference["kept"]
    assert not (tmp_path / "solo" / "shards" / "remove-000000.tar").exists(), "only the shard asked for"
    assert render_shard(config, 1)["tar"] == stats["tar"], "a committed shard is returned, not redone"


def test_tar_framing_is_byte_identical_to_tarfiles(tmp_path):
    """The writer frames members itself (whole writes, no 16 KiB copies); the bytes must be what tarfile writes."""
    from datagen.shards import TAR_MTIME, TarShardWriter
    from datagen.storage import Folder

    rng = np.random.default_rng(0)
    members = {f"remove_000000_{i:05d}": {"input.png": rng.bytes(size), "json": b"{}", "txt": b"x" * 512}
               for i, size in enumerate((0, 1, 511, 512, 513, 70_000, 3_000_000))}  # fmt: skip
    writer = TarShardWriter(Folder(tmp_path), "ours.tar", "png", 95, 3)
    for key, fields in members.items():
        writer.add_members(key, fields)
    info = writer.commit()
    with tarfile.open(tmp_path / "reference.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, fields in members.items():
            for suffix, data in fields.items():
                member = tarfile.TarInfo(f"{key}.{suffix}")
                member.size, member.mtime, member.mode, member.uid, member.gid = len(data), TAR_MTIME, 0o644, 0, 0
                member.uname = member.gname = ""
                tar.addfile(member, io.BytesIO(data))
    ours = (tmp_path / "ours.tar").read_bytes()
    assert ours == (tmp_path / "reference.tar").read_bytes()
    assert info["bytes"] == len(ours) and info["sha256"] == __import__("hashlib").sha256(ours).hexdigest()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("chunk", [1, 100, 1 << 20])
def test_atomic_writer_hashes_and_writes_every_chunk_in_order(tmp_path, chunk):
    import hashlib

    from datagen.storage import Folder

    parts = [np.random.default_rng(n).bytes(n * 37 % 5000) for n in range(200)]
    writer = Folder(tmp_path).writer("file.bin")
    writer.CHUNK = chunk
    for part in parts:
        writer.write(part)
    assert not (tmp_path / "file.bin").exists()  # nothing under the final name before the commit
    sha = writer.commit()
    data = b"".join(parts)
    assert (tmp_path / "file.bin").read_bytes() == data and sha == hashlib.sha256(data).hexdigest()
    aborted = Folder(tmp_path).writer("gone.bin")
    aborted.CHUNK = chunk
    for part in parts:
        aborted.write(part)
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_atomic_writer_gathers_more_pieces_than_one_writev_takes(tmp_path):
    """A chunk of thousands of small pieces goes out in several `os.writev` calls, in order; a buffer the caller
    reuses after `write` returns is copied first."""
    import hashlib

    from datagen.storage import AtomicWriter, Folder

    rng = np.random.default_rng(0)
    parts = [rng.bytes(int(n)) for n in rng.integers(1, 4, size=3 * AtomicWriter.IOV_MAX + 7)]
    writer = Folder(tmp_path).writer("many.bin")
    scratch = bytearray(8)
    for part in parts:
        scratch[: len(part)] = part
        writer.write(memoryview(scratch)[: len(part)])
        scratch[:] = b"\xff" * 8
    sha = writer.commit()
    data = b"".join(parts)
    assert (tmp_path / "many.bin").read_bytes() == data and sha == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("name", "size"),
    [("remove_000000_00001.input.png", 60_000), ("a.json", 0), ("x" * 100, 5), ("é.txt", 3), ("k.bin", 8**11 - 1)],
)
def test_ustar_header_is_tarfiles(name, size):
    from datagen.shards import TAR_MTIME
    from datagen.shards.writer import ustar_header

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, TAR_MTIME, 0o644, 0, 0
    info.uname = info.gname = ""
    assert ustar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


# ------------------------------------------------------------------------------------------- the one reader


def test_run_folder_reads_only_committed_shards(two_task_run, tmp_path):
    """RunFolder: committed shards with their stats, leftovers ignored, rows by task and status, samples checked
    against the stats, run.json, failure records and tar URLs for other readers, all from one place."""
    from datagen.shards import RunFolder, tar_urls

    out = tmp_path / "run"
    shutil.copytree(two_task_run, out)
    shards = out / "shards"
    shutil.copy(shards / "remove-000000.tar", shards / "remove-000007.tar")  # a commit cut short: no marker
    (out / "failed").mkdir()
    (out / "failed" / "color-000003.json").write_text(
        json.dumps({"phase": "render", "attempts": 3, "error": "x\nboom"})
    )
    run = RunFolder(out)

    committed = run.committed()
    on_disk = sorted(p.name.removesuffix(".stats.json") for p in shards.glob("*.stats.json"))
    assert [s.name for s in committed] == on_disk and {s.task for s in committed} == {"remove", "color"}
    for shard in committed:
        stats = json.loads((shards / f"{shard.name}.stats.json").read_text())
        assert shard.stats == stats and shard.kept == stats["kept"] and shard.committed is not None
        samples = list(run.samples(shard))
        assert len(samples) == stats["kept"]
        assert all(s.meta["task"] == shard.task and s.instruction == s.meta["instruction"] for s in samples)
    assert run.uncommitted() == ["remove-000007.tar"]
    assert run.tar_urls() == tar_urls([str(out)]) == [str(shards / f"{name}.tar") for name in on_disk]
    assert [s.name for s in run.committed("color")] == [n for n in on_disk if n.startswith("color-")]
    assert len(run.committed(phase="write")) == len(list((out / "texts").glob("*.stats.json")))

    kept_color = list(run.rows("color", "kept"))
    manifests = [pq.read_table(shards / f"{n}.parquet").to_pylist() for n in on_disk if n.startswith("color-")]
    assert [r["key"] for r in kept_color] == [r["key"] for m in manifests for r in m if r["status"] == "kept"]
    assert all(r["shard_name"].startswith("color-") for r in kept_color)
    assert set(run.configs()) == {"remove", "color"}
    assert run.failures() == ["color-000003: failed render after 3 attempt(s): boom"]

    empty = RunFolder(tmp_path / "nothing")
    assert list(empty.rows()) == [] and empty.committed(required=False) == []
    with pytest.raises(ConfigError, match="no committed shards"):
        empty.committed()
    with pytest.raises(ConfigError, match="is not a datagen run folder"):
        empty.record()


def test_only_the_shards_package_knows_the_commit_marker():
    """One module defines what a committed shard is: no other module spells the marker's name."""
    package = Path(__file__).resolve().parents[1] / "datagen"
    spelled = [
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if path.parent.name != "shards" and '.stats.json"' in path.read_text()
    ]
    assert spelled == []
