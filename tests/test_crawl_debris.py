"""Crawl debris costs its own samples, never the run: a folder of WebDataset shards holding good tars beside a tar a
killed writer cut short, a text file named .tar, gzip-compressed tars (one cut short) and a tar of hostile members
(traversal names, a link, JSON nested 200,000 deep, a JSON member over the size bound, NaN boxes, wrong types, a
repeated key, odd key characters). `curate` and `generate` both finish (exit 0); every good sample is read, every bad
one is counted under its reason; the summary and the report name the broken files. The same for an image folder
with a deep sidecar and a broken img2dataset parquet."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_inline

from datagen import images
from datagen.errors import ConfigError
from datagen.shards.curated import committed_inputs
from datagen.shards.layout import read_parquet
from datagen.sources import INPUT_ERROR, ShardSource, check_source
from datagen.storage import Folder

DEEP = b"[" * 200_000 + b"]" * 200_000
"""A JSON member nested 200,000 levels deep: json.loads raises RecursionError on it."""


def _png(seed: int) -> bytes:
    """A 96x96 photo-like image (noise over a gradient: sharp enough for the blur gate, too small for curation's
    size gate, which is not under test here)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:96, 0:96]
    base = np.stack([xs * 2, ys * 2, 255 - xs - ys], -1) + rng.integers(0, 60, (96, 96, 3))
    return images.encode(np.clip(base, 0, 255).astype(np.uint8), "png")


