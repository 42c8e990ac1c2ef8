"""The report's figures (matplotlib, Agg backend): kept per task, rejects by reason, throughput, score histograms.

Each function returns PNG bytes written without a timestamp, so the same run gives the same files.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from datagen.report.tally import CATEGORIES, FINE_BINS, TaskTally

if TYPE_CHECKING:
    from datagen.shards import Shard

PLOT_BINS = 40
COLOURS = {"kept": "#2e8b57", "outranked": "#8da9c4", "rejected": "#d9534f", "attempted": "#d5dbe3"}


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _plain(text: str) -> str:
    """Data as matplotlib text: a '$' would start mathtext (and can fail to parse)."""
    return str(text).replace("$", r"\$")


def plot_kept(tasks: dict[str, dict]) -> bytes:
    """Kept of attempted per task (horizontal bars, share written at the end)."""
    plt = _pyplot()
    names = sorted(tasks, reverse=True)
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.28 * len(names)))
    attempted = [tasks[n]["samples"] for n in names]
    kept = [tasks[n]["kept"] for n in names]
    labels = [_plain(n) for n in names]
    ax.barh(labels, attempted, color=COLOURS["attempted"], label="attempted")
    ax.barh(labels, kept, color=COLOURS["kept"], label="kept")
    for y, (a, k) in enumerate(zip(attempted, kept, strict=True)):
        ax.text(a, y, f" {k}/{a} ({k / a:.0%})" if a else " 0", va="center", fontsize=8)
    ax.set_xlim(0, max(attempted + [1]) * 1.3)
    ax.set_title("kept (green) of attempted (grey) samples per task", loc="left")
    return _png(fig)


def plot_reasons(reasons: Counter) -> bytes:
    """Samples that kept nothing, by reason (the 15 most common; the rest summed as 'other')."""
    plt = _pyplot()
    top = [(_plain(reason or "(none)"), n) for reason, n in reasons.most_common(15)]
    rest = sum(reasons.values()) - sum(n for _, n in top)
    if rest:
        top.append(("other", rest))
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.28 * max(1, len(top))))
    if top:
        labels, counts = zip(*reversed(top), strict=True)
        ax.barh(labels, counts, color=COLOURS["rejected"])
        for y, n in enumerate(counts):
            ax.text(n, y, f" {n}", va="center", fontsize=8)
        ax.set_xlim(0, max(counts) * 1.15)
    else:
        ax.text(0.5, 0.5, "no sample was rejected", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title("rejected samples by reason", loc="left")
    return _png(fig)


def plot_throughput(shards: list[Shard], created: float | None, height: float = 3.0) -> bytes:
    """Samples attempted and kept, cumulative, against the wall-clock time their shards were committed."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    timed = sorted((s.committed, s.stats.get("samples") or 0, s.stats.get("kept") or 0) for s in shards if s.committed)
    fig, ax = plt.subplots(figsize=(5.6, height))
    if timed:
        start = created if created is not None and created <= timed[0][0] else timed[0][0]
        times = [datetime.fromtimestamp(t, UTC) for t in [start] + [t for t, _, _ in timed]]
        attempted, kept = [0], [0]
        for _, samples, k in timed:
            attempted.append(attempted[-1] + samples)
            kept.append(kept[-1] + k)
        ax.step(times, attempted, where="post", color="#5b6f8a", label="attempted")
        ax.step(times, kept, where="post", color=COLOURS["kept"], label="kept")
        span = timed[-1][0] - start
        rate = f"{attempted[-1] / span * 3600:,.0f} samples/h over {duration(span)}" if span > 0 else "one instant"
        ax.set_title(f"samples committed over time ({rate})", loc="left")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if span < 86400 else "%m-%d %H:%M"))
        ax.legend(loc="upper left", frameon=False, fontsize=8)
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "no commit times", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("samples committed over time", loc="left")
    ax.set_xlabel("commit time (UTC)")
    return _png(fig)


def _bin_range(hist, thresholds: list[float], low: float, high: float) -> tuple[int, int, int]:
    """Fine-bin span holding the data and the thresholds, and how many fine bins make one plotted bar."""
    import numpy as np

    occupied = np.flatnonzero(hist.sum(axis=0))
    first, last = int(occupied[0]), int(occupied[-1]) + 1
    for value in thresholds:
        index = int((value - low) / (high - low) * FINE_BINS)
        first, last = min(first, max(0, index - 1)), max(last, min(FINE_BINS, index + 2))
    group = max(1, math.ceil((last - first) / PLOT_BINS))
    width = math.ceil((last - first) / group) * group  # a whole number of bars, never more than FINE_BINS
    first = max(0, min(first, FINE_BINS - width))
    return first, first + width, group


