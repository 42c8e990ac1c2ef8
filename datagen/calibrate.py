"""`datagen calibrate OUT`: every gate and the judge measured against labels (datagen/labels.py), per task.

For each score: ROC AUC (good candidates ranked above bad ones in the gate's direction) with a bootstrap interval;
at the run's threshold, the precision of what the gate keeps and the share of good candidates it drops; and the
threshold that reaches `--precision P` with the most candidates kept. For the judge: accuracy and Cohen's kappa of
its verdict, Spearman of its overall score. Where annotators overlap, their kappa: the ceiling a gate can be held
to. For the pipeline as configured: the precision of the pairs it kept, with a Wilson interval.

Labels come from people (`datagen review`, Label Studio) or, with `--oracle`, from exact ground truth: a task file's
`oracle:` limits on the scores only a scene can give (gt_l1, gt_objects_l1) label every candidate that has them,
and every other score and the judge are measured against those labels.

Writes OUT/calibration.json and OUT/thresholds.yaml (the suggested thresholds in the task files' own form, for
`generate --thresholds` and `export --thresholds`).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from datagen.errors import ConfigError
from datagen.labels import Label, read_labels, write_all
from datagen.scores import SCORE_PREFIX, SCORES

CALIBRATION = "calibration.json"
THRESHOLDS = "thresholds.yaml"
"""OUT/calibration.json and OUT/thresholds.yaml: measured against people's labels; with --oracle,
calibration-oracle.json and thresholds-oracle.yaml (the card shows both)."""


def outputs(oracle: bool) -> tuple[str, str]:
    """The calibration's and the thresholds' file names in OUT."""
    if not oracle:
        return CALIBRATION, THRESHOLDS
    return CALIBRATION.replace(".json", "-oracle.json"), THRESHOLDS.replace(".yaml", "-oracle.yaml")


BOOTSTRAP = 1000
"""Resamples of the bootstrap intervals (95%)."""
JUDGE_PASS = 5.0
"""The judge's verdict where no judge gate is set: judge_overall at least half its 0-10 scale."""
ORACLE = "oracle"
DISAGREEMENTS = 24
"""Candidates per task whose label and the gates disagree, kept for the report: kept pairs labelled bad, and good
candidates a gate rejected (not those only outranked by a sibling)."""


# ------------------------------------------------------------------------------------------------ statistics


