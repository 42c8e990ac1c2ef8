"""Gates measured against labels: the statistics against independent computations, `datagen calibrate` on labels
whose truth the test knows, the oracle on a scene run, thresholds applied to a run and to an export, the card's
account of the data's quality, and Label Studio both ways."""

from __future__ import annotations

import json
import math
import re
import shutil
import xml.etree.ElementTree as ElementTree

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import manifest_rows, run_inline

from datagen import calibrate as cal
from datagen.errors import ConfigError
from datagen.labels import Label, read_labels, write_all


def _brute_auc(scores, good) -> float:
    pos = [s for s, g in zip(scores, good, strict=True) if g]
    neg = [s for s, g in zip(scores, good, strict=True) if not g]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_the_statistics_agree_with_independent_computations():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=80), 1)  # ties on purpose
    good = scores + rng.normal(scale=1.0, size=80) > 0
    assert cal.auc(scores, good) == pytest.approx(_brute_auc(scores, good))
    assert cal.auc(-scores, good) == pytest.approx(1 - _brute_auc(scores, good))
    x, y = rng.normal(size=50).round(1), rng.normal(size=50).round(1)
    assert cal.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    # Cohen's kappa on a textbook table: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no: po 0.7, pe 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cal.cohen_kappa(a, b) == pytest.approx(0.4)
    low, high = cal.wilson(8, 10)  # Wilson's interval of 8/10: 0.4902 to 0.9433
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    values, labels = np.array([0.1, 0.2, 0.3, 0.4, 0.5]), np.array([True, True, False, True, False])
    best = cal.threshold_for(values, labels, higher=False, precision=0.9)  # keep <= t: 0.2 keeps two, both good
    assert best == {"threshold": 0.2, "kept": 2, "precision": 1.0, "recall": 2 / 3}


def test_calibrate_measures_what_the_labels_say(rejects_kept_run, tmp_path):
    """Labels the test makes up: good where gt_l1 is under its median, one in four flipped for a second annotator.
    calibrate's AUC, precision at the run's gate, suggested threshold, agreement and precision of the kept pairs are
    the ones computed here from the manifests."""
    out = tmp_path / "run"
    shutil.copytree(rejects_kept_run, out)
    rows = [r for r in manifest_rows(out) if r["score_gt_l1"] is not None and not math.isnan(r["score_gt_l1"])]
    median = float(np.median([r["score_gt_l1"] for r in rows]))
    truth = {(r["key"], r["candidate"]): r["score_gt_l1"] < median for r in rows}
    first = [Label(k, c, "remove", "good" if g else "bad", "ann-a") for (k, c), g in truth.items()]
    flipped = {item for n, item in enumerate(sorted(truth)) if n % 4 == 0}
    second = [
        Label(k, c, "remove", "good" if truth[(k, c)] != ((k, c) in flipped) else "bad", "ann-b") for k, c in truth
    ]
    write_all(out, first, "review", "ann-a")
    write_all(out, second, "label-studio", "ann-b")
    result = cal.calibrate(str(out), precision=0.9)
    measured = result["tasks"]["remove"]
    verdicts = {item: g for item, g in truth.items() if item not in flipped}  # the annotators' majority: ties drop out
    assert measured["labelled"] == len(verdicts)
    items = sorted(verdicts)
    by_item = {(r["key"], r["candidate"]): r for r in rows}
    gt = np.array([by_item[i]["score_gt_l1"] for i in items])
    good = np.array([verdicts[i] for i in items])
    row = measured["scores"]["gt_l1"]
    assert row["direction"] == "lower" and row["auc"] == pytest.approx(_brute_auc(-gt, good), abs=1e-6)
    assert row["auc"] == 1.0 and row["auc_interval"] == [1.0, 1.0]  # the labels are the score's own order
    gate = json.loads((out / "run.json").read_text())["runs"]["remove"]["config"]["task"]["filters"]["gt_l1"]["max"]
    assert row["gate"] == {"max": gate}
    kept = gt <= gate
    assert row["at_threshold"]["precision"] == pytest.approx((kept & good).sum() / kept.sum(), abs=1e-6)
    assert row["at_threshold"]["good_dropped"] == pytest.approx((~kept & good).sum() / good.sum(), abs=1e-6)
    brute = max(t for t in gt if good[gt <= t].mean() >= 0.9)  # the loosest max keeping at least 90% good ones
    assert row["suggested"]["threshold"] == pytest.approx(brute, abs=1e-6)
    (pair,) = result["agreement"]["pairs"]
    a = [truth[i] for i in sorted(truth)]
    b = [truth[i] != (i in flipped) for i in sorted(truth)]
    assert pair["kappa"] == pytest.approx(cal.cohen_kappa(a, b), abs=1e-6) and pair["items"] == len(truth)
    kept_items = [i for i in items if by_item[i]["status"] == "kept"]
    k = sum(verdicts[i] for i in kept_items)
    assert measured["kept_pairs"]["precision"] == pytest.approx(k / len(kept_items), abs=1e-6)
    assert measured["kept_pairs"]["interval"] == pytest.approx(list(cal.wilson(k, len(kept_items))), abs=1e-6)
    thresholds = (out / "thresholds.yaml").read_text()
    assert f"max: {round(brute, 6)}" in thresholds and json.loads((out / "calibration.json").read_text())["labels"]