def plot_scores(task: str, tally: TaskTally, filters: dict[str, dict], enforced: bool, scores) -> tuple[bytes, str]:
    """One panel per score of the task: stacked histogram by outcome, its thresholds as labelled lines.

    Returns the PNG and a note naming the scores left out because they are constant and ungated.
    """
    import numpy as np

    plt = _pyplot()
    names = list(dict.fromkeys([n for n in filters if n in tally.histograms] + list(tally.histograms)))
    gates = {n: [(b, v) for b in ("min", "max") if (v := (filters.get(n) or {}).get(b)) is not None] for n in names}
    constant = [n for n in names if not gates[n] and tally.extremes[n][0] == tally.extremes[n][1]]
    names = [n for n in names if n not in constant]  # a constant score without a gate is a note, not a panel
    columns = 3  # always: every task's figure has the same width, so the page shows them at the same scale
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 0.4 + 2.1 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        hist, spec, bounds = tally.histograms[name], filters.get(name) or {}, gates[name]
        low, high = scores[name].range
        first, last, group = _bin_range(hist, [v for _, v in bounds], low, high)
        merged = hist[:, first:last].reshape(len(CATEGORIES), -1, group).sum(axis=2)
        width = (high - low) / FINE_BINS * group
        lefts = low + (first + np.arange(merged.shape[1]) * group) * (high - low) / FINE_BINS
        bottom = np.zeros(merged.shape[1])
        for i, category in enumerate(CATEGORIES):
            ax.bar(lefts, merged[i], width=width, bottom=bottom, align="edge", color=COLOURS[category], label=category)
            bottom += merged[i]
        active = enforced and spec.get("enabled", True)
        x0, x1 = ax.get_xlim()
        for bound, value in bounds:
            ax.axvline(value, color="#222" if active else "#999", linestyle="--", linewidth=1)
            label = f"{bound} {value:g}" + ("" if active else " (off)")
            left = (value - x0) / (x1 - x0) < 0.6  # the label on the side with room
            ax.annotate(
                label,
                (value, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3 if left else -3, -2),
                textcoords="offset points",
                ha="left" if left else "right",
                va="top",
                fontsize=7,
                color="#222" if active else "#888",
            )
        gate = "" if bounds else " · no gate"
        ax.set_title(f"{name} · {int(hist.sum()):,} scored{gate}", fontsize=8.5, loc="left")
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="x", useOffset=False)
    if names:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", ncol=3, frameon=False, fontsize=8)
    else:
        axes.flat[0].set_visible(True)
        axes.flat[0].axis("off")
        axes.flat[0].text(0, 0.5, "no score varies", fontsize=9, color="#666")
    fig.suptitle(_plain(task), x=0.01, ha="left", fontsize=10, fontweight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.9 if rows == 1 else 0.95))
    note = ", ".join(f"{n} = {tally.extremes[n][0]:g}" for n in constant)
    return _png(fig), f"constant, no gate: {note}" if note else ""


def duration(seconds: float) -> str:
    """Seconds as people read them (4.2 s, 90 s, 12 min, 3.5 h): in plot titles and on the page."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plot_calibration(task: str, source: str, scores: dict[str, dict]) -> bytes:
    """Per calibrated score of a task, its ROC curve and its precision-recall curve against the labels, the run's
    threshold and the suggested one marked."""
    plt = _pyplot()
    names = list(scores)
    fig, axes = plt.subplots(len(names), 2, figsize=(6.4, 0.4 + 2.4 * len(names)), squeeze=False)
    for (roc, pr), name in zip(axes, names, strict=True):
        row = scores[name]
        points = row["curve"]
        fpr, tpr, precision = [p[1] for p in points], [p[2] for p in points], [p[3] for p in points]
        roc.plot([0, 1], [0, 1], color="#bbb", linewidth=0.8)
        roc.plot(fpr, tpr, color="#1f77b4")
        pr.plot(tpr, precision, color="#1f77b4")
        auc = row.get("auc")
        roc.set_title(_plain(f"{task} · {name}: ROC (AUC {auc:.2f})" if auc is not None else f"{task} · {name}"))
        pr.set_title(_plain(f"precision–recall ({source})"))
        roc.set_xlabel("bad kept (false-positive rate)")
        roc.set_ylabel("good kept (recall)")
        pr.set_xlabel("recall")
        pr.set_ylabel("precision")
        for marks, colour, label in (
            (_nearest(points, row, "gate"), "#d62728", "now"),
            (_nearest(points, row, "suggested"), "#2ca02c", "suggested"),
        ):
            if marks is not None:
                roc.plot([marks[1]], [marks[2]], "o", color=colour, label=label)
                pr.plot([marks[2]], [marks[3]], "o", color=colour, label=label)
        roc.legend(loc="lower right", fontsize=7, frameon=False)
        for ax in (roc, pr):
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    return _png(fig)


def _nearest(points: list[list[float]], row: dict, which: str) -> list[float] | None:
    """The curve's point nearest a threshold: the run's gate bound ('gate') or the suggested one."""
    if which == "gate":
        gate = row.get("gate") or {}
        value = gate.get("min" if row["direction"] == "higher" else "max")
    else:
        value = (row.get("suggested") or {}).get("threshold")
    if value is None or not points:
        return None
    return min(points, key=lambda p: abs(p[0] - value))