def auc(scores: Sequence[float], good: Sequence[bool]) -> float:
    """ROC AUC of `scores` for telling good (higher) from bad: the Mann-Whitney statistic, ties counting half."""
    values, labels = np.asarray(scores, np.float64), np.asarray(good, bool)
    pos, neg = values[labels], values[~labels]
    if not len(pos) or not len(neg):
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]), kind="stable")
    ranks = np.empty(len(order), np.float64)
    merged = np.concatenate([pos, neg])[order]
    start = 0
    for end in range(1, len(merged) + 1):  # average ranks over ties
        if end == len(merged) or merged[end] != merged[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def bootstrap(statistic, arrays: Sequence[np.ndarray], seed: int, n: int = BOOTSTRAP) -> tuple[float, float]:
    """The 95% percentile interval of `statistic(*arrays)` over `n` resamples of the rows (NaN ones skipped)."""
    rng = np.random.default_rng(seed)
    size = len(arrays[0])
    values = []
    for _ in range(n):
        pick = rng.integers(0, size, size)
        value = statistic(*(a[pick] for a in arrays))
        if not math.isnan(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion k/n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa of two raters' labels of the same items."""
    if not len(a):
        return math.nan
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (len(a) * len(a))
    return 1.0 if expected == 1 else float((observed - expected) / (1 - expected))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(values: np.ndarray) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        out = np.empty(len(values), np.float64)
        sorted_values = values[order]
        start = 0
        for end in range(1, len(values) + 1):
            if end == len(values) or sorted_values[end] != sorted_values[start]:
                out[order[start:end]] = (start + end + 1) / 2
                start = end
        return out

    rx, ry = ranks(np.asarray(x, np.float64)), ranks(np.asarray(y, np.float64))
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def passes(value: float, spec: Mapping[str, Any]) -> bool:
    """Whether a score passes a filter (a missing or NaN score passes: its gate is skipped, as filters.gate does)."""
    if value is None or math.isnan(value):
        return True
    low, high = spec.get("min"), spec.get("max")
    return (low is None or value >= low) and (high is None or value <= high)


def threshold_for(values: np.ndarray, good: np.ndarray, higher: bool, precision: float) -> dict[str, Any] | None:
    """The threshold on `values` (kept: >= it when `higher`, else <= it) whose kept candidates are at least
    `precision` good with the most of them kept; None where no threshold reaches it."""
    best = None
    for t in np.unique(values):
        kept = values >= t if higher else values <= t
        n = int(kept.sum())
        hits = int((kept & good).sum())
        if n and hits / n >= precision and (best is None or n > best["kept"]):
            best = {"threshold": float(t), "kept": n, "precision": hits / n, "recall": hits / max(1, int(good.sum()))}
    return best


# ------------------------------------------------------------------------------------------------ the run


def candidates(run, tasks: Sequence[str] | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Every candidate of the run's committed shards: (key, candidate) -> {task, status, reason, scores}."""
    columns = ("key", "task", "candidate", "status", "reason", *(f"{SCORE_PREFIX}{name}" for name in SCORES))
    rows = {}
    for shard in run.committed():
        table = run.manifest(shard.name, columns)
        for row in table.to_pylist():
            if tasks and row["task"] not in tasks:
                continue
            scores = {
                name: float(row[f"{SCORE_PREFIX}{name}"])
                for name in SCORES
                if row.get(f"{SCORE_PREFIX}{name}") is not None and not math.isnan(row[f"{SCORE_PREFIX}{name}"])
            }
            rows[(row["key"], int(row["candidate"] or 0))] = {
                "shard": shard.name,
                "task": row["task"],
                "status": row["status"],
                "reason": row["reason"] or "",
                "scores": scores,
            }
    return rows


def task_configs(run) -> dict[str, dict[str, Any]]:
    return {task: entry["config"] for task, entry in run.record()["runs"].items()}


def oracle_labels(run, limits: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[Label]:
    """A label for every candidate whose task has oracle limits and that has at least one score they name: good
    when it passes every limit it has a score for (a run made before a score existed is judged on the others)."""
    labels = []
    for (key, number), row in sorted(candidates(run).items()):
        spec = {name: gate for name, gate in (limits.get(row["task"]) or {}).items() if name in row["scores"]}
        if not spec:
            continue
        good = all(passes(row["scores"][name], gate) for name, gate in spec.items())
        labels.append(Label(key, number, row["task"], "good" if good else "bad", ORACLE, source=ORACLE))
    return labels


def task_oracles(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each task's oracle limits: as the run recorded its task file, else (the task file stated none when the run
    was made) from the task file in tasks/ now."""
    from datagen.config import TaskSpec, find_config, read_yaml, validate

    limits = {}
    for task, config in configs.items():
        recorded = config["task"].get("oracle")
        if not recorded:
            try:
                path = find_config("tasks", task)
            except ConfigError:
                continue
            spec = validate(TaskSpec, read_yaml(path), str(path))
            recorded = {name: gate.model_dump(exclude_defaults=True) for name, gate in spec.oracle.items()}
        limits[task] = dict(recorded)
    return limits


def consensus(labels: Sequence[Label]) -> dict[tuple[str, int], bool]:
    """Each candidate's verdict: the majority of its good/bad labels (unsure and ties give none)."""
    votes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for label in labels:
        if label.label != "unsure":
            votes[label.item][label.label] += 1
    return {item: v["good"] > v["bad"] for item, v in votes.items() if v["good"] != v["bad"]}


def _gate_row(name, values, good, spec, precision, seed) -> dict[str, Any]:
    one_sided = spec and (spec.get("min") is None) != (spec.get("max") is None)
    higher = spec.get("max") is None if one_sided else auc(values, good) >= 0.5  # a two-sided gate: as ranked
    signed = values if higher else -values
    row: dict[str, Any] = {
        "direction": "higher" if higher else "lower",
        "gate": {k: spec[k] for k in ("min", "max") if spec.get(k) is not None} if spec else None,
        "labelled": int(len(values)),
        "good": int(good.sum()),
        "auc": auc(signed, good),
        "auc_interval": bootstrap(auc, [signed, good], seed),
    }
    if spec:
        kept = np.array([passes(v, spec) for v in values])
        row["at_threshold"] = {
            "kept": int(kept.sum()),
            "precision": float((kept & good).sum() / kept.sum()) if kept.any() else math.nan,
            "good_dropped": float((~kept & good).sum() / good.sum()) if good.any() else math.nan,
        }
    row["suggested"] = threshold_for(values, good, higher, precision)
    row["curve"] = curve(values, good, higher)
    return row


CURVE_POINTS = 64
"""Points kept of a score's ROC and precision-recall curves (thresholds at its quantiles)."""


def curve(values: np.ndarray, good: np.ndarray, higher: bool) -> list[list[float]]:
    """[threshold, false-positive rate, true-positive rate (recall), precision] at up to CURVE_POINTS thresholds,
    from keeping everything to keeping only the best: what the report draws."""
    thresholds = np.unique(np.quantile(values, np.linspace(0, 1, CURVE_POINTS)))
    thresholds = thresholds if higher else thresholds[::-1]
    points = []
    for t in [*thresholds]:
        kept = values >= t if higher else values <= t
        tp, fp = int((kept & good).sum()), int((kept & ~good).sum())
        points.append([float(t), fp / max(1, int((~good).sum())), tp / max(1, int(good.sum())), tp / max(1, tp + fp)])
    return points


def calibrate_task(task, rows, verdicts, gates, precision, seed) -> dict[str, Any]:
    """One task's measurements from its labelled candidates (`verdicts`: item -> good)."""
    items = [item for item in verdicts if item in rows and rows[item]["task"] == task]
    good_all = np.array([verdicts[item] for item in items], bool)
    out: dict[str, Any] = {"labelled": len(items), "good": int(good_all.sum()), "scores": {}}
    for name in SCORES:
        have = [i for i, item in enumerate(items) if name in rows[item]["scores"]]
        if not have or name.startswith("judge_") and name != "judge_overall":
            continue
        values = np.array([rows[items[i]]["scores"][name] for i in have], np.float64)
        good = good_all[have]
        if good.all() or not good.any():
            continue
        spec = gates.get(name) if (gates.get(name) or {}).get("enabled", True) else None
        out["scores"][name] = _gate_row(name, values, good, spec, precision, seed)
    judged = [i for i, item in enumerate(items) if "judge_overall" in rows[item]["scores"]]
    if judged:
        judge_gates = {n: s for n, s in gates.items() if n.startswith("judge_") and s.get("enabled", True)}
        verdict = [
            all(passes(rows[items[i]]["scores"].get(n, math.nan), s) for n, s in judge_gates.items())
            if judge_gates
            else rows[items[i]]["scores"]["judge_overall"] >= JUDGE_PASS
            for i in judged
        ]
        truth = [bool(good_all[i]) for i in judged]
        out["judge"] = {
            "labelled": len(judged),
            "verdict": "its gates" if judge_gates else f"judge_overall >= {JUDGE_PASS:g}",
            "accuracy": float(np.mean(np.array(verdict) == np.array(truth))),
            "kappa": cohen_kappa(verdict, truth),
            "spearman": spearman([rows[items[i]]["scores"]["judge_overall"] for i in judged], truth),
        }
    out["disagreements"] = [
        {
            "key": item[0],
            "candidate": item[1],
            "label": "good" if verdicts[item] else "bad",
            "status": rows[item]["status"],
            "reason": rows[item]["reason"],
            "shard": rows[item]["shard"],
        }
        for item in items
        if (not verdicts[item] and rows[item]["status"] == "kept")
        or (verdicts[item] and rows[item]["status"] == "rejected" and rows[item]["reason"] != "outranked")
    ][:DISAGREEMENTS]
    kept = [bool(good_all[i]) for i, item in enumerate(items) if rows[item]["status"] == "kept"]
    out["kept_pairs"] = {
        "labelled": len(kept),
        "good": sum(kept),
        "precision": sum(kept) / len(kept) if kept else math.nan,
        "interval": wilson(sum(kept), len(kept)),
    }
    return out


def agreement(labels: Sequence[Label]) -> dict[str, Any]:
    """Cohen's kappa of every pair of annotators over the candidates both labelled good or bad."""
    by: dict[str, dict[tuple[str, int], str]] = defaultdict(dict)
    for label in labels:
        if label.label != "unsure":
            by[label.annotator][label.item] = label.label
    pairs = []
    names = sorted(by)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(by[a]) & set(by[b]))
            if shared:
                pairs.append(
                    {
                        "annotators": [a, b],
                        "items": len(shared),
                        "kappa": cohen_kappa([by[a][x] for x in shared], [by[b][x] for x in shared]),
                        "agree": float(np.mean([by[a][x] == by[b][x] for x in shared])),
                    }
                )
    return {"annotators": len(names), "pairs": pairs}


def calibrate(out: str, precision: float = 0.9, oracle: bool = False, seed: int = 0) -> dict[str, Any]:
    """Measure the run in OUT against its labels (people's, or with `oracle` the ground truth's); writes
    OUT/calibration.json and OUT/thresholds.yaml and returns the calibration."""
    import yaml

    from datagen.shards import RunFolder

    if not 0 < precision <= 1:
        raise ConfigError(f"--precision {precision}: allowed: a share in (0, 1]")
    run = RunFolder(out)
    configs = task_configs(run)
    if oracle:
        limits = {task: spec for task, spec in task_oracles(configs).items() if spec}
        if not limits:
            raise ConfigError(
                f"{out}: no task of this run states `oracle:` limits in its task file; --oracle labels from exact "
                f"ground truth only where a task says what it must be close to"
            )
        labels = oracle_labels(run, limits)
        write_all(run.folder, labels, ORACLE, ORACLE)
    else:
        labels = read_labels(run.folder, sources=("review", "label-studio"))
    if not labels:
        raise ConfigError(
            f"{out}: no labels in {out}/labels/ (label pairs with `datagen review {out}`, import Label Studio's "
            f"export with `datagen labels import`, or measure against exact ground truth with --oracle)"
        )
    rows = candidates(run)
    verdicts = consensus(labels)
    result: dict[str, Any] = {
        "source": ORACLE if oracle else "people",
        "labels": len(labels),
        "annotators": len({label.annotator for label in labels}),
        "precision_target": precision,
        "agreement": agreement(labels) if not oracle else None,
        "tasks": {},
    }
    thresholds: dict[str, Any] = {}
    for task in sorted({rows[item]["task"] for item in verdicts if item in rows}):
        gates = dict(configs.get(task, {}).get("task", {}).get("filters") or {})
        measured = calibrate_task(task, rows, verdicts, gates, precision, seed)
        result["tasks"][task] = measured
        suggested = {
            name: {("min" if row["direction"] == "higher" else "max"): round(row["suggested"]["threshold"], 6)}
            for name, row in measured["scores"].items()
            if row["gate"] and row["suggested"]
        }
        if suggested:
            thresholds[task] = {"filters": suggested}
    kept = [m["kept_pairs"] for m in result["tasks"].values()]
    good, total = sum(k["good"] for k in kept), sum(k["labelled"] for k in kept)
    result["kept_pairs"] = {
        "labelled": total,
        "good": good,
        "precision": good / total if total else math.nan,
        "interval": wilson(good, total),
    }
    calibration, thresholds_file = outputs(oracle)
    result = _finite(result)
    run.folder.write_atomic(calibration, (json.dumps(result, indent=1) + "\n").encode())
    header = (
        f"# Thresholds suggested by `datagen calibrate` for precision >= {precision:g} of the candidates each gate "
        f"keeps, from {len(labels)} {'oracle' if oracle else 'human'} labels of {out}.\n"
    )
    run.folder.write_atomic(thresholds_file, (header + yaml.safe_dump(thresholds, sort_keys=True)).encode())
    return result


def _finite(value: Any) -> Any:
    """NaN as null, tuples as lists: JSON that every reader takes."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ command line


def flags(parser) -> None:
    parser.description = "Measure every gate and the judge of a run against its labels (OUT/labels/), per task."
    parser.add_argument("out", metavar="OUT", help="a run folder with labels (datagen review, datagen labels import)")
    parser.add_argument("--precision", type=float, default=0.9, help="the precision suggested thresholds reach")
    parser.add_argument(
        "--oracle", action="store_true", help="label candidates from exact ground truth (the task files' oracle:)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)")


def run(args) -> int:
    result = calibrate(args.out, args.precision, args.oracle, args.seed)
    print(f"{result['labels']} {result['source']} labels by {result['annotators']} annotator(s)")
    for task, measured in result["tasks"].items():
        kept = measured["kept_pairs"]
        low, high = kept["interval"]
        print(
            f"{task}: {measured['labelled']} labelled ({measured['good']} good); kept pairs: precision "
            f"{_pct(kept['precision'])} of {kept['labelled']} [{_pct(low)}, {_pct(high)}]"
        )
        for name, row in measured["scores"].items():
            at = row.get("at_threshold") or {}
            suggested = row["suggested"]
            auc = f"AUC {_num(row['auc'])} [{_num(row['auc_interval'][0])}, {_num(row['auc_interval'][1])}]"
            gate = "(no gate)"
            if row["gate"]:
                gate = f"gate {row['gate']}: keeps {_pct(at.get('precision'))} good, drops "
                gate += f"{_pct(at.get('good_dropped'))} of the good"
            bound = "min" if row["direction"] == "higher" else "max"
            better = f"  -> {bound} {suggested['threshold']:.4g} keeps {suggested['kept']}" if suggested else ""
            print(f"  {name:<16} {auc}  {gate}{better}")
        if "judge" in measured:
            judge = measured["judge"]
            print(
                f"  judge ({judge['verdict']}): accuracy {_pct(judge['accuracy'])}, kappa {_num(judge['kappa'])}, "
                f"Spearman {_num(judge['spearman'])} on {judge['labelled']}"
            )
    for pair in (result.get("agreement") or {}).get("pairs", []):
        print(f"annotators {' and '.join(pair['annotators'])}: kappa {_num(pair['kappa'])} on {pair['items']} items")
    written = [f"{args.out.rstrip('/')}/{name}" for name in outputs(args.oracle)]
    print(f"  written: {', '.join(written)}")
    return 0


def _num(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"