def _tar(members: list[tuple[str, bytes]], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def _good(keys: range) -> list[tuple[str, bytes]]:
    return [m for k in keys for m in ((f"g{k:03d}.png", _png(k)), (f"g{k:03d}.txt", f"a photo number {k}".encode()))]


HOSTILE = {
    # key -> (its members besides the image, the reason it is rejected with; "" where it is read as a good sample)
    "deep": ({"json": DEEP}, "bad_annotation"),
    "huge": ({"json": b'{"caption": "' + b"x" * (1 << 20) + b'"}'}, "bad_annotation"),
    "nanbox": (
        {"json": b'{"caption": "a box", "objects": [{"name": "box", "box": [NaN, 0, 4, 4]}]}'},
        "bad_annotation",
    ),
    "wrongtype": ({"json": b'{"caption": 5}'}, "bad_annotation"),
    "objects": ({"json": b'{"caption": "x", "objects": "not a list"}'}, "bad_annotation"),
    "repeated": ({"json": b'{"caption": "a", "caption": "b"}'}, "bad_annotation"),
    "notutf8": ({"txt": b"\xff\xfe caption"}, "bad_annotation"),
    "odd key é +=,;": ({"txt": b"a photo with an odd key"}, ""),
}


@pytest.fixture(scope="module")
def debris(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("debris") / "shards"
    root.mkdir()
    (root / "a-good.tar").write_bytes(_tar(_good(range(0, 5))))
    cut = _tar(_good(range(5, 11)))
    (root / "b-truncated.tar").write_bytes(cut[: len(cut) // 2])
    (root / "c-text.tar").write_text("this file is not a tar archive\n" * 40)
    (root / "d-compressed.tar.gz").write_bytes(gzip.compress(_tar(_good(range(11, 14))), mtime=0))
    squeezed = gzip.compress(_tar(_good(range(14, 20))), mtime=0)
    (root / "e-truncated.tgz").write_bytes(squeezed[: len(squeezed) * 2 // 3])
    hostile = [(f"h-{name}.png", _png(100 + n)) for n, name in enumerate(HOSTILE)]
    hostile += [(f"h-{name}.{ext}", data) for name, (extra, _) in HOSTILE.items() for ext, data in extra.items()]
    hostile += [("../../escape.png", _png(200)), ("../../escape.txt", b"a traversal name")]
    (root / "f-hostile.tar").write_bytes(_tar(hostile, links=("link.png",)))
    return root


def color_run(kind: str, input, n, out) -> tuple:
    """`generate --task color` over an input at 64 px, inline: (the CLI's result, the instruction records written)."""
    proc = run_inline(
        "generate",
        "--task",
        "color",
        "--source",
        kind,
        "--input",
        str(input),
        "--n",
        str(n),
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
        "--set",
        "pipeline.image_size=64",
    )
    texts = [json.loads(line) for line in (out / "texts" / "color-000000.jsonl").read_text().splitlines()]
    return proc, texts


def test_the_index_keeps_what_is_complete_and_names_each_broken_file(debris):
    source = ShardSource(str(debris), 64)
    assert {name: reason for name, reason, _ in source.unreadable()} == {
        "b-truncated.tar": "shard_truncated",
        "c-text.tar": "shard_unreadable",
        "e-truncated.tgz": "shard_truncated",
    }
    keys = {tar.rel: tar.keys for tar in source.tars.values()}
    assert keys["a-good.tar"] == [f"g{k:03d}" for k in range(5)]
    assert keys["d-compressed.tar.gz"] == ["g011", "g012", "g013"]  # read as WebDataset reads it
    cut = [key for key in keys["b-truncated.tar"] if key]  # complete before the cut, the last sample read dropped
    assert 0 < len(cut) < 6 and cut == [f"g{k:03d}" for k in range(5, 5 + len(cut))]
    assert keys["b-truncated.tar"][-1] == "" and keys["c-text.tar"] == [""]
    assert "link" not in keys["f-hostile.tar"]  # a link is no sample
    for tar, tar_keys in keys.items():  # every complete sample decodes to the pixels it was written with
        for key in tar_keys:
            if key.startswith("g"):
                image = source.original({"kind": "shards", "tar": tar, "key": key}, 1 << 20)
                assert image.shape == (96, 96, 3)
                np.testing.assert_array_equal(image, images.decode_image(_png(int(key[1:])), 1 << 20))
    check_source("shards", str(debris))  # readable samples are left: no refusal


def test_an_input_with_no_readable_sample_is_refused_naming_the_files(debris, tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.tar").write_bytes((debris / "c-text.tar").read_bytes())
    with pytest.raises(ConfigError) as caught:
        check_source("shards", str(tmp_path / "only"))
    assert "x.tar: shard_unreadable" in str(caught.value) and "no samples with an image member" in str(caught.value)


def test_generate_reads_every_good_sample_counts_every_bad_one_and_exits_0(debris, tmp_path):
    out, entries = tmp_path / "run", len(ShardSource(str(debris), 64))
    proc, texts = color_run("shards", debris, str(entries), out)
    by_key = {}
    for text in texts:
        source = text["source"]
        by_key[(source["tar"], source["key"])] = (text["status"], text.get("reason") or "")
    expected = {}
    for tar in ShardSource(str(debris), 64).tars.values():
        for key in tar.keys:
            if not key:
                expected[(tar.rel, key)] = ("rejected", tar.bad[0])
            elif key.startswith("h-"):
                reason = HOSTILE[key[2:]][1]
                expected[(tar.rel, key)] = ("rejected", reason) if reason else ("ok", "")
            else:
                expected[(tar.rel, key)] = ("ok", "")
    assert by_key == expected and len(texts) == entries  # every entry drawn once
    stats = json.loads((out / "shards" / "color-000000.stats.json").read_text())
    reasons = Counter(reason for status, reason in expected.values() if status == "rejected")
    assert {k: v for k, v in stats["reasons"].items() if k in reasons} == dict(reasons)
    assert stats["errors"] == 0
    assert "unreadable input files: 3" in proc.stdout and "c-text.tar: not a readable tar" in proc.stdout
    run_inline("report", str(out), "--no-progress")
    page = (out / "report" / "index.html").read_text()
    assert "b-truncated.tar is cut short" in page and "e-truncated.tgz is cut short" in page


def test_curate_reads_every_good_sample_and_counts_every_bad_file(debris, tmp_path):
    proc = run_inline(
        "curate",
        "--source",
        "shards",
        "--input",
        str(debris),
        "--out",
        str(tmp_path / "cur"),
        "--no-progress",
        "--set",
        "curate.short_side.min=64",
    )
    rows = [row for table in committed_inputs(Folder(str(tmp_path / "cur"))) for row in table.to_pylist()]
    reasons = Counter(row["reason"] for row in rows)
    assert reasons["shard_truncated"] == 2 and reasons["shard_unreadable"] == 1
    good = [row for row in rows if json.loads(row["ref"])["key"].startswith("g")]
    assert good and all(row["reason"] == "" for row in good), [r["reason"] for r in good]
    assert "unreadable input files: 3" in proc.stdout
    assert not read_parquet(Folder(str(tmp_path / "cur")), "duplicates.parquet").num_rows


def test_an_image_folder_with_a_deep_sidecar_and_a_broken_parquet_keeps_the_good_photos(tmp_path):
    photos = tmp_path / "photos"
    (photos / "00000").mkdir(parents=True)
    for k in range(4):
        (photos / f"p{k}.png").write_bytes(_png(k))
        (photos / f"p{k}.json").write_text(json.dumps({"caption": f"a good photo {k}"}))
    (photos / "p2.json").write_bytes(DEEP)
    (photos / "00000" / "000000000.png").write_bytes(_png(9))  # img2dataset's layout: its caption in 00000.parquet
    (photos / "00000.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    out = tmp_path / "run"
    _, texts = color_run("images", photos, "5", out)
    verdicts = {t["source"]["path"]: (t["status"], t.get("reason") or "") for t in texts}
    assert verdicts == {
        "p0.png": ("ok", ""),
        "p1.png": ("ok", ""),
        "p2.png": ("rejected", "bad_annotation"),
        "p3.png": ("ok", ""),
        "00000/000000000.png": ("rejected", "bad_annotation"),
    }


def test_whatever_one_input_raises_is_its_own_rejection(tmp_path, monkeypatch):
    """Something no source check names — here the sidecar parser fails on one photo's sidecar with RecursionError, as
    json.loads did on deep JSON before sidecars were bounded (the fault injected into that one call) — rejects that
    sample with the exception's name in its detail; the shard is committed with the others."""
    from datagen.sources import image_folder

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        (photos / f"p{k}.png").write_bytes(_png(k))
        (photos / f"p{k}.json").write_text(json.dumps({"caption": f"a photo {k}"}))
    parse = image_folder.load_sidecar

    def failing_on_p1(data: bytes, name: str):
        if name == "p1.json":
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
        return parse(data, name)

    monkeypatch.setattr(image_folder, "load_sidecar", failing_on_p1)
    out = tmp_path / "run"
    _, texts = color_run("images", photos, "3", out)
    verdicts = [(t["status"], t.get("reason") or "") for t in texts]
    assert verdicts == [("ok", ""), ("rejected", INPUT_ERROR), ("ok", "")]
    assert texts[1]["detail"].startswith("RecursionError: maximum recursion depth")
