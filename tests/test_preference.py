"""Failures are data: with pipeline.keep_rejected every rendered candidate that was not kept lands in its shard's
rejected tar (committed and verified like the kept one); `datagen export --format preference` pairs each kept sample
with those of its candidates that edited the same input; `--instruction rewritten` exports the judge's re-captioned
instruction; the report shows the rejected candidates' images and the judge's words."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FAST, run_inline
from PIL import Image

from datagen.errors import ConfigError
from datagen.export import MARKER, add_parser, export, run
from datagen.report import build_report
from datagen.scores import SCORES
from datagen.shards import RunFolder, verify

datasets = pytest.importorskip("datasets")

KEEP = ["--set", "pipeline.keep_rejected=true"]


def generate(out: Path, *extra: str) -> Path:
    """remove (three mask variants per sample, outranked ones among them) + add (each candidate its own input)."""
    run_inline("generate", "--task", "remove,add", "--pipeline", "local", "--n", "24", "--shard-size", "6",
            "--out", str(out), "--workers", "0", "--no-progress", *FAST, *extra)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("keep") / "run", *KEEP)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("plain") / "run")


def tar_members(path: Path) -> dict[str, dict[str, bytes]]:
    """A tar read with tarfile alone: key -> field -> bytes, in order."""
    found: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, field = member.name.split(".", 1)
            found.setdefault(key, {})[field] = tar.extractfile(member).read()
    return found


def rejected_candidates(path: Path) -> dict[tuple[str, int], dict[str, bytes]]:
    """A rejected tar as (key, candidate) -> member (input.png, output.png, mask.png, json) -> bytes."""
    found: dict[tuple[str, int], dict[str, bytes]] = {}
    for key, fields in tar_members(path).items():
        for field, data in fields.items():
            number, member = field.split(".", 1)
            assert number.startswith("c"), field
            found.setdefault((key, int(number[1:])), {})[member] = data
    return found


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def expected_pairs(out: Path) -> tuple[dict[tuple[str, int], tuple[dict, dict]], int, int]:
    """From the tars alone: (key, rejected candidate) -> (kept members, rejected members) for every candidate that
    edited its kept sibling's input; and how many were unpaired for another input, and for having no kept sibling."""
    pairs, differs, lonely = {}, 0, 0
    for stats in sorted((out / "shards").glob("*.stats.json")):
        name = stats.name.removesuffix(".stats.json")
        kept = tar_members(out / "shards" / f"{name}.tar")
        for (key, number), members in rejected_candidates(out / "shards" / f"{name}.rejected.tar").items():
            if key not in kept:
                lonely += 1
            elif kept[key]["input.png"] != members["input.png"]:
                differs += 1
            else:
                pairs[(key, number)] = (kept[key], members)
    return pairs, differs, lonely


# --------------------------------------------------------------------------------------------- the rejected tar


def test_the_rejected_tar_holds_every_rendered_candidate_not_kept(kept_run):
    names = sorted(p.name for p in (kept_run / "shards").iterdir())
    assert names == [f"{task}-00000{i}.{ext}" for task in ("add", "remove") for i in range(2)
                     for ext in ("parquet", "rejected.tar", "stats.json", "tar")]  # fmt: skip
    outranked = 0
    for stats_path in sorted((kept_run / "shards").glob("*.stats.json")):
        name = stats_path.name.removesuffix(".stats.json")
        stats = json.loads(stats_path.read_text())
        path = kept_run / "shards" / f"{name}.rejected.tar"
        data = path.read_bytes()
        stored = rejected_candidates(path)
        assert stats["rejected_tar"] == {
            "name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "samples": len({key for key, _ in stored}), "candidates": len(stored),
        }  # fmt: skip
        rows = pq.read_table(kept_run / "shards" / f"{name}.parquet").to_pylist()
        not_kept = [r for r in rows if r["status"] != "kept" and r["score_change"] is not None]  # rendered, not kept
        rendered = {(r["key"], r["candidate"]): r for r in not_kept}
        assert set(stored) == set(rendered) and stored
        kept = tar_members(kept_run / "shards" / f"{name}.tar")
        for (key, number), members in stored.items():
            assert set(members) == {"input.png", "output.png", "mask.png", "json"}
            meta, row = json.loads(members["json"]), rendered[(key, number)]
            assert (meta["key"], meta["candidate"], meta["status"], meta["reason"]) == (key, number, "rejected",
                                                                                          row["reason"])  # fmt: skip
            assert meta["scores"] == {n: row[f"score_{n}"] for n in SCORES}
            assert json.loads(meta["params"]) == json.loads(row["params"])
            assert pixels(members["output.png"]).shape[:2] == pixels(members["mask.png"]).shape == (96, 96)
            outranked += row["reason"] == "outranked"
            if name.startswith("remove") and key in kept:  # remove's candidates share the sample's input
                assert members["input.png"] == kept[key]["input.png"]
                assert members["output.png"] != kept[key]["output.png"]
    assert outranked > 0
    assert verify(kept_run).problems == []
    assert not [url for url in RunFolder(kept_run).tar_urls() if "rejected" in url]  # WebDataset readers: kept only


