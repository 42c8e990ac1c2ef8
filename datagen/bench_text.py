"""`datagen bench text`: the text task on real photos, measured on the text-on-photo set (datagen/text_photos.py).

The product's own runs, one per line edit (replace, remove, restyle: `templates.choices.line_modes` set to it),
each `generate` on a folder of the set through `--source images` with the rejected candidates kept, then:

- detection: the pipeline's OCR role on the set, a drawn line found when a read box covers half of it; recall by
  ink height;
- per edit: the photos with a legible line (the write phase's look: a line the OCR reads, tall enough, that the
  reader role reads alike; the others counted by reason), the share that yield a kept pair, the reasons
  of the others, the read-back scores of what is kept, the outside L1, ms per sample per stage;
- beside it, AnyEdit's (and X2Edit's) filter on the same candidates: the whole output read by the same OCR, kept
  when the new string appears in it anywhere. What the gates reject that it keeps is the point of the gates;
- the two readers on the same candidates: what the planner's own OCR keeps (its `ocr_*` gates) against what the
  reader role keeps (its `reader_*` gates, Tesseract, which shares no weights with it), among the candidates every
  other gate keeps; the disagreements, with both readings, are the figure to watch;
- removals: the change around the line but off its letters (the background a removal must keep), output against
  input, with the ink-only removal against whole-box removal (`generator.args.remove_ink=false`) on the same photos
  in the same run; and the letters' pixels against the photo's clean plate (the exact truth of the removal).

Two sets (`--set`): `text` (datagen.text_photos.text_photos: lines drawn onto photos in the fonts datagen ships) and
`signs` (sign_photos: plates with a line in fonts datagen does not ship, fonts-liberation — the held-out set).
Figures print as a table; `--json FILE` keeps them; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from datagen.measure import positive, table
from datagen.scores import SCORE_PREFIX

EDITS = ("replace", "remove", "restyle")
"""The line edits measured, each its own run."""
SETS = {"text": (28, 0), "signs": (12, 1)}
"""The photo sets, each with its default number of photos and seed (signs: the held-out set docs/benchmarks.md
reports)."""
READERS = {"planner": "ocr_", "reader": "reader_"}
"""Whose gates are whose: the planner's own OCR (the ocr role) and the independent reader (the reader role)."""
CELLS = {(True, True): "both", (True, False): "planner_only", (False, True): "reader_only", (False, False): "neither"}
"""(the planner's gates keep it, the reader's gates keep it) -> the candidate's cell of the agreement table."""
AROUND = 0.5
"""The background a removal must keep: within this many line heights of the drawn line, off its letters."""
OFF_LETTERS_PX = 2
"""How far the drawn letters are grown before their surroundings count as background (their anti-aliased rim)."""
HEIGHT_BANDS = ((0, 16), (16, 24), (24, 36), (36, 1000))
"""Ink heights (pixels) the detection recall is reported by."""


def write_set(folder: Path, n: int, seed: int, size: int, which: str = "text") -> list:
    """A photo set (SETS) as an `images` folder: each photo a PNG and its caption sidecar."""
    from PIL import Image

    from datagen.text_photos import sign_photos, text_photos

    folder.mkdir(parents=True)
    photos = sign_photos(n, seed=seed, square=size) if which == "signs" else text_photos(n, seed=seed, square=size)
    for photo in photos:
        Image.fromarray(photo.image).save(folder / f"{photo.name}.png")
        (folder / f"{photo.name}.json").write_text(json.dumps({"caption": "a photo with a line of text"}))
    return photos


