"""`datagen report CURATED`: one static page for a curated set (datagen/curate.py) — the funnel (inputs, each
gate, near-duplicates, kept), each score's histogram with its gate, and a gallery of dropped inputs by reason.

Everything from the data is escaped here (no script: the page is static); thumbnails are small JPEGs beside it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import numpy as np

from datagen.report.page import _asset, _card, _e, _table
from datagen.report.plots import _plain, _png, _pyplot
from datagen.scores import CURATION_SCORES, SCORE_PREFIX

PER_REASON = 8
"""Dropped inputs shown per reason (the first in committed order)."""
THUMB_EDGE = 160


def _histogram(name: str, values: list[float], gate: dict[str, Any]) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 2.2))
    finite = [v for v in values if np.isfinite(v)]
    ax.hist(finite, bins=30, color="#8da9c4")
    for bound in ("min", "max"):
        if gate.get(bound) is not None:
            ax.axvline(gate[bound], color="#d9534f", linestyle="--", linewidth=1)
    ax.set_title(_plain(f"{name} ({len(finite)} inputs)"))
    return _png(fig)


def _thumb(image: np.ndarray) -> bytes:
    import cv2

    from datagen import images

    scale = THUMB_EDGE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(
            image,
            (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    return images.encode(image, "jpg", 85)


def build_curation_report(curated: str, dest: str | None = None) -> str:
    """Write CURATED/report/index.html (or DEST/index.html), its plots and thumbnails; returns where index.html is."""
    from datagen.shards.curated import CURATE_JSON, DUPLICATES, committed_inputs
    from datagen.shards.layout import read_parquet
    from datagen.sources.curated import CuratedSource
    from datagen.storage import Folder

    folder = Folder(curated)
    settings = json.loads(folder.read_text(CURATE_JSON))
    source = CuratedSource(curated, 64)
    rows = [row for table in committed_inputs(folder) for row in table.to_pylist()]
    copies = {row["key"]: row["duplicate_of"] for row in read_parquet(folder, DUPLICATES).to_pylist()}
    reasons: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        reason = row["reason"] or ("duplicate" if row["key"] in copies else "")
        if reason:
            reasons[reason].append(row)
    kept = len(rows) - sum(len(v) for v in reasons.values())
    files: dict[str, bytes] = {}
    for name in CURATION_SCORES:
        values = [row[f"{SCORE_PREFIX}{name}"] for row in rows if row[f"{SCORE_PREFIX}{name}"] is not None]
        if values:
            files[f"plots/{name}.png"] = _histogram(name, values, settings["gates"].get(name, {}))
    cards = [_card("inputs", str(len(rows))), _card("kept", str(kept), f"{kept / max(1, len(rows)):.0%} of inputs")]
    funnel = [
        f"<tr><td>{_e(reason)}</td><td class='num'>{len(dropped)}</td></tr>"
        for reason, dropped in sorted(reasons.items(), key=lambda item: -len(item[1]))
    ]
    funnel.append(f"<tr><td><b>kept</b></td><td class='num'>{kept}</td></tr>")
    gallery = []
    for reason, dropped in sorted(reasons.items()):
        figures = []
        for row in dropped[:PER_REASON]:
            ref = json.loads(row["ref"])
            try:
                files[f"thumbs/{row['key']}.jpg"] = _thumb(source.inner.original(ref, 50_000_000))
                picture = f'<img src="thumbs/{_e(row["key"])}.jpg" alt="{_e(row["key"])}">'
            except Exception as e:  # an input that cannot be decoded is shown as its reason
                picture = f'<div class="placeholder">{_e(type(e).__name__)}</div>'
            scores = ", ".join(
                f"{n} {row[f'{SCORE_PREFIX}{n}']:.3g}"
                for n in CURATION_SCORES
                if row[f"{SCORE_PREFIX}{n}"] is not None
            )
            where = ref.get("path") or f"{ref.get('tar', '')}:{ref.get('key', '')}"
            copy = f"<br>copy of {_e(copies[row['key']])}" if row["key"] in copies else ""
            figures.append(
                f'<figure class="thumb">{picture}<figcaption>{_e(row["key"])}<br>{_e(where)}<br>'
                f"{_e(scores)}{copy}</figcaption></figure>"
            )
        gallery.append(f"<h3>{_e(reason)} ({len(dropped)})</h3><div class='thumbs'>{''.join(figures)}</div>")
    plots = "".join(f'<img src="{_e(name)}" alt="{_e(name)}">' for name in sorted(files) if name.startswith("plots/"))
    built = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>datagen curation · {_e(curated)}</title><style>{_asset("report.css")}</style></head><body>
<header><div class="wrap"><h1>datagen curation · {_e(curated)}</h1>
<div class="about">from --source {_e(settings["source"])} --input {_e(settings["input"])}, pipeline
{_e(settings["pipeline"])}, built {_e(built)}</div></div></header><main class="wrap">
<section id="funnel"><h2>Funnel</h2><div class="cards">{"".join(cards)}</div>
{_table(("dropped by", "inputs"), funnel, "funnel")}</section>
<section id="scores"><h2>Scores</h2><p class="hint">each score of every input; dashed: the gate</p>
<div class="grid">{plots}</div></section>
<section id="dropped"><h2>Dropped inputs</h2><p class="hint">the first {PER_REASON} of each reason</p>
{"".join(gallery)}</section></main></body></html>
"""
    target = Folder(dest or f"{curated.rstrip('/')}/report")
    target.makedirs()
    for name, data in sorted(files.items()):
        sub, _, leaf = name.rpartition("/")
        where = target.sub(sub) if sub else target
        where.makedirs()
        where.write_atomic(leaf, data)
    target.write_atomic("index.html", page.encode())
    return target.url("index.html") if "://" in str(target) else target.at("index.html")