def test_keeping_rejected_changes_nothing_else(kept_run, plain_run):
    """The kept tar and the manifest are byte-identical to those of the same run without keep_rejected."""
    for path in sorted((plain_run / "shards").iterdir()):
        if path.suffix in (".tar", ".parquet"):
            assert (kept_run / "shards" / path.name).read_bytes() == path.read_bytes(), path.name
    assert not list((plain_run / "shards").glob("*.rejected.tar"))


def test_an_uncommitted_rejected_tar_is_redone_byte_for_byte(kept_run, tmp_path):
    """A shard without its marker is redone on resume, its rejected tar with it: the same bytes again."""
    out = tmp_path / "run"
    shutil.copytree(kept_run, out, ignore=shutil.ignore_patterns("report"))
    shards = out / "shards"
    original = (shards / "remove-000001.rejected.tar").read_bytes()
    (shards / "remove-000001.stats.json").unlink()
    (shards / "remove-000001.rejected.tar").write_bytes(b"half-written")
    assert verify(out).uncommitted == ["remove-000001.parquet", "remove-000001.rejected.tar", "remove-000001.tar"]
    run_inline("generate", "--out", str(out), "--workers", "0", "--no-progress")
    assert (shards / "remove-000001.rejected.tar").read_bytes() == original
    assert verify(out).problems == [] and verify(out).uncommitted == []