def detection(reader, photos: list) -> dict[str, Any]:
    """Recall of the drawn lines by ink height, and how well the found ones read (NED, exact)."""
    from datagen import glyphs
    from datagen.models.ocr import ned_similarity

    started = time.perf_counter()
    reads = reader.read_batch([photo.image for photo in photos])
    seconds = time.perf_counter() - started
    rows = []
    for photo, lines in zip(photos, reads, strict=True):
        drawn = glyphs.quad_mask(photo.image.shape, photo.line.quad) > 0
        cover = [float((glyphs.quad_mask(photo.image.shape, line.quad) > 0)[drawn].mean()) for line in lines]
        best = int(np.argmax(cover)) if cover else -1
        found = best >= 0 and cover[best] > 0.5
        ned = ned_similarity(lines[best].text, photo.line.text) if found else 0.0
        rows.append((photo.line.height, found, ned))
    bands = {}
    for low, high in HEIGHT_BANDS:
        inside = [found for height, found, _ in rows if low <= height < high]
        if inside:
            bands[f"{low}-{high if high < 1000 else ''}px"] = {
                "lines": len(inside),
                "recall": sum(inside) / len(inside),
            }
    tall = [found for height, found, _ in rows if height >= 16]
    read = [ned for _, found, ned in rows if found]
    return {
        "lines": len(rows),
        "recall": sum(found for _, found, _ in rows) / len(rows),
        "recall_16px_and_up": sum(tall) / len(tall) if tall else float("nan"),
        "by_height": bands,
        "found_mean_ned": float(np.mean(read)) if read else float("nan"),
        "found_exact": sum(ned == 1.0 for ned in read),
        "ms_per_photo": 1000 * seconds / len(photos),
    }


def reader_agreement(rows: list[dict[str, Any]], filters: dict) -> dict[str, Any] | None:
    """The planner's gates against the independent reader's on the same candidates: those every other gate of the
    task keeps, each judged by the `ocr_*` gates alone and by the `reader_*` gates alone (the product's own
    filters.gate on each subset). None where no candidate carries the reader's scores (Tesseract not installed)."""
    from datagen.filters import gate
    from datagen.scores import SCORES

    gates = {who: {k: v for k, v in filters.items() if k.startswith(prefix)} for who, prefix in READERS.items()}
    others = {k: v for k, v in filters.items() if not k.startswith(tuple(READERS.values()))}

    def keeps(scores: dict[str, float], subset: dict) -> bool:
        return gate(scores, subset, [name for name in SCORES if name in subset]) == ""

    tally: Counter[str] = Counter()
    disagreements = []
    for row in rows:
        scores = {k: row[SCORE_PREFIX + k] for k in SCORES if row.get(SCORE_PREFIX + k) is not None}
        if not any(k.startswith(READERS["reader"]) for k in scores) or not keeps(scores, others):
            continue
        planner, reader = keeps(scores, gates["planner"]), keeps(scores, gates["reader"])
        tally[CELLS[planner, reader]] += 1
        if planner != reader:
            params = json.loads(row["params"])
            disagreements.append(
                {
                    "photo": Path(json.loads(row["source"])["path"]).stem,
                    "kept_by": "planner" if planner else "reader",
                    "asked": params.get("target_text") or "",
                    "old": params.get("line_text") or "",
                    "planner_read": params.get("read_after", ""),
                    "reader_read": params.get("reread_after", ""),
                }
            )
    if not tally:
        return None
    keep = {who: tally["both"] + tally[f"{who}_only"] for who in READERS}
    return {
        "candidates": sum(tally.values()),
        **{cell: tally[cell] for cell in CELLS.values()},
        "planner_keeps": keep["planner"],
        "reader_keeps": keep["reader"],
        "disagreements": disagreements,
    }


