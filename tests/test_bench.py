"""`datagen bench`: each benchmark runs at a small size and reports consistent figures. Speed itself is measured by
`make bench`, never asserted here."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from conftest import run_cli, run_inline

from datagen.bench import shard_members, synthetic_records, write_ours
from datagen.models.tesseract import installed
from datagen.shards import TarShardWriter
from datagen.storage import Folder
from datagen.text_photos import HELD_OUT_FONT_DIR


def product_tar(folder: Folder, name: str, records) -> bytes:
    """The tar the render's shard writer writes for these records."""
    writer = TarShardWriter(folder, name, "png", 95, 3)
    for record in records:
        writer.add(record)
    writer.commit()
    return Path(folder.at(name)).read_bytes()


def test_writer_bench_compares_the_same_bytes(tmp_path):
    result = tmp_path / "writer.json"
    proc = run_cli("bench", "writer", "--samples", "6", "--size", "64", "--repeats", "1", "--json", str(result),
                   "--tmp", str(tmp_path))  # fmt: skip
    figures = json.loads(result.read_text())
    assert set(figures["encoded"]) == {"ours", "TarWriter", "TarWriter+fsync", "raw copy"}
    for row in figures["encoded"].values():
        assert row["seconds"] > 0 and row["mb_s"] == pytest.approx(figures["tar_mb"] / row["seconds"])
    ratios = figures["ratios"]
    assert ratios["ours_vs_tarwriter"] == pytest.approx(
        figures["encoded"]["ours"]["mb_s"] / figures["encoded"]["TarWriter"]["mb_s"]
    )
    assert [c["codec"] for c in figures["codecs"]][:5] == [f"png level {n}" for n in (0, 1, 3, 6, 9)]
    sizes = [c["kib_per_image"] for c in figures["codecs"][:5]]
    assert sizes[0] > sizes[-1]  # level 0 stores, level 9 squeezes
    assert figures["machine"]["cores"] >= 1
    assert "ours / TarWriter:" in proc.stdout and "ours / raw copy:" in proc.stdout
    assert not list(tmp_path.glob("datagen-bench-*"))  # nothing left behind
    # the bytes timed are the tar the render writes for the same six records
    written = product_tar(Folder(tmp_path), "product.tar", synthetic_records(6, 64))
    assert figures["tar_mb"] == pytest.approx(len(written) / 1e6, rel=1e-12)