def test_verify_catches_a_damaged_rejected_tar(kept_run, tmp_path):
    def copy(name: str) -> Path:
        out = tmp_path / name
        shutil.copytree(kept_run, out, ignore=shutil.ignore_patterns("report"))
        return out

    flipped = copy("flipped")
    path = flipped / "shards" / "remove-000001.rejected.tar"
    data = bytearray(path.read_bytes())
    data[700] ^= 0xFF  # inside the first image: the tar still parses, its checksum does not match
    path.write_bytes(bytes(data))
    assert verify(flipped).problems == ["remove-000001.rejected.tar: sha256 differs from the stats"]

    missing = copy("missing")
    (missing / "shards" / "add-000000.rejected.tar").unlink()
    assert verify(missing).problems == ["add-000000.rejected.tar: missing"]

    short = copy("short")  # a candidate dropped, the stats made to agree: only the manifest can tell
    path = short / "shards" / "remove-000000.rejected.tar"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, content in members[:-4]:
            tar.addfile(member, io.BytesIO(content))
    stats_path = short / "shards" / "remove-000000.stats.json"
    stats = json.loads(stats_path.read_text())
    data = path.read_bytes()
    stats["rejected_tar"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    stats_path.write_text(json.dumps(stats))
    problems = verify(short).problems
    assert any("differ from the manifest's rendered rows that were not kept" in p for p in problems), problems
    assert any(f"{stats['rejected_tar']['candidates'] - 1} candidates" in p for p in problems), problems


def test_the_reader_streams_rejected_candidates(kept_run, two_task_run):
    folder = RunFolder(kept_run)
    shard = folder.committed("remove")[0]
    assert shard.keeps_rejected
    streamed = {(c.key, c.candidate): c for c in folder.rejected(shard)}
    stored = rejected_candidates(kept_run / "shards" / "remove-000000.rejected.tar")
    assert set(streamed) == set(stored)
    for number, candidate in streamed.items():
        assert {role: data for role, (_, data) in candidate.images.items()} == {
            role: stored[number][f"{role}.png"] for role in ("input", "output", "mask")}  # fmt: skip
        assert candidate.meta == json.loads(stored[number]["json"])

    plain = RunFolder(two_task_run)
    shard = plain.committed("remove")[0]
    assert not shard.keeps_rejected
    with pytest.raises(ConfigError, match="without pipeline.keep_rejected.*--set pipeline.keep_rejected=true"):
        next(plain.rejected(shard))


def test_show_says_where_a_rejected_candidate_is(kept_run, capsys):
    from datagen.shards import show

    show.run(argparse.Namespace(out=str(kept_run), n=100, task="remove", status="rejected", json=True))
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    tars = (kept_run / "shards").glob("remove-*.rejected.tar")
    rendered = {key for path in tars for key, _ in rejected_candidates(path)}
    assert shown and {s["key"] for s in shown if s["tar"].endswith(".rejected.tar")} == rendered
    assert all(s["tar"] == "not stored (not kept)" for s in shown if s["key"] not in rendered)


# ------------------------------------------------------------------------------------------ preference export


def test_preference_export_loads_in_datasets_with_the_right_pairs(kept_run, tmp_path):
    dest = tmp_path / "pairs"
    counts = export(str(kept_run), str(dest), "preference", progress=False)
    pairs, differs, lonely = expected_pairs(kept_run)
    assert pairs and differs > 0  # add: every candidate edits an input of its own, so none pairs
    assert counts["samples"] == len(pairs) and counts["tasks"] == {"add": 0, "remove": len(pairs)}
    assert counts["unpaired"] == {"input_differs": differs, "not_kept": lonely}
    assert json.loads((dest / MARKER).read_text())["unpaired"] == counts["unpaired"]
    files = sorted((dest / "data" / "train").iterdir())
    assert [f.name for f in files] == ["remove-000000.parquet", "remove-000001.parquet"]  # no empty file for add

    ds = datasets.load_dataset("parquet", data_dir=str(dest), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["input_image", "edit_prompt", "chosen_image", "rejected_image", "chosen_scores",
                               "rejected_scores", "task", "key", "rejected_candidate", "rejected_reason"]  # fmt: skip
    assert all(isinstance(ds.features[c], datasets.Image) for c in ("input_image", "chosen_image", "rejected_image"))
    reasons = {(r["key"], r["candidate"]): r["reason"] for path in (kept_run / "shards").glob("remove-*.parquet")
               for r in pq.read_table(path).to_pylist()}  # fmt: skip
    seen = []
    for row in ds:
        number = (row["key"], row["rejected_candidate"])
        seen.append(number)
        kept, rejected = pairs[number]
        meta, rejected_meta = json.loads(kept["json"]), json.loads(rejected["json"])
        assert row["edit_prompt"] == kept["txt"].decode() == meta["instruction"]
        assert row["task"] == "remove" and row["rejected_reason"] == reasons[number] != ""
        assert np.array_equal(np.asarray(row["input_image"]), pixels(kept["input.png"]))
        assert np.array_equal(np.asarray(row["chosen_image"]), pixels(kept["output.png"]))
        assert np.array_equal(np.asarray(row["rejected_image"]), pixels(rejected["output.png"]))
        assert row["chosen_scores"] == meta["scores"] and row["rejected_scores"] == rejected_meta["scores"]
        assert set(row["chosen_scores"]) == set(SCORES) and row["chosen_scores"]["judge_overall"] is None
    assert sorted(seen) == sorted(pairs)
    assert "outranked" in set(ds["rejected_reason"])
    folder = datasets.load_dataset(str(dest), cache_dir=str(tmp_path / "cache"))  # the folder alone: one split
    assert {split: d.num_rows for split, d in folder.items()} == {"train": len(pairs)}


def test_preference_needs_a_run_that_kept_rejected_candidates(two_task_run, tmp_path):
    dest = tmp_path / "pairs"
    with pytest.raises(ConfigError, match=r"4 of 4 committed shards .* without pipeline.keep_rejected.*"
                                          r"--set pipeline.keep_rejected=true"):  # fmt: skip
        export(str(two_task_run), str(dest), "preference", progress=False)
    assert not dest.exists()  # refused before anything was written


def test_a_damaged_rejected_tar_is_never_exported(kept_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(kept_run, broken, ignore=shutil.ignore_patterns("report"))
    path = broken / "shards" / "remove-000001.rejected.tar"
    data = bytearray(path.read_bytes())
    data[700] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="remove-000001.rejected.tar: sha256 differs"):
        export(str(broken), str(tmp_path / "pairs"), "preference", progress=False)
    assert not (tmp_path / "pairs" / MARKER).exists()
    assert not (tmp_path / "pairs" / "data" / "train" / "remove-000001.parquet").exists()


# ------------------------------------------------------------------------------------------ --instruction


def test_rewritten_falls_back_to_the_original_without_a_judge(kept_run, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    dest = tmp_path / "hf"
    args = ["export", str(kept_run), str(dest), "--format", "hf-parquet", "--no-progress", "--instruction"]
    assert run(parser.parse_args([*args, "rewritten"])) == 0
    marker = json.loads((dest / MARKER).read_text())
    assert marker["instruction"] == "rewritten" and marker["instruction_fell_back"] == marker["samples"] > 0
    assert f"{marker['samples']} rows without a rewritten instruction kept the original" in capsys.readouterr().out
    rows = pq.read_table(dest / "data" / "train").to_pylist()
    assert all(r["edit_prompt"] == json.loads(r["json"])["instruction"] for r in rows)
    with pytest.raises(SystemExit):
        parser.parse_args([*args, "judge"])


@pytest.fixture
def judged_run(judged_tiny_run) -> Path:
    """tiny: its judge scores every candidate, reasons, and rewrites the instruction; rendered candidates kept."""
    return judged_tiny_run


def test_rewritten_instructions_on_a_judged_run(judged_run, tmp_path):
    assert verify(judged_run).problems == []
    dest = tmp_path / "hf"
    counts = export(str(judged_run), str(dest), "hf-parquet", progress=False, instruction="rewritten")
    rows = pq.read_table(dest / "data" / "train").to_pylist()
    manifest = pq.read_table(judged_run / "shards" / "remove-000000.parquet").to_pylist()
    kept = sum(r["status"] == "kept" for r in manifest)
    assert kept > 0 and counts["instruction_fell_back"] == 0 and len(rows) == counts["samples"] == kept
    for row in rows:
        meta = json.loads(row["json"])
        assert row["edit_prompt"] == meta["instruction_rewritten"] != ""
    original = export(str(judged_run), str(tmp_path / "orig"), "hf-parquet", progress=False)
    assert original["instruction"] == "original" and original["instruction_fell_back"] == 0
    assert [r["edit_prompt"] for r in pq.read_table(tmp_path / "orig" / "data" / "train").to_pylist()] == [
        json.loads(r["json"])["instruction"] for r in rows]  # fmt: skip

    pairs = tmp_path / "pairs"
    counts = export(str(judged_run), str(pairs), "preference", progress=False, instruction="rewritten")
    ds = datasets.load_dataset("parquet", data_dir=str(pairs), split="train", cache_dir=str(tmp_path / "cache"))
    rewritten = {r["key"]: json.loads(r["json"])["instruction_rewritten"] for r in rows}
    # every kept sample kept one of three mask variants, and the two others (rendered, stored) pair with it
    assert ds.num_rows == counts["samples"] == 2 * kept
    for row in ds:
        assert row["edit_prompt"] == rewritten[row["key"]]
        assert all(0 <= row[side][f"judge_{n}"] <= 10 for side in ("chosen_scores", "rejected_scores")
                   for n in ("following", "preservation", "quality", "overall"))  # fmt: skip


# ------------------------------------------------------------------------------------------ report


def test_the_report_shows_rejected_images_and_the_judges_words(kept_run, judged_run, tmp_path):
    report = Path(build_report(str(kept_run), dest=str(tmp_path / "local"), gallery=10_000, progress=False)).parent
    entries = gallery(report)
    rendered = {(k, n) for path in (kept_run / "shards").glob("*.rejected.tar")
                for k, n in rejected_candidates(path)}  # fmt: skip
    for entry in entries:
        stored = entry["status"] == "kept" or (entry["key"], entry["candidate"]) in rendered
        assert (entry["thumbs"] is not None) == stored, entry
        if entry["thumbs"] is not None:
            assert set(entry["thumbs"]) == {"input", "output", "mask"}
            assert all((report / name).is_file() for name in entry["thumbs"].values())
    assert sum(e["status"] != "kept" and e["thumbs"] is not None for e in entries) == len(rendered)
    page = (report / "index.html").read_text()
    assert '"keeps_rejected":true' in page

    judged = gallery(Path(build_report(str(judged_run), dest=str(tmp_path / "tiny"), progress=False)).parent)
    rows = pq.read_table(judged_run / "shards" / "remove-000000.parquet").to_pylist()
    words = {(r["key"], r["candidate"]): (r["judge_reasoning"], r["instruction_rewritten"]) for r in rows}
    assert len(judged) == len(rows) and all(e["thumbs"] for e in judged)
    rewards = {(r["key"], r["candidate"]): r["score_reward"] for r in rows}
    for entry in judged:
        assert (entry["judge_reasoning"], entry["instruction_rewritten"]) == words[(entry["key"], entry["candidate"])]
        assert entry["judge_reasoning"]
        # the trained reward model's score, as the manifest has it, beside the judge's words
        assert entry["scores"]["reward"] == rewards[(entry["key"], entry["candidate"])] is not None


def gallery(report: Path) -> list[dict]:
    prefix = "(window.DATAGEN_PAGES = window.DATAGEN_PAGES || []).push("
    entries = []
    for path in sorted((report / "data").glob("page-*.js")):
        entries += json.loads(path.read_text()[len(prefix) : -3])
    return entries