def background_change(outputs: list[tuple[dict[str, Any], np.ndarray]], photos: dict[str, Any]) -> dict[str, Any]:
    """Removals against the photos' truth: per candidate, the mean L1 (0-1) of output against input on the
    background around the drawn line (within AROUND line heights of its box, off its letters grown by
    OFF_LETTERS_PX), and of output against the clean plate on those letters."""
    import cv2

    from datagen import glyphs

    background, letters, removal = [], [], Counter()
    for meta, output in outputs:
        photo = photos[Path(meta["source"]["path"]).stem]
        ink = np.abs(photo.image.astype(np.int16) - photo.clean).max(axis=2) > 0
        grow = np.ones((2 * OFF_LETTERS_PX + 1,) * 2, np.uint8)
        on_letters = cv2.dilate(ink.astype(np.uint8), grow) > 0
        reach = max(1, round(AROUND * photo.line.height))
        around = cv2.dilate(glyphs.quad_mask(photo.image.shape, photo.line.quad), np.ones((2 * reach + 1,) * 2)) > 0
        diff_in = np.abs(output.astype(np.float32) - photo.image) / 255
        diff_clean = np.abs(output.astype(np.float32) - photo.clean) / 255
        background.append(float(diff_in[around & ~on_letters].mean()))
        letters.append(float(diff_clean[on_letters].mean()))
        removal[meta["params"].get("removal", "box")] += 1
    return {
        "candidates": len(outputs),
        "removal": dict(removal),
        "background_l1_mean": float(np.mean(background)) if background else None,
        "background_l1_max": max(background, default=None),
        "letters_to_clean_l1_mean": float(np.mean(letters)) if letters else None,
    }