def test_the_oracle_labels_every_candidate_and_measures_the_other_scores(rejects_kept_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(rejects_kept_run, out)
    with pytest.raises(ConfigError, match="no labels"):
        cal.calibrate(str(out))
    result = cal.calibrate(str(out), oracle=True)
    labels = read_labels(out, sources=("oracle",))
    assert len(labels) == sum(1 for r in manifest_rows(out) if r["status"] != "error") == result["labels"]
    limits = {"gt_l1": 0.025, "gt_local_l1": 0.06, "gt_objects_l1": 0.002}  # tasks/remove.yaml's oracle
    for label in labels:
        row = next(r for r in manifest_rows(out) if (r["key"], r["candidate"]) == label.item)
        assert (label.label == "good") == all(row[f"score_{n}"] <= v for n, v in limits.items())
    measured = result["tasks"]["remove"]["scores"]
    varying = {
        name
        for name in ("mask_area", "inside_change", "change", "outside_l1")
        if len({r[f"score_{name}"] for r in manifest_rows(out)}) > 1
    }
    assert varying and varying <= set(measured)  # every score that varies is measured against the oracle
    assert (out / "calibration-oracle.json").is_file() and (out / "thresholds-oracle.yaml").is_file()
    said = run_inline("calibrate", str(out), "--oracle").stdout  # the command's own lines, NaN-free
    assert f"remove: {len(labels)} labelled" in said and "kept pairs: precision" in said and "gt_local_l1" in said


def test_thresholds_drop_exactly_the_failing_pairs_and_the_card_says_how_good(rejects_kept_run, tmp_path):
    from datagen.export import export

    out = tmp_path / "run"
    shutil.copytree(rejects_kept_run, out)
    card_before = (tmp_path / "before") / "README.md"
    export(str(out), str(tmp_path / "before"), "hf-parquet", progress=False)
    before = card_before.read_text()
    assert "This run itself is unmeasured" in before
    assert "| remove | local | people | 93.3% of 30 [78.7%, 98.2%] | 26.5% |" in before  # tasks/remove.yaml's record
    kept = [r for r in manifest_rows(out) if r["status"] == "kept"]
    limit = float(np.median([r["score_gt_l1"] for r in kept]))
    (tmp_path / "t.yaml").write_text(f"remove:\n  filters:\n    gt_l1: {{max: {limit}}}\n")
    counts = export(
        str(out), str(tmp_path / "strict"), "hf-parquet", progress=False, thresholds=str(tmp_path / "t.yaml")
    )
    passing = {r["key"] for r in kept if r["score_gt_l1"] <= limit}
    exported = set()
    for path in (tmp_path / "strict" / "data" / "train").glob("*.parquet"):
        exported |= {json.loads(j)["key"] for j in pq.read_table(path, columns=["json"]).column("json").to_pylist()}
    assert exported == passing and counts["thresholds"]["dropped"] == {"remove": len(kept) - len(passing)}
    cal.calibrate(str(out), oracle=True)
    card = tmp_path / "strict2" / "README.md"
    export(str(out), str(tmp_path / "strict2"), "hf-parquet", progress=False, thresholds=str(tmp_path / "t.yaml"))
    text = card.read_text()
    result = json.loads((out / "calibration-oracle.json").read_text())["kept_pairs"]
    assert "## How good the data is" in text and "exact ground truth (oracle)" in text
    assert f"{100 * result['precision']:.1f}% of {result['labelled']}" in text and "t.yaml" in text


def test_a_run_with_thresholds_applies_and_records_them(tmp_path):
    (tmp_path / "t.yaml").write_text("remove:\n  filters:\n    gt_l1: {max: 0.001}\n    mask_area: {min: 0.02}\n")
    out = tmp_path / "run"
    proc = run_inline(
        "generate",
        "--task",
        "remove",
        "--n",
        "6",
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
        "--set",
        "pipeline.image_size=64",
        "--thresholds",
        str(tmp_path / "t.yaml"),
    )
    assert "gt_l1_high" in proc.stdout  # the file's bound, far stricter than the task file's 0.06
    config = json.loads((out / "run.json").read_text())["runs"]["remove"]["config"]
    assert config["run"]["thresholds"] == str(tmp_path / "t.yaml")
    filters = config["task"]["filters"]
    assert filters["gt_l1"]["max"] == 0.001 and filters["mask_area"] == {
        **filters["mask_area"],
        "min": 0.02,
        "max": 0.5,
    }
    assert all(r["status"] != "kept" or r["score_gt_l1"] <= 0.001 for r in manifest_rows(out))
    (tmp_path / "bad.yaml").write_text("remove:\n  filters:\n    nonsense: {max: 1}\n")
    proc = run_inline(
        "generate",
        "--task",
        "remove",
        "--n",
        "2",
        "--out",
        str(tmp_path / "r2"),
        "--workers",
        "0",
        "--thresholds",
        str(tmp_path / "bad.yaml"),
        check=False,
    )
    assert proc.returncode == 2 and "filters.nonsense`: unknown score" in proc.stderr


def test_label_studio_round_trip(rejects_kept_run, tmp_path):
    """The tasks file is Label Studio's basic import format (a list of {"data": {...}} whose keys hold every
    variable of the labelling config, the images where the paths say); an export in Label Studio's JSON format of
    annotated tasks reads back into the same labels."""
    from datagen.export import export
    from datagen.label_studio import import_labels

    out = tmp_path / "run"
    shutil.copytree(rejects_kept_run, out)
    dest = tmp_path / "ls"
    counts = export(str(out), str(dest), "label-studio", progress=False)
    tasks = json.loads((dest / "tasks.json").read_text())
    config = ElementTree.fromstring((dest / "label_config.xml").read_text())
    variables = {name for e in config.iter() for value in e.attrib.values() for name in re.findall(r"\$(\w+)", value)}
    assert variables == {"task", "instruction", "input", "output", "mask"}
    assert [e.get("value") for e in config.iter("Image")] == ["$input", "$output", "$mask"]
    names = {e.get("name") for e in config.iter() if e.tag in ("Image", "Choices")}
    assert all(e.get("toName") in names for e in config.iter("Choices"))
    rows = manifest_rows(out)
    assert len(tasks) == counts["tasks"] == sum(1 for r in rows if r["status"] != "error")
    for task in tasks:
        assert set(task) == {"data"} and {"input", "output", "mask", "instruction", "key", "candidate"} <= set(
            task["data"]
        )
        assert all((dest / task["data"][m]).is_file() for m in ("input", "output", "mask"))
    verdicts = ["good", "bad", "unsure"]
    exported = []
    for n, task in enumerate(tasks):  # what Label Studio's JSON export holds: tasks with their annotations
        result = [
            {"from_name": "verdict", "to_name": "output", "type": "choices", "value": {"choices": [verdicts[n % 3]]}}
        ]
        if n % 2:
            result.append(
                {
                    "from_name": "aspects",
                    "to_name": "output",
                    "type": "choices",
                    "value": {"choices": ["follows", "looks_right"]},
                }
            )
        annotations = [
            {
                "id": n,
                "result": result,
                "completed_by": {"id": 7, "email": "Ann.Lee@example.com"},
                "was_cancelled": False,
            }
        ]
        if n % 5 == 0:
            annotations.append({"id": 1000 + n, "result": result, "completed_by": 12, "was_cancelled": True})
        exported.append({"id": n + 1, "data": task["data"], "annotations": annotations, "predictions": []})
    (tmp_path / "export.json").write_text(json.dumps(exported))
    assert import_labels(str(tmp_path / "export.json"), str(out)) == {"ann-lee": len(tasks)}
    labels = {label.item: label for label in read_labels(out)}
    for n, task in enumerate(tasks):
        label = labels[(task["data"]["key"], task["data"]["candidate"])]
        assert label.label == verdicts[n % 3] and label.annotator == "ann-lee" and label.source == "label-studio"
        assert label.aspects == ({"follows": True, "looks_right": True} if n % 2 else {})
    (tmp_path / "other.json").write_text(json.dumps([{"data": {"image": "x.png"}, "annotations": []}]))
    with pytest.raises(ConfigError, match="task 0 has no data.key and data.candidate"):
        import_labels(str(tmp_path / "other.json"), str(out))
