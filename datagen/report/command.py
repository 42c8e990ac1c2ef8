"""`datagen report OUT`: stream the run into a tally, draw the plots, write the page and its files.

OUT and DEST may be local folders or any fsspec URL (s3://bucket/run); the report is written through the same
filesystem, index.html last, after removing what an earlier report wrote that this one does not rewrite.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from datagen.errors import ConfigError
from datagen.report.calibration import calibration
from datagen.report.page import render_page, script_json
from datagen.report.plots import duration, plot_kept, plot_reasons, plot_scores, plot_throughput
from datagen.report.sessions import session_counts
from datagen.report.sessions import strips as sessions_strips
from datagen.report.tally import SIZE_COLUMNS, STATUSES, RunTally, gallery_entries, thumbnails
from datagen.scores import SCORE_PREFIX

if TYPE_CHECKING:
    from datagen.shards.reader import RunFolder, Shard
    from datagen.storage import Folder

SUMMARY = "`datagen report OUT`: one static HTML page to judge a run at a glance."
"""The first line of `datagen report --help`."""


def build_report(
    out: str, dest: str | None = None, gallery: int = 2000, page_size: int = 100, seed: int = 0, progress: bool = True
) -> str:
    """Write OUT/report/index.html (or DEST/index.html) and its assets; returns where index.html is."""
    from datagen.shards.reader import RunFolder, timestamp
    from datagen.storage import Folder

    if gallery < 0 or page_size < 1:
        raise ConfigError(f"--gallery {gallery} / --page-size {page_size}: need gallery >= 0 and page size >= 1")
    run = RunFolder(out)
    record = run.record()
    shards, ignored = run.committed(), run.uncommitted()
    tally = tally_run(run, shards, gallery, seed, progress)
    entries = gallery_entries(run, shards, tally.sample(), tally.scores)
    files = thumbnails(run, entries, tally.warnings, {s.name for s in shards if s.keeps_rejected})
    for entry in entries:
        del entry["shard"]
    counts = session_counts(shards)
    strips, strip_files = sessions_strips(run, shards, tally.warnings, seed) if counts else ([], {})
    files.update(strip_files)
    calibrated = calibration(run, shards, files, tally.warnings)

    tasks = {task: t.as_dict() for task, t in sorted(tally.tasks.items())}
    total = run_totals(tasks)
    configs = {task: (record["runs"].get(task) or {}).get("config") or {} for task in tasks}
    filters = {task: (c.get("task") or {}).get("filters") or {} for task, c in configs.items()}
    enforced = {task: (c.get("pipeline") or {}).get("enforce_filters", True) for task, c in configs.items()}
    created = timestamp(record.get("created"))
    score_plots = draw_plots(files, tally, tasks, total, shards, created, filters, enforced)
    pages = gallery_pages(files, entries, page_size)
    strata = {f"{task}/{status}": n for task, t in tasks.items() for status, n in t["statuses"].items()}
    meta = {
        "tasks": sorted(tasks),
        "statuses": [s for s in STATUSES if total["statuses"].get(s)] + sorted(set(total["statuses"]) - set(STATUSES)),
        "reasons": sorted(total["candidate_reasons"]),
        "scores": [name for name in tally.scores if any(name in t.histograms for t in tally.tasks.values())],
        "filters": {task: {k: v for k, v in f.items() if isinstance(v, dict)} for task, f in filters.items()},
        "enforced": enforced,
        "page_size": page_size,
        "strata": strata,
        "gallery": gallery,
        "keeps_rejected": any(s.keeps_rejected for s in shards),
    }
    summary = {
        "out": out,
        "tasks": tasks,
        "total": total,
        "gallery": {"entries": len(entries), "pages": len(pages), "strata": strata},
        "shards": [{"name": s.name, "task": s.task, "committed": s.committed} for s in shards],
        "warnings": tally.warnings,
        **({"sessions": counts} if counts else {}),
    }
    files["summary.json"] = json.dumps(summary, indent=1, sort_keys=True).encode()
    context = {
        "record": record,
        "where": str(run),
        "built": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "tasks": tasks,
        "total": total,
        "shards": shards,
        "ignored": len(ignored),
        "warnings": tally.warnings,
        "throughput": throughput(shards, created, total["samples"]),
        "overview_plots": OVERVIEW_PLOTS,
        "score_plots": score_plots,
        "pages": pages,
        "meta": meta,
        "sessions": counts,
        "strips": strips,
        "calibration": calibrated,
    }
    files["index.html"] = render_page(context).encode()
    return write_files(Folder(dest) if dest else run.folder.sub("report"), files)


def tally_run(run: RunFolder, shards: list[Shard], gallery: int, seed: int, progress: bool) -> RunTally:
    """Every committed shard's manifest streamed into one tally (only the columns it reads), the run's recorded
    failures among its warnings."""
    from datagen.progress import Progress
    from datagen.shards.reader import ROW_COLUMNS

    tally = RunTally(gallery, seed)
    tally.warnings += run.failures()
    columns = (*ROW_COLUMNS, "detail", *SIZE_COLUMNS, *(f"{SCORE_PREFIX}{n}" for n in tally.scores))
    with Progress(len(shards), "report: manifests", unit="shard", enabled=progress) as bar:
        for index, shard in enumerate(shards):
            tally.add(index, shard, run.manifest(shard.name, columns))
            bar.update(1)
    return tally


COUNTED = ("shards", "samples", "kept", "rejected", "errors", "candidates", "tar_bytes", "seconds")
"""A task's counts that add up across tasks."""
COUNTERS = ("reasons", "candidate_reasons", "statuses", "sizes")
"""A task's counters (name -> count) that merge across tasks."""


