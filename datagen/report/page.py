"""The report's index.html: static tables escaped here, plot images, the gallery's data files and its script.

The page opens from disk (file://, no server, nothing from the network): its data are `<script src>` files that
push into a global, its JS and CSS (assets/) are inlined, and every string from the data reaches the page as text
(Python escapes the static tables; the gallery is built with `textContent`).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from datagen.report.plots import duration

if TYPE_CHECKING:
    from datagen.shards import Shard


def _asset(name: str) -> str:
    """The page's stylesheet or script (datagen/report/assets/), inlined so the page is one file plus data."""
    from importlib.resources import files

    return files("datagen.report").joinpath("assets", name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON safe inside <script> and .js files: '<', '>', '&' and line separators only as \\u escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _count(task: str, name: str, value: int) -> str:
    return f'<td class="num" data-task="{_e(task)}" data-count="{name}">{value:,}</td>'


def _share(part: int, whole: int) -> str:
    share = part / whole if whole else 0.0
    return f'<td class="num"><span class="bar"><i style="width:{share * 100:.1f}%"></i></span>{share:.1%}</td>'


def _reasons_text(reasons: dict[str, int], limit: int = 3) -> str:
    """The commonest names of a count (reasons, image sizes) and how many of each."""
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    text = " · ".join(f"{reason} {n:,}" for reason, n in top[:limit])
    return text + (f" · +{len(top) - limit} more" if len(top) > limit else "")


def _task_table(tasks: dict[str, dict], total: dict) -> str:
    head = (
        "task",
        "shards",
        "attempted",
        "kept",
        "kept %",
        "rejected",
        "errors",
        "candidates",
        "tar",
        "render time",
        "top reject reasons",
        "kept sizes",
    )
    rows = []
    for task, t in [*sorted(tasks.items()), ("all", total)]:
        rows.append(
            f"<tr{' class=total' if task == 'all' and t is total else ''}><th>{_e(task)}</th>"
            + "".join(_count(task, name, t[name]) for name in ("shards", "samples", "kept"))
            + _share(t["kept"], t["samples"])
            + "".join(_count(task, name, t[name]) for name in ("rejected", "errors", "candidates"))
            + f'<td class="num">{_bytes(t["tar_bytes"])}</td><td class="num">{duration(t["seconds"])}</td>'
            + f"<td>{_e(_reasons_text(t['reasons']))}</td><td>{_e(_reasons_text(t['sizes']))}</td></tr>"
        )
    return _table(head, rows, "tasks")


def _reason_table(tasks: dict[str, dict], total: dict) -> str:
    head = ("reason", "samples", "% of attempted", "candidates", "by task")
    rows = []
    for reason, n in sorted(total["reasons"].items(), key=lambda item: (-item[1], item[0])):
        per_task = {task: t["reasons"][reason] for task, t in tasks.items() if t["reasons"].get(reason)}
        rows.append(
            f'<tr><th>{_e(reason)}</th><td class="num" data-reason="{_e(reason)}" data-count="samples">{n:,}</td>'
            f"{_share(n, total['samples'])}"
            f'<td class="num">{total["candidate_reasons"].get(reason, 0):,}</td>'
            f"<td>{_e(_reasons_text(per_task, 6))}</td></tr>"
        )
    for reason, n in sorted(total["candidate_reasons"].items()):
        if reason not in total["reasons"]:  # candidates only, e.g. outranked: their sample kept another candidate
            rows.append(
                f'<tr class="muted"><th>{_e(reason)}</th><td class="num">0</td><td></td>'
                f'<td class="num">{n:,}</td><td>candidates only</td></tr>'
            )
    return _table(head, rows, "reasons") if rows else "<p>No sample was rejected.</p>"


def _shard_table(shards: list[Shard]) -> str:
    head = ("shard", "task", "samples", "candidates", "kept", "errors", "tar bytes", "tar sha256", "committed (UTC)")
    rows = []
    for shard in shards:
        stats, tar = shard.stats, shard.stats.get("tar") or {}
        sha = str(tar.get("sha256") or "")
        when = datetime.fromtimestamp(shard.committed, UTC).strftime("%Y-%m-%d %H:%M:%S") if shard.committed else ""
        rows.append(
            f"<tr><th>{_e(shard.name)}</th><td>{_e(shard.task)}</td>"
            + "".join(
                f'<td class="num">{_e(stats.get(k, ""))}</td>' for k in ("samples", "candidates", "kept", "errors")
            )
            + f'<td class="num">{_e(tar.get("bytes", ""))}</td><td class="mono" title="{_e(sha)}">{_e(sha[:12])}</td>'
            + f"<td>{when}</td></tr>"
        )
    return _table(head, rows, "shards")


def _table(head: tuple[str, ...], rows: list[str], name: str) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        f'<table class="data" id="table-{name}"><thead><tr>{cells}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _sessions(counts: dict[str, Any] | None, strips: list[dict]) -> str:
    """The Sessions section: sessions kept, the share that stopped at each turn, and the sampled sessions as strips
    of turns (the first input, then each turn's output under its task, instruction and verdict)."""
    if not counts:
        return ""
    attempted = counts["sessions"]
    rule = "their passing prefix kept (--keep-prefix)" if counts["keep_prefix"] else "kept only whole"
    rows = [
        f'<tr><th>turn {turn}</th><td class="num">{n:,}</td>{_share(n, attempted)}</tr>'
        for turn, n in counts["dropped_at_turn"].items()
    ]
    table = _table(("stopped at", "sessions", "% of sessions"), rows, "sessions") if rows else ""
    figures = []
    for strip in strips:
        cells = []
        first = strip["turns"][0]
        source = (first["thumbs"] or {}).get("input")
        cells.append(_figure(source, "input", "the session's input"))
        for turn in strip["turns"]:
            verdict = turn["status"] if turn["status"] == "kept" else f"{turn['status']}: {turn['reason']}"
            caption = f"{turn['turn']}. {turn['task']}: {turn['instruction']} · {verdict}"
            cells.append(_figure((turn["thumbs"] or {}).get("output"), caption, turn["detail"]))
        state = "kept" if strip["kept"] else "dropped"
        figures.append(
            f'<div class="strip {state}"><div class="strip-head">{_e(strip["session"])} · {state}</div>'
            f'<div class="thumbs">{"".join(cells)}</div></div>'
        )
    return (
        f'<section id="sessions"><h2>Sessions</h2><p class="hint">{counts["turns"]}-turn sessions, each turn edited '
        f"from the previous turn's output and gated against it; sessions {rule}. {attempted:,} attempted, "
        f"{counts['complete']:,} complete, {counts['kept']:,} kept.</p>{table}{''.join(figures)}</section>"
    )


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}"