def _edit_run(
    edit: str,
    pipeline: str,
    photos: Path,
    out: Path,
    n: int,
    size: int,
    reader,
    truth: dict[str, Any] | None = None,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One product run of `edit` on the set (with `overrides` on top), and what it kept, rejected and would keep by
    AnyEdit's rule; what each reader's gates keep; for a removal with `truth` (the set's photos by name), the change
    to their background."""
    from datagen import images
    from datagen.models.ocr import normalise
    from datagen.resolve import load_run
    from datagen.runner import execute
    from datagen.shards import RunFolder

    settings = [
        f"prompt.templates.choices.line_modes=[{edit}]",
        "pipeline.keep_rejected=true",
        f"pipeline.image_size={size}",
        *overrides,
    ]
    config = load_run("text", pipeline, out=str(out), n=n, source="images", input=str(photos), overrides=settings)
    started = time.perf_counter()
    summary = execute(config, "generate", workers=0, progress=False)
    wall = time.perf_counter() - started
    if summary.failed or summary.written.failed:
        raise RuntimeError(f"the benchmark run of {edit} failed in {out}")
    run = RunFolder(out)
    written = [shard.stats for shard in run.committed(phase="write")]
    looked = Counter()
    for stats in written:
        looked.update(stats["reasons"])
    rows = [row for row in run.rows() if row["reason"] not in looked]  # the photos with a legible line
    readers = reader_agreement(rows, config.task.filters)
    samples = {row["key"] for row in rows}
    kept = [row for row in rows if row["status"] == "kept"]
    reasons = Counter(row["reason"] for row in rows if row["status"] != "kept" and row["reason"] != "outranked")
    stages: Counter[str] = Counter({"write (OCR look, writer)": sum(stats["seconds"] for stats in written)})
    for shard in run.committed():
        stages.update(shard.stats["timings"])
    # AnyEdit's rule on every candidate that draws a string: the whole output read, the new string anywhere in it
    outputs: list[tuple[dict[str, Any], np.ndarray]] = []
    for shard in run.committed():
        for sample in run.samples(shard):
            outputs.append((sample.meta, images.decode_image(sample.images["output"][1], 1 << 26)))
        for candidate in run.rejected(shard):
            outputs.append((candidate.meta, images.decode_image(candidate.images["output"][1], 1 << 26)))
    for meta, _ in outputs:
        for field in ("params", "source"):
            meta[field] = json.loads(meta[field]) if isinstance(meta[field], str) else meta[field]
    drawing = [(meta, image) for meta, image in outputs if meta["params"].get("target_text")]
    whole = reader.read_batch([image for _, image in drawing]) if drawing else []
    anyedit = {"candidates": len(drawing), "kept": 0, "kept_but_gated": Counter()}
    for (meta, _), lines in zip(drawing, whole, strict=True):
        if normalise(meta["params"]["target_text"]) in normalise(" ".join(line.text for line in lines)):
            anyedit["kept"] += 1
            if meta.get("status", "kept") != "kept" and meta.get("reason") != "outranked":
                anyedit["kept_but_gated"][meta["reason"]] += 1
    scored = {
        name: [row[f"{SCORE_PREFIX}{name}"] for row in kept if row[f"{SCORE_PREFIX}{name}"] is not None]
        for name in ("ocr_target_ned", "ocr_exact", "ocr_old_gone", "outside_l1")
    }
    return {
        "photos": n,
        "no_legible_line": sum(looked.values()),
        "rejected_at_write": dict(looked.most_common()),
        "legible": len(samples),
        "kept": len(kept),
        "yield": len(kept) / len(samples) if samples else float("nan"),
        "rejected_by_reason": dict(reasons.most_common()),
        "kept_mean_ocr_target_ned": float(np.mean(scored["ocr_target_ned"])) if scored["ocr_target_ned"] else None,
        "kept_exact_rate": float(np.mean(scored["ocr_exact"])) if scored["ocr_exact"] else None,
        "kept_old_gone_rate": float(np.mean([v >= 0.5 for v in scored["ocr_old_gone"]]))
        if scored["ocr_old_gone"]
        else None,
        "kept_outside_l1_max": max(scored["outside_l1"], default=None),
        "ms_per_sample": {stage: 1000 * s / n for stage, s in sorted(stages.items())},
        "seconds": wall,
        "anyedit_rule": {**anyedit, "kept_but_gated": dict(anyedit["kept_but_gated"])},
        "readers": readers,
        **({"background": background_change(outputs, truth)} if truth is not None and edit == "remove" else {}),
    }


def bench_text(
    pipeline: str = "local",
    n: int | None = None,
    seed: int | None = None,
    size: int = 512,
    where: str | None = None,
    which: str = "text",
    keep: bool = False,
) -> dict[str, Any]:
    """The text task on `which` of SETS (its default size and seed unless given): detection, one product run per
    edit, and a removal run with whole-box removal as the baseline of the background change. `keep`: the photos and
    runs stay where they were made (`runs` in the result), to look at with `datagen show` or `datagen review`."""
    from datagen import models
    from datagen.resolve import load_pipeline

    spec = load_pipeline(pipeline).roles.get("ocr")
    if spec is None:
        from datagen.errors import ConfigError

        raise ConfigError(f"pipeline {pipeline!r} has no `ocr` role: the text benchmark reads with it")
    if which not in SETS:
        from datagen.errors import ConfigError

        raise ConfigError(f"no photo set {which!r}; known: {', '.join(SETS)}")
    n = SETS[which][0] if n is None else n
    seed = SETS[which][1] if seed is None else seed
    reader = models.build("ocr", spec)
    reader.load()
    root = Path(tempfile.mkdtemp(prefix="datagen-bench-", dir=where))
    try:
        photos = write_set(root / "photos", n, seed, size, which)
        truth = {photo.name: photo for photo in photos}
        result = {
            "bench": "text",
            "set": which,
            "pipeline": pipeline,
            "n": n,
            "seed": seed,
            "size": size,
            "detection": detection(reader, photos),
        }
        for edit in EDITS:
            result[edit] = _edit_run(edit, pipeline, root / "photos", root / edit, n, size, reader, truth)
        box = _edit_run(
            "remove",
            pipeline,
            root / "photos",
            root / "remove-box",
            n,
            size,
            reader,
            truth,
            ("generator.args.remove_ink=false",),
        )
        result["remove"]["background_baseline"] = {"remove_ink": False, "kept": box["kept"], **box["background"]}
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if keep:
        result["runs"] = str(root)
    return result


def print_text(r: dict[str, Any]) -> None:
    d = r["detection"]
    print(
        f"text on photos: {r['n']} photos of the {r['set']} set (seed {r['seed']}, {r['size']} px), "
        f"pipeline {r['pipeline']}"
    )
    bands = ", ".join(f"{band} {v['recall']:.0%} of {v['lines']}" for band, v in d["by_height"].items())
    print(
        f"detection: {d['recall']:.0%} of lines found ({d['recall_16px_and_up']:.0%} of those >= 16 px); by "
        f"height {bands}; found lines read at mean NED {d['found_mean_ned']:.2f}, {d['found_exact']} exactly; "
        f"{d['ms_per_photo']:.0f} ms/photo"
    )
    rows = []
    for edit in EDITS:
        e = r[edit]
        any_rule = e["anyedit_rule"]
        rows.append(
            [
                edit,
                f"{e['kept']}/{e['legible']} ({e['yield']:.0%})",
                ", ".join(f"{k} {v}" for k, v in e["rejected_by_reason"].items()) or "-",
                "-" if e["kept_mean_ocr_target_ned"] is None else f"{e['kept_mean_ocr_target_ned']:.3f}",
                "-" if e["kept_exact_rate"] is None else f"{e['kept_exact_rate']:.0%}",
                "-" if e["kept_old_gone_rate"] is None else f"{e['kept_old_gone_rate']:.0%}",
                f"{e['kept_outside_l1_max']:.4f}" if e["kept_outside_l1_max"] is not None else "-",
                "-"
                if not any_rule["candidates"]
                else f"{any_rule['kept']}/{any_rule['candidates']}; gated "
                + (", ".join(f"{k} {v}" for k, v in any_rule["kept_but_gated"].items()) or "none"),
            ]
        )
    print(
        table(
            rows,
            [
                "edit",
                "kept / legible",
                "rejected (reason n)",
                "kept NED",
                "kept exact",
                "old gone",
                "outside L1 max",
                "AnyEdit rule keeps; of those the gates reject",
            ],
        )
    )
    at_write = ", ".join(f"{k} {v}" for k, v in r[EDITS[0]]["rejected_at_write"].items()) or "none"
    print(f"photos without a line to edit (the write phase's look, the same for every edit): {at_write}")
    for edit in EDITS:
        readers = r[edit]["readers"]
        if readers is None:
            print(f"{edit}: readers: no candidate read by the reader role (Tesseract: `make install-ocr`)")
            continue
        print(
            f"{edit}: readers, on the {readers['candidates']} candidates every other gate keeps: the planner's OCR "
            f"keeps {readers['planner_keeps']}, the independent reader {readers['reader_keeps']}; both "
            f"{readers['both']}, planner only {readers['planner_only']}, reader only {readers['reader_only']}, "
            f"neither {readers['neither']}"
        )
        for d in readers["disagreements"]:
            print(
                f"  {d['photo']}: kept by the {d['kept_by']} alone; asked {d['asked']!r} (was {d['old']!r}); "
                f"planner read {d['planner_read']!r}, reader read {d['reader_read']!r}"
            )
    remove = r["remove"]
    if "background" in remove:
        ink, box = remove["background"], remove["background_baseline"]
        print(
            f"remove: the background around the line, off its letters, L1 to the input: mean "
            f"{_f(ink['background_l1_mean'])} (max {_f(ink['background_l1_max'])}) over {ink['candidates']} "
            f"candidates {ink['removal']}, against whole-box removal {_f(box['background_l1_mean'])} (max "
            f"{_f(box['background_l1_max'])}) in the same run; on the letters, L1 to the clean plate "
            f"{_f(ink['letters_to_clean_l1_mean'])} against {_f(box['letters_to_clean_l1_mean'])}"
        )
    for edit in EDITS:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r[edit]["ms_per_sample"].items())
        print(f"{edit}: ms per sample by stage: {stages}")
    if "runs" in r:
        print(f"kept: the photos and runs in {r['runs']} (photos/, {'/, '.join(EDITS)}/, remove-box/)")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", default="local")
    parser.add_argument(
        "--set",
        dest="photo_set",
        choices=sorted(SETS),
        default="text",
        help="text: lines drawn onto photos in datagen's fonts; signs: the held-out signs in fonts it does not ship",
    )
    parser.add_argument("--n", type=positive, help="photos in the set (default: text 28, signs 12)")
    parser.add_argument("--seed", type=int, help="which photos (the set's seed; default: text 0, signs 1)")
    parser.add_argument("--size", type=positive, default=512, help="side of the square photos and the pipeline's")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp", metavar="DIR", help="where the benchmark writes (default: the system's temp dir)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the photos and the runs (one folder an edit) to look at"
    )