def run_totals(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The whole run's counts: each task's summed, its counters merged."""
    total: dict[str, Any] = {name: sum(t[name] for t in tasks.values()) for name in COUNTED}
    for name in COUNTERS:
        total[name] = dict(sum((Counter(t[name]) for t in tasks.values()), Counter()))
    return total


OVERVIEW_PLOTS = [
    ("plots/kept.png", "kept per task"),
    ("plots/reasons.png", "rejects by reason"),
    ("plots/throughput.png", "throughput"),
]
"""The page's overview figures: (file, caption)."""


def draw_plots(
    files: dict[str, bytes],
    tally: RunTally,
    tasks: dict[str, dict[str, Any]],
    total: dict[str, Any],
    shards: list[Shard],
    created: float | None,
    filters: dict[str, dict[str, Any]],
    enforced: dict[str, bool],
) -> list[tuple[str, str, str]]:
    """Draw the overview plots and each task's score histograms into `files`; returns (task, file, note) of the
    score plots."""
    files["plots/kept.png"] = plot_kept(tasks)
    files["plots/reasons.png"] = plot_reasons(Counter(total["reasons"]))
    files["plots/throughput.png"] = plot_throughput(shards, created, height=max(3.0, 0.9 + 0.28 * len(tasks)))
    score_plots = []
    for i, (task, t) in enumerate(sorted(tally.tasks.items()), 1):
        if t.histograms:
            # a task name that is not a safe file name stays out of the path
            safe = re.fullmatch(r"[a-z0-9_]{1,40}", task)
            name = f"plots/scores-{i:02d}-{task}.png" if safe else f"plots/scores-{i:02d}.png"
            files[name], note = plot_scores(task, t, filters[task], enforced[task], tally.scores)
            score_plots.append((task, name, note))
    return score_plots


def gallery_pages(files: dict[str, bytes], entries: list[dict[str, Any]], page_size: int) -> list[str]:
    """The gallery's entries as script files of `page_size` entries each, added to `files`; returns their names."""
    pages = []
    for start in range(0, len(entries), page_size):
        name = f"data/page-{len(pages) + 1:04d}.js"
        chunk = script_json(entries[start : start + page_size])
        files[name] = f"(window.DATAGEN_PAGES = window.DATAGEN_PAGES || []).push({chunk});\n".encode()
        pages.append(name)
    return pages


def throughput(shards: list[Shard], created: float | None, samples: int) -> tuple[str, str]:
    """(figure, what it is) of the run's samples per hour, from its start (or first commit) to its last commit."""
    timed = sorted(s.committed for s in shards if s.committed)
    if not timed:
        return ("–", "no commit times")
    start = created if created is not None and created <= timed[0] else timed[0]
    span = timed[-1] - start
    if span <= 0:
        return ("–", "no commit times")
    return (f"{samples / span * 3600:,.0f}", f"samples/h over {duration(span)}")


STALE = re.compile(
    r"^(data/page-\d{4}\.js|plots/[a-z0-9_-]+\.png|thumbs/[a-z0-9_]+(\.c\d+)?\.(input|output|mask)\.(jpg|png))$"
)
"""Files an earlier report wrote that this one may not rewrite (fewer pages, another sample): removed first."""


def write_files(target: Folder, files: dict[str, bytes]) -> str:
    """Write the report's files in `target` (OUT/report, or DEST), index.html last; returns where index.html is."""
    fs, root = target.fs, target.path
    fs.invalidate_cache()
    for folder in ("data", "plots", "thumbs"):
        path = f"{root}/{folder}"
        if fs.isdir(path):
            for old in fs.ls(path, detail=False):
                if (
                    STALE.match(f"{folder}/{old.rstrip('/').rsplit('/', 1)[-1]}")
                    and f"{folder}/{old.rsplit('/', 1)[-1]}" not in files
                ):
                    fs.rm_file(old)
        fs.makedirs(path, exist_ok=True)
    for name, data in sorted(files.items(), key=lambda item: item[0] == "index.html"):
        fs.pipe_file(f"{root}/{name}", data)
    return target.url("index.html")


# ------------------------------------------------------------------------------------------ command line


def add_parser(sub) -> argparse.ArgumentParser:
    """Add `report` to the `datagen` subcommands."""
    text = "write a static HTML report of a run: counts, reject reasons, score histograms, throughput, gallery"
    parser = sub.add_parser(
        "report",
        help=text,
        description=SUMMARY + " " + text + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "out",
        help="run folder (or a curated set: its funnel, scores and dropped inputs): a path or "
        "any fsspec URL (s3://bucket/run)",
    )
    parser.add_argument("--dest", help="report folder (default: OUT/report); a path or URL")
    parser.add_argument("--gallery", type=int, default=2000, help="sampled candidates in the gallery (default: 2000)")
    parser.add_argument("--page-size", type=int, default=100, help="gallery entries per page (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gallery's sample (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """`datagen report`: build the report (of a run, or of a set `datagen curate` wrote), say where it is and how to
    open it."""
    from datagen.shards.curated import CURATE_JSON
    from datagen.storage import Folder

    if Folder(args.out).exists(CURATE_JSON):
        from datagen.report.curation import build_curation_report

        index = build_curation_report(args.out, args.dest)
    else:
        index = build_report(
            args.out,
            args.dest,
            gallery=args.gallery,
            page_size=args.page_size,
            seed=args.seed,
            progress=not args.no_progress,
        )
    print(f"report: {index}")
    if "://" in index:
        print("  copy its folder to this machine to open it (it needs no server): the page loads files next to it")
    else:
        from pathlib import Path

        print(f"  open it: file://{Path(index).resolve()}")
    return 0