def _calibration(found: list[dict]) -> str:
    """The Calibration section: per labels' source, the precision of the kept pairs, each calibrated score's AUC,
    its gate's precision and the good candidates it drops, the suggested threshold, the judge; the curves; and the
    disagreements between the labels and the gates, as pairs."""
    if not found:
        return ""
    parts = []
    for entry in found:
        result, source = entry["result"], entry["source"]
        kept = result.get("kept_pairs") or {}
        low, high = kept.get("interval") or (None, None)
        rows = []
        for task, measured in sorted(result["tasks"].items()):
            for name, row in measured["scores"].items():
                at, suggested = row.get("at_threshold") or {}, row.get("suggested") or {}
                interval = row.get("auc_interval") or (None, None)
                bound = "min" if row["direction"] == "higher" else "max"
                cells = (
                    name,
                    f"{_num(row.get('auc'))} [{_num(interval[0])}, {_num(interval[1])}]",
                    json.dumps(row["gate"]) if row.get("gate") else "none",
                    _pct(at.get("precision")),
                    _pct(at.get("good_dropped")),
                    f"{bound} {suggested['threshold']:.4g}" if suggested else "—",
                )
                rows.append(f"<tr><th>{_e(task)}</th>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
            judge = measured.get("judge")
            if judge:
                said = (
                    f"accuracy {_pct(judge.get('accuracy'))}, κ {_num(judge.get('kappa'))}, "
                    f"Spearman {_num(judge.get('spearman'))} on {judge['labelled']}"
                )
                rows.append(
                    f"<tr><th>{_e(task)}</th><td>judge ({_e(judge['verdict'])})</td>"
                    f'<td colspan="5">{_e(said)}</td></tr>'
                )
        head = ("task", "score", "AUC [95%]", "gate now", "precision kept", "good dropped", "suggested")
        table = _table(head, rows, f"calibration-{source}") if rows else ""
        figures = "".join(
            f'<figure><img src="{_e(path)}" alt="calibration curves of {_e(task)}"></figure>'
            for task, path in entry["figures"]
        )
        pairs = []
        for item in entry["disagreements"]:
            thumbs = item.get("thumbs") or {}
            verdict = item["status"] if item["status"] == "kept" else f"{item['status']}: {item['reason']}"
            caption = f"{item['task']} {item['key']} c{item['candidate']}: labelled {item['label']}, gates {verdict}"
            pairs.append(
                f'<div class="strip"><div class="strip-head">{_e(caption)}</div><div class="thumbs">'
                + "".join(_figure(thumbs.get(m), m) for m in ("input", "output", "mask"))
                + "</div></div>"
            )
        agreement = "".join(
            f"<li>{_e(' and '.join(p['annotators']))}: κ {p['kappa']:.2f} on {p['items']} items</li>"
            for p in (result.get("agreement") or {}).get("pairs", [])
            if p.get("kappa") is not None
        )
        parts.append(
            f"<h3>Against {'people' if source == 'people' else 'exact ground truth (oracle)'}</h3>"
            f'<p class="hint">{result["labels"]:,} labels, {result["annotators"]} annotator(s); precision of the kept '
            f"pairs {_pct(kept.get('precision'))} of {kept.get('labelled', 0):,} labelled, 95% interval "
            f"[{_pct(low)}, {_pct(high)}]; suggested thresholds reach precision ≥ {result['precision_target']:g}.</p>"
            + (f"<ul>{agreement}</ul>" if agreement else "")
            + table
            + f'<div class="grid wide">{figures}</div>'
            + (
                f'<h4>Where the labels and the gates disagree</h4><div class="pairs">{"".join(pairs)}</div>'
                if pairs
                else ""
            )
        )
    return (
        '<section id="calibration"><h2>Calibration</h2><p class="hint">Every gate measured against labels by '
        "<code>datagen calibrate</code>: ROC and precision–recall curves, the run's threshold (red) and the suggested "
        "one (green).</p>" + "".join(parts) + "</section>"
    )


def _figure(src: str | None, caption: str, title: str = "") -> str:
    image = f'<img src="{_e(src)}" alt="{_e(caption)}">' if src else '<div class="placeholder">no image</div>'
    return f'<figure class="thumb" title="{_e(title)}">{image}<figcaption>{_e(caption)}</figcaption></figure>'


def _card(label: str, value: str, note: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
        + (f'<div class="note" title="{_e(note)}">{_e(note)}</div>' if note else "")
        + "</div>"
    )


def render_page(context: dict[str, Any]) -> str:
    """index.html: static tables (escaped here), plot images, then the gallery's data files and its script."""
    record, total, tasks = context["record"], context["total"], context["tasks"]
    versions = record.get("versions") or {}
    title = f"datagen report · {context['where']}"
    share = total["kept"] / total["samples"] if total["samples"] else 0.0
    cards = "".join(
        [
            _card("kept", f"{total['kept']:,} of {total['samples']:,}", f"{share:.1%} of attempted samples"),
            _card("tasks", f"{len(tasks)}", ", ".join(sorted(tasks))),
            _card("shards", f"{total['shards']:,}", f"{context['ignored']} uncommitted files ignored"),
            _card("candidates", f"{total['candidates']:,}", f"{total['errors']:,} samples with errors"),
            _card(
                "tar size",
                _bytes(total["tar_bytes"]),
                f"{_bytes(total['tar_bytes'] / max(1, total['kept']))} per kept pair",
            ),
            _card("throughput", context["throughput"][0], context["throughput"][1]),
        ]
    )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in context["warnings"][:50])
    if len(context["warnings"]) > 50:
        warnings += f"<li>… and {len(context['warnings']) - 50} more</li>"
    overview = [f'<figure><img src="{_e(src)}" alt="{_e(alt)}"></figure>' for src, alt in context["overview_plots"]]
    score_plots = "".join(
        f'<figure><img src="{_e(src)}" alt="scores of {_e(task)}">'
        + (f"<figcaption>{_e(note)}</figcaption>" if note else "")
        + "</figure>"
        for task, src, note in context["score_plots"]
    )
    scripts = "".join(f'<script src="{_e(name)}"></script>' for name in context["pages"])
    meta = script_json(context["meta"])
    config = _e(json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False))
    about = (
        f"{_e(context['where'])} · created {_e(record.get('created', '?'))} · seed {_e(record.get('seed', '?'))} · "
        f"datagen {_e(versions.get('datagen', '?'))} · report built {_e(context['built'])}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_asset("report.css")}</style></head>
<body>
<header><div class="wrap"><h1>datagen run report</h1><div class="about">{about}</div>
<nav><a href="#summary">Summary</a>{'<a href="#sessions">Sessions</a>' if context.get("sessions") else ""}
{'<a href="#calibration">Calibration</a>' if context.get("calibration") else ""}
<a href="#reasons">Rejects</a><a href="#plots">Throughput</a>
<a href="#scores">Scores</a><a href="#gallery">Gallery</a>
<a href="#shards">Shards</a><a href="#config">Configuration</a></nav></div></header>
<main class="wrap">
{f'<section class="warnings"><h2>Warnings</h2><ul>{warnings}</ul></section>' if warnings else ""}
<section id="summary"><div class="cards">{cards}</div><h2>Per task</h2>{_task_table(tasks, total)}</section>
{_sessions(context.get("sessions"), context.get("strips") or [])}
{_calibration(context.get("calibration") or [])}
<section id="reasons"><h2>Rejects by reason</h2><div class="split"><div>{_reason_table(tasks, total)}</div>
{overview[1]}</div></section>
<section id="plots"><h2>Throughput and yield</h2><div class="grid">{overview[0]}{overview[2]}</div></section>
<section id="scores"><h2>Scores against thresholds</h2><p class="hint">Every candidate's score, stacked by outcome:
kept, outranked (passed every gate, a sibling candidate scored better) and rejected. Dashed lines are the task's
gates; "(off)" marks a gate that is not enforced.</p><div class="grid wide">{score_plots}</div></section>
<section id="gallery"><h2>Gallery</h2><p class="hint" id="gallery-note"></p>
<div class="controls">
<label>task <select id="f-task"></select></label><label>status <select id="f-status"></select></label>
<label>reason <select id="f-reason"></select></label><label>sort by <select id="sort"></select></label>
<label>order <select id="sort-dir"><option value="desc">high → low</option><option value="asc">low → high</option>
</select></label><span class="pager"><button id="prev" type="button">← prev</button>
<span id="page-info"></span><button id="next" type="button">next →</button></span></div>
<div id="pairs"></div>
<div class="controls bottom"><span class="pager"><button id="prev-bottom" type="button">← prev</button>
<button id="next-bottom" type="button">next →</button></span></div></section>
<section id="shards"><details{" open" if total["shards"] <= 40 else ""}><summary><h2>Shards ({total["shards"]:,})</h2>
</summary>{_shard_table(context["shards"])}</details></section>
<section id="config"><details><summary><h2>Configuration (run.json)</h2></summary><pre>{config}</pre></details>
</section>
</main>
<script>window.DATAGEN_META = {meta};</script>
{scripts}
<script>{_asset("report.js")}</script>
</body></html>
"""
