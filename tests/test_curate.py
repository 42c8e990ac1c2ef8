"""The curate phase's look at input photos, on scikit-image's real photos with the real NSFW detector: each input's
scores and hashes, and the pipeline's gates (pipelines/*.yaml: curate) keeping or dropping it with a reason."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import run_inline

from datagen import curate, dedup, models
from datagen.errors import ConfigError
from datagen.resolve import load_pipeline
from datagen.scores import CURATION_SCORES
from datagen.shards.curated import DUPLICATES, committed_inputs, kept_inputs
from datagen.shards.layout import read_parquet
from datagen.storage import Folder
from datagen.text_photos import PHOTOS, photo


@pytest.fixture(scope="module")
def gates():
    return load_pipeline("local").curate


@pytest.fixture(scope="module")
def looked():
    pipeline = load_pipeline("local")
    nsfw = models.build("nsfw", pipeline.roles["nsfw"])
    images = {name: photo(name) for name in PHOTOS}
    images.update({f"{name}/blurred": cv2.GaussianBlur(photo(name), (0, 0), 5) for name in PHOTOS})
    return dict(zip(images, curate.look(list(images.values()), {"nsfw": nsfw}), strict=True)), images


def test_sharp_photos_pass_and_blurred_copies_are_dropped_as_blurry(looked, gates):
    found, _ = looked
    reasons = {name: curate.gate(item["scores"], gates) for name, item in found.items()}
    assert {name: reason for name, reason in reasons.items() if "/" not in name and reason} == {
        "colorwheel": "blurry"  # a smooth gradient: no edge to be sharp (and NudeNet's false positive besides)
    }
    assert all(reasons[f"{name}/blurred"] == "blurry" for name in PHOTOS), reasons
    sharp = [found[name]["scores"]["blur"] for name in PHOTOS if name != "colorwheel"]
    assert max(sharp) < 0.55 < 0.7 < min(found[f"{name}/blurred"]["scores"]["blur"] for name in PHOTOS)


def test_every_input_gets_its_scores_and_hashes(looked):
    found, images = looked
    for name, item in found.items():
        height, width = images[name].shape[:2]
        assert item["scores"]["short_side"] == min(height, width)
        assert item["scores"]["aspect"] == pytest.approx(max(height, width) / min(height, width), abs=1e-6)
        assert 0 <= item["scores"]["nsfw"] <= 1 and len(item["hashes"]) == dedup.HASHES
    assert found["colorwheel"]["scores"]["nsfw"] > 0.5, "NudeNet's false positive, measured for real"


def test_size_and_shape_gates_come_first_and_say_why(gates):
    sharp = {"blur": 0.3, "nsfw": 0.0}
    assert curate.gate({"short_side": 300.0, "aspect": 1.5, **sharp}, gates) == ""
    assert curate.gate({"short_side": 200.0, "aspect": 4.0, **sharp}, gates) == "too_small"
    assert curate.gate({"short_side": 300.0, "aspect": 4.0, **sharp}, gates) == "too_elongated"
    assert curate.gate({"short_side": 300.0, "aspect": 1.0, "blur": 0.3, "nsfw": 0.9}, gates) == "nsfw"
    assert curate.gate({"short_side": 300.0, "aspect": 1.0, "blur": float("nan")}, gates) == "nan_blur"
    measured = curate.measure(np.zeros((100, 400, 3), np.uint8))
    assert (measured["short_side"], measured["aspect"]) == (100.0, 4.0)


def test_the_amount_of_text_is_measured_where_a_gate_asks_for_it():
    """The ocr role (real PP-OCR weights) reads only for a pipeline that gates on text_area: photos with a sign drawn
    on them are measured and dropped, a clean photo is kept."""
    from datagen.text_photos import text_photos

    assert "ocr" not in curate.curation_roles(load_pipeline("local"))  # slow on the CPU: only where a gate asks
    pipeline = load_pipeline("local", overrides=["curate.text_area={max: 0.002, reason: too_much_text}"])
    assert curate.curation_roles(pipeline) == ["nsfw", "ocr"]
    signs = [item.image for item in text_photos(2, seed=1)]
    roles = {"ocr": models.build("ocr", pipeline.roles["ocr"])}
    found = curate.look([*signs, photo("coffee")], roles)
    areas = [item["scores"]["text_area"] for item in found]
    assert all(area > 0.002 for area in areas[:2]) and areas[2] < 0.002, areas
    reasons = [curate.gate(item["scores"], {"text_area": pipeline.curate["text_area"]}) for item in found]
    assert reasons == ["too_much_text", "too_much_text", ""]


def test_a_gate_on_an_unknown_score_is_refused():
    with pytest.raises(ConfigError, match=r"curate.*unknown curation score\(s\) sharpness: allowed short_side"):
        load_pipeline("local", overrides=["curate.sharpness={max: 1}"])


CHOSEN = ("astronaut", "coffee", "brick", "colorwheel")
"""Two photos, a texture (the hardest for the hash) and the smooth gradient the blur gate drops."""


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """A folder of four photos, each also as a JPEG, cropped 3% a side and blurred, plus a strip too small to keep;
    every file with a caption; curated in shards of five."""
    from PIL import Image

    root = tmp_path_factory.mktemp("curate")
    photos = root / "photos"
    photos.mkdir()
    for name in CHOSEN:
        image = photo(name)
        height, width = image.shape[:2]
        versions = {"png": image, "q60.jpg": image, "crop.png": image[height * 3 // 100 : height - height * 3 // 100,
                                                                      width * 3 // 100 : width - width * 3 // 100],
                    "blur.png": cv2.GaussianBlur(image, (0, 0), 5)}  # fmt: skip
        for suffix, version in versions.items():
            stem = name if suffix == "png" else f"{name}-{suffix.split('.')[0]}"
            Image.fromarray(version).save(photos / f"{stem}.{suffix.split('.')[-1]}", quality=60)
            (photos / f"{stem}.json").write_text(f'{{"caption": "a photo of the {name}"}}')
    Image.fromarray(photo("coffee")[:100, :400]).save(photos / "strip.png")
    (photos / "strip.json").write_text('{"caption": "a strip of a coffee cup"}')
    out = root / "curated"
    return photos, out, curate.curate("images", str(photos), str(out), shard_size=5, progress=False)


def test_the_funnel_drops_blurred_small_and_duplicate_inputs(curated):
    _, out, funnel = curated
    blurred = len(CHOSEN) + 2  # each blurred copy, and the colour wheel's JPEG and crop (its PNG is its own copy)
    assert funnel == {"inputs": 4 * len(CHOSEN) + 1, "dropped": {"blurry": blurred + 1, "too_small": 1},
                      "duplicates": 2 * (len(CHOSEN) - 1), "kept": len(CHOSEN) - 1}  # fmt: skip
    rows = {row["key"]: row for table in committed_inputs(Folder(out)) for row in table.to_pylist()}
    paths = {key: json.loads(row["ref"])["path"] for key, row in rows.items()}
    duplicates = read_parquet(Folder(out), DUPLICATES).to_pylist()
    assert len(duplicates) == funnel["duplicates"]
    for row in duplicates:  # a copy names an input of its own photo
        assert _photo(paths[row["key"]]) == _photo(paths[row["duplicate_of"]]), row
    kept = [paths[item["key"]] for item in kept_inputs(Folder(out))]
    assert sorted(map(_photo, kept)) == sorted(set(CHOSEN) - {"colorwheel"}), kept


def _photo(path: str) -> str:
    return path.split("-")[0].split(".")[0]


def test_curate_resumes_and_refuses_other_settings(curated):
    photos, out, funnel = curated
    markers = {p: p.stat().st_mtime_ns for p in out.rglob("*.stats.json")}
    proc = run_inline("curate", "--source", "images", "--input", str(photos), "--out", str(out), "--shard-size", "5",
                      "--no-progress")  # fmt: skip
    said = f"curated {funnel['inputs']} inputs: dropped by the gates blurry 7, too_small 1; near-duplicates 6; kept 3"
    assert said in proc.stdout, proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.stats.json")} == markers, "nothing redone"
    with pytest.raises(ConfigError, match="curated with other settings \\(shard_size 5\\)"):
        curate.curate("images", str(photos), str(out), shard_size=4, progress=False)


def test_generate_reads_the_curated_set(curated, tmp_path):
    from datagen.resolve import load_run
    from datagen.runner import execute

    _, out, funnel = curated
    config = load_run("color", "local", out=str(tmp_path / "run"), n=4, source="curated", input=str(out),
                      repeat=True, overrides=["pipeline.image_size=64"])  # fmt: skip
    assert not execute(config, "generate", workers=0, progress=False).failed
    texts = [json.loads(line) for line in (tmp_path / "run" / "texts" / "color-000000.jsonl").read_text().splitlines()]
    kept = {item["key"] for item in kept_inputs(Folder(out))}
    assert all(t["source"]["kind"] == "curated" and t["source"]["key"] in kept for t in texts)
    assert all(set(t["source"]["scores"]) == {"short_side", "aspect", "blur", "nsfw"} for t in texts)
    assert all(t["status"] == "ok" for t in texts), texts


def test_curate_on_ray_writes_the_same_bytes_as_inline(curated, tmp_path, ray_cluster):
    """Shards as Ray tasks (two at once) and the deduplication on Ray Data: every file the same as inline."""
    photos, out, funnel = curated
    on_ray = tmp_path / "on-ray"
    assert curate.curate("images", str(photos), str(on_ray), shard_size=5, progress=False, workers=2) == funnel
    inline = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    assert inline and {p.relative_to(on_ray): p.read_bytes() for p in on_ray.rglob("*.parquet")} == inline


def test_a_second_curate_on_a_live_folder_is_refused(curated, tmp_path):
    """The curated set has its writer's lease, as a run folder does: while one curate holds it, another is refused
    before it writes anything, naming the holder."""
    from datagen.lease import Lease, LeaseHeld

    photos, _, _ = curated
    out = tmp_path / "live"
    with Lease.acquire(str(out), holder="datagen curate (the first)"):
        with pytest.raises(LeaseHeld, match="datagen curate \\(the first\\)"):
            curate.curate("images", str(photos), str(out), shard_size=5, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [".lease.json", ".lease.lock"]
    assert curate.curate("images", str(photos), str(out), shard_size=5, progress=False)["kept"] == len(CHOSEN) - 1


def test_a_failing_shard_is_recorded_and_a_rerun_finishes_the_same_bytes(curated, tmp_path):
    """A shard that cannot be written (a folder squats on its parquet's name) fails after its retries into
    failed/curate-000001.json; the other shards commit, the near-duplicates wait, and the command says to rerun.
    Once the squatter is gone, the rerun retries only that shard, clears its record, and ends byte-identical to a
    curation that never failed."""
    from datagen.errors import RunStopped

    photos, reference, funnel = curated
    out = tmp_path / "failing"
    (out / "inputs" / "curate-000001.parquet").mkdir(parents=True)
    with pytest.raises(RunStopped, match="1 curate shard\\(s\\) failed after their retries \\(000001: IsADirectory"):
        curate.curate("images", str(photos), str(out), shard_size=5, progress=False)
    record = json.loads((out / "failed" / "curate-000001.json").read_text())
    assert record["attempts"] == 3 and "IsADirectoryError" in record["traceback"]
    assert sorted(p.name for p in (out / "inputs").glob("*.stats.json")) == [
        f"curate-{n:06d}.stats.json" for n in (0, 2, 3)
    ]
    assert not (out / "duplicates.parquet").exists()
    (out / "inputs" / "curate-000001.parquet").rmdir()
    assert curate.curate("images", str(photos), str(out), shard_size=5, progress=False) == funnel
    assert not list((out / "failed").iterdir())
    shards = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    assert shards == {p.relative_to(reference): p.read_bytes() for p in reference.rglob("*.parquet")}


@pytest.mark.slow
def test_a_curation_killed_anywhere_resumes_to_the_same_bytes(curated, tmp_path):
    """SIGKILL `datagen curate` at several points (while shards commit, while the duplicates are written), rerun
    after each: no half-written file is ever visible, and the last rerun ends byte-identical to the curation that
    was never interrupted."""
    import os
    import random
    import signal
    import subprocess
    import time

    from conftest import DATAGEN, REPO

    photos, reference, _ = curated
    out = tmp_path / "killed"
    args = [*DATAGEN, "curate", "--source", "images", "--input", str(photos), "--out", str(out), "--shard-size", "2",
            "--no-progress"]  # fmt: skip
    rng = random.Random(5)
    for _ in range(4):
        before = sorted(out.rglob("*")) if out.exists() else []
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while (sorted(out.rglob("*")) if out.exists() else []) == before and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        visible = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
        for marker in (p for p in visible if p.name.endswith(".stats.json") and p.parent.name == "inputs"):
            assert marker.with_name(marker.name.replace(".stats.json", ".parquet")).is_file(), "a marker comes last"
        assert all(os.path.getsize(p) > 0 for p in visible)
    subprocess.run(args, cwd=REPO, check=True, capture_output=True)
    shards = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    assert len(shards) == 10  # 17 inputs in shards of 2, and the duplicates
    again = tmp_path / "uninterrupted"
    curate.curate("images", str(photos), str(again), shard_size=2, progress=False)
    assert shards == {p.relative_to(again): p.read_bytes() for p in again.rglob("*.parquet")}


def test_the_report_of_a_curated_set_shows_its_funnel_scores_and_dropped_inputs(curated, tmp_path):
    import re

    _, out, funnel = curated
    proc = run_inline("report", str(out), "--dest", str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert "report: " in proc.stdout
    rows = dict(re.findall(r"<tr><td>(?:<b>)?([a-z_]+)(?:</b>)?</td><td class='num'>(\d+)</td></tr>", page))
    assert rows == {**{k: str(v) for k, v in funnel["dropped"].items()}, "duplicate": str(funnel["duplicates"]),
                    "kept": str(funnel["kept"])}  # fmt: skip
    scored = [name for name in CURATION_SCORES if name not in ("aesthetic", "text_area")]  # not gated on `local`
    assert {p.name for p in (tmp_path / "report" / "plots").iterdir()} == {f"{n}.png" for n in scored}
    shown = re.findall(r'<img src="thumbs/([a-z0-9_]+)\.jpg"', page)
    dropped = sum(funnel["dropped"].values()) + funnel["duplicates"]
    assert len(shown) == dropped and all((tmp_path / "report" / "thumbs" / f"{key}.jpg").is_file() for key in shown)


def test_generate_curate_curates_first_then_reads_the_set_and_resumes(curated, tmp_path):
    photos, _, funnel = curated
    out = tmp_path / "run"
    proc = run_inline("generate", "--curate", "--task", "color", "--source", "images", "--input", str(photos),
                      "--n", "3", "--out", str(out), "--workers", "0", "--no-progress",
                      "--set", "pipeline.image_size=64")  # fmt: skip
    assert f"curated {funnel['inputs']} inputs into {out}/curated" in proc.stdout and (out / "curated").is_dir()
    texts = [json.loads(line) for line in (out / "texts" / "color-000000.jsonl").read_text().splitlines()]
    assert [t["source"]["kind"] for t in texts] == ["curated"] * 3 and all(t["status"] == "ok" for t in texts)
    assert "0 already committed" not in run_inline("generate", "--out", str(out), "--workers", "0").stdout
    refused = run_inline("generate", "--curate", "--task", "color", "--out", str(tmp_path / "x"), check=False)
    assert refused.returncode == 2 and "--curate reads photos: give --source images or shards" in refused.stderr


def test_distinct_photos_under_one_banner_curate_inline_and_on_ray_without_merging(tmp_path, ray_cluster):
    """Twelve distinct photos, each with the same dark banner along the bottom: their hash bands collide but no
    pair is close. Both paths finish (this once crashed in the verification step) and drop none as a duplicate."""
    from PIL import Image

    from datagen.text_photos import with_overlay

    photos = tmp_path / "banner"
    photos.mkdir()
    for name in PHOTOS[:12]:
        Image.fromarray(with_overlay(photo(name), "banner")).save(photos / f"{name}.png")
    inline = curate.curate("images", str(photos), str(tmp_path / "inline"), shard_size=6, progress=False)
    on_ray = curate.curate("images", str(photos), str(tmp_path / "ray"), shard_size=6, progress=False, workers=2)
    assert inline == on_ray and inline["inputs"] == 12 and inline["duplicates"] == 0, inline