def test_members_written_by_the_benchmark_path_are_the_shard_writers_own(tmp_path):
    """The tar the writer benchmark times as `ours` is, byte for byte, the tar the render writes for the same
    records: the benchmark encodes with the product's encoder and writes with the product's writer."""
    records = synthetic_records(3, 32)
    folder = Folder(tmp_path)
    write_ours(folder, "bench.tar", shard_members(folder, records))
    assert (tmp_path / "bench.tar").read_bytes() == product_tar(folder, "product.tar", records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.tar", "product.tar"], "no leftover temporaries"
    with tarfile.open(tmp_path / "bench.tar") as tar:
        names = tar.getnames()
        member = json.loads(tar.extractfile(f"{records[1].key}.json").read())
    suffixes = ("input.png", "output.png", "mask.png", "json", "txt")
    assert names == [f"{record.key}.{s}" for record in records for s in suffixes]
    assert member == json.loads(json.dumps(records[1].text_fields())), "the json member is the record's own"


def test_render_bench_reports_every_stage_against_batch_1(tmp_path):
    result = tmp_path / "render.json"
    proc = run_cli("bench", "render", "--n", "8", "--shard-size", "4", "--json", str(result), "--tmp", str(tmp_path))
    figures = json.loads(result.read_text())
    assert figures["samples"] == 8 and 0 < figures["kept"] <= 8
    assert {"load", "ground", "segment", "generate", "score", "gate", "encode"} <= set(figures["stages_ms_per_sample"])
    assert "write" not in figures["stages_ms_per_sample"], "the render phase alone is timed"
    assert figures["samples_s"] == pytest.approx(8 / figures["seconds"])
    base = figures["baseline"]
    assert base["micro_batch"] == 1 and set(base["batch_sizes"].values()) == {1} and base["samples"] == 8
    assert figures["micro_batch"] > 1
    assert base["kept"] == figures["kept"]  # batching changes the speed, never the outcome
    assert base["model_calls"]["inpaint"] == 8 and figures["model_calls"]["inpaint"] == 2, "one call per micro-batch"
    assert figures["speedup"] == pytest.approx(figures["samples_s"] / base["samples_s"])
    assert "speedup" in proc.stdout
    assert "per_item_encode" not in figures, "local has no model that encodes"


def test_render_bench_times_the_judge_and_the_reward_model_against_the_same_render_without_each(tiny_dir, tmp_path):
    result = tmp_path / "render.json"
    proc = run_inline("bench", "render", "--pipeline", "tiny", "--n", "4", "--shard-size", "4", "--json", str(result),
                      "--tmp", str(tmp_path))  # fmt: skip
    figures = json.loads(result.read_text())
    for role in ("judge", "reward"):  # the zero-shot judge and the trained reward model, each left out once
        scorer = figures[role]
        assert scorer["requests"] == figures["model_items"][role] == 12  # every candidate: 4 samples x 3 variants
        assert scorer["requests_s"] == pytest.approx(12 / figures["stage_seconds"][role])
        assert 0 < scorer["share_of_render"] < 1
        without = scorer["without"]
        assert role not in without["model_calls"] and without["samples"] == figures["samples"] == 4
        assert f"{role}: 12 requests at" in proc.stdout
    before = figures["per_item_encode"]  # the same batched render with diffusers' per-item encode, same process
    assert before["samples"] == 4 and before["kept"] == figures["kept"], "the batched encode changes no outcome"
    assert figures["generate_ms_per_sample"]["before"] == before["stages_ms_per_sample"]["generate"]
    assert figures["generate_ms_per_sample"]["after"] == figures["stages_ms_per_sample"]["generate"]
    assert "generate stage:" in proc.stdout
    # vLLM's CPU worker logged this once per judge request (datagen/quiet.py): silenced unless --verbose
    assert "torch.set_num_threads" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_engine_bench_runs_the_loop_and_ray_on_the_same_work(tmp_path, ray_cluster):
    result = tmp_path / "engine.json"
    proc = run_cli("bench", "engine", "--n", "40", "--shard-size", "10", "--json", str(result), "--tmp", str(tmp_path),
                   env={"RAY_ADDRESS": ray_cluster})  # fmt: skip
    figures = json.loads(result.read_text())
    assert figures["loop"]["samples"] == figures["ray"]["samples"] == 40
    cores = figures["cores"]
    assert figures["parallel_efficiency"] == pytest.approx(
        figures["ray"]["samples_s"] / (figures["loop"]["samples_s"] * cores)
    )
    assert sum(figures["where_the_time_goes"].values()) == pytest.approx(1.0, abs=0.35)
    assert "parallel efficiency:" in proc.stdout


def test_bench_arguments_are_checked(tmp_path):
    proc = run_cli("bench", "writer", "--samples", "0", check=False)
    assert proc.returncode == 2 and "expected a positive integer, got 0" in proc.stderr
    proc = run_cli("bench", "writer", "--tmp", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2 and "no such directory" in proc.stderr


def test_text_bench_counts_what_its_runs_kept_and_reads_the_same_candidates_as_anyedit(tmp_path):
    """Four photos at 256 px: the yield is kept over legible for each edit, a kept replacement reads exactly, and
    AnyEdit's rule is applied to exactly the candidates that draw a string."""
    result = tmp_path / "text.json"
    proc = run_inline("bench", "text", "--n", "4", "--size", "256", "--seed", "1", "--json", str(result),
                      "--tmp", str(tmp_path))  # fmt: skip
    figures = json.loads(result.read_text())
    assert figures["detection"]["lines"] == 4 and 0 < figures["detection"]["recall"] <= 1
    for edit in ("replace", "remove", "restyle"):
        e = figures[edit]
        assert e["legible"] + e["no_legible_line"] == 4 and e["legible"] >= 2, e
        assert e["yield"] == pytest.approx(e["kept"] / e["legible"])
        assert e["kept"] + sum(e["rejected_by_reason"].values()) == e["legible"]
        assert e["kept_outside_l1_max"] == 0.0
        assert e["ms_per_sample"]["score"] > 0 and e["ms_per_sample"]["inpaint"] > 0
    assert figures["replace"]["kept_exact_rate"] == 1.0 and figures["remove"]["kept_old_gone_rate"] == 1.0
    assert figures["remove"]["anyedit_rule"]["candidates"] == 0, "a removal draws no string to look for"
    assert figures["replace"]["anyedit_rule"]["candidates"] >= figures["replace"]["legible"]
    assert "AnyEdit rule keeps" in proc.stdout and not list(tmp_path.glob("datagen-bench-*"))
    # the two readers on the same candidates: each candidate the other gates keep is counted once, in one cell
    for edit in ("replace", "remove", "restyle"):
        readers = figures[edit]["readers"]
        if installed() is None:  # no independent reader here (`make install-ocr`): nothing to compare
            assert readers is None and "Tesseract" in proc.stdout
            continue
        cells = readers["both"] + readers["planner_only"] + readers["reader_only"] + readers["neither"]
        assert cells == readers["candidates"] >= figures[edit]["kept"], readers
        assert readers["planner_keeps"] == readers["both"] + readers["planner_only"]
        assert figures[edit]["kept"] <= readers["both"], "a kept pair passes both readers' gates"
        assert len(readers["disagreements"]) == readers["planner_only"] + readers["reader_only"]
        for d in readers["disagreements"]:
            wrong = d["reader_read"] if d["kept_by"] == "planner" else d["planner_read"]
            assert f"{d['kept_by']} alone" in proc.stdout and repr(wrong) in proc.stdout
    # removals against the photos' truth: the ink-only removal against whole-box removal, the same photos
    ink, box = figures["remove"]["background"], figures["remove"]["background_baseline"]
    assert ink["candidates"] == box["candidates"] >= figures["remove"]["legible"]
    assert set(box["removal"]) == {"box"} and box["remove_ink"] is False
    assert ink["background_l1_mean"] <= box["background_l1_mean"], "removing the letters alone keeps more around"
    assert "against whole-box removal" in proc.stdout


BACKGROUND_L1 = 0.001
"""The most a removal may change a sign's plate around its letters (mean L1, 0-1: a quarter of a grey level),
docs/benchmarks.md "Two readers on the same text edits"."""


@pytest.mark.skipif(not Path(HELD_OUT_FONT_DIR).is_dir(), reason="fonts-liberation not installed: make install-ocr")
def test_text_bench_on_the_held_out_signs_removes_the_letters_and_keeps_the_plate(tmp_path):
    """The held-out set (plates lettered in fonts datagen does not ship): the ink is separable from a flat plate,
    so every removal takes the letters alone, and the plate around them changes less than under whole-box removal."""
    result = tmp_path / "signs.json"
    proc = run_inline("bench", "text", "--set", "signs", "--n", "2", "--size", "256", "--json", str(result),
                      "--tmp", str(tmp_path), "--keep")  # fmt: skip
    figures = json.loads(result.read_text())
    assert figures["set"] == "signs" and figures["seed"] == 1 and figures["detection"]["lines"] == 2
    kept = Path(figures["runs"])  # --keep: the photos and every run stay, to look at
    assert kept.parent == tmp_path and f"kept: the photos and runs in {kept}" in proc.stdout
    assert len(list((kept / "photos").glob("*.png"))) == 2
    assert all((kept / run / "shards").is_dir() for run in ("replace", "remove", "restyle", "remove-box"))
    ink, box = figures["remove"]["background"], figures["remove"]["background_baseline"]
    assert ink["removal"] == {"ink": 2} and box["removal"] == {"box": 2}
    assert ink["background_l1_max"] < BACKGROUND_L1 < box["background_l1_mean"], (ink, box)
    assert ink["letters_to_clean_l1_mean"] < box["letters_to_clean_l1_mean"], "the plate under the letters is truer"
    assert "2 photos of the signs set" in proc.stdout
    bad = run_cli("bench", "text", "--set", "posters", check=False)
    assert bad.returncode == 2 and "invalid choice: 'posters'" in bad.stderr


def test_curate_bench_times_the_map_stage_beside_its_baseline_and_counts_planted_copies(tmp_path):
    result = tmp_path / "curate.json"
    proc = run_inline("bench", "curate", "--size", "128", "--hashes", "3000", "--ray-hashes", "--repeats", "1",
                      "--json", str(result), "--tmp", str(tmp_path))  # fmt: skip
    figures = json.loads(result.read_text())
    runs = figures["map"]["runs"]
    assert set(runs) == {"with NudeNet", "without NudeNet (baseline)"}
    assert all(run["images_s"] == pytest.approx(figures["map"]["images"] / run["seconds"]) for run in runs.values())
    assert figures["map"]["ms_per_image"]["NudeNet"] > 0
    (dedup,) = figures["dedup"]["runs"]
    assert dedup["hashes"] == 3000 and dedup["planted"] == 300 and dedup["where"] == "one process"
    assert dedup["false_merges"] == 0 and 0.95 <= dedup["recall"] <= 1
    assert all(dedup["recall_by_bits"][str(bits)] == 1 for bits in (0, 2, 4, 8))  # copies this close: always found
    assert "images/s per core" in proc.stdout and not list(tmp_path.glob("datagen-bench-*"))
