"""The report's Calibration section, where `datagen calibrate` has measured the run: per task and per calibrated
score, ROC and precision-recall curves against the labels (people's, and the oracle's) with the run's and the
suggested thresholds marked; the judge's agreement; and the candidates whose label and the gates disagree, as
pairs."""

from __future__ import annotations

import json
from typing import Any

from datagen.report.plots import plot_calibration
from datagen.report.tally import thumbnails


def calibration(run, shards, files: dict[str, bytes], warnings: list[str]) -> list[dict[str, Any]]:
    """One entry per calibration found (people, oracle): its summary, figures (added to `files`) and disagreements
    (their thumbnails added to `files`)."""
    from datagen.calibrate import outputs

    found = []
    for oracle in (False, True):
        name = outputs(oracle)[0]
        if not run.folder.exists(name):
            continue
        result = json.loads(run.folder.read_text(name))
        source = "oracle" if oracle else "people"
        entry: dict[str, Any] = {"source": source, "result": result, "figures": [], "disagreements": []}
        for task, measured in sorted(result["tasks"].items()):
            curves = {score: row for score, row in measured["scores"].items() if row.get("curve")}
            if curves:
                path = f"plots/calibration-{source}-{task}.png"
                files[path] = plot_calibration(task, source, curves)
                entry["figures"].append((task, path))
            for item in measured.get("disagreements") or []:
                entry["disagreements"].append({**item, "task": task, "thumbs": None})
        files.update(thumbnails(run, entry["disagreements"], warnings, {s.name for s in shards if s.keeps_rejected}))
        found.append(entry)
    return found
