"""`datagen report`: counts equal to the manifests', every asset present, data shown as text, a working gallery."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FAST, run_inline
from PIL import Image

from datagen.errors import ConfigError
from datagen.report import add_parser, build_report, run

INJECTED = "<img src=x onerror=window.__pwned=1></script>Erase"
"""A verb that makes real instructions carry markup: the page must show it as text and never run it."""
PAGE_PREFIX = "(window.DATAGEN_PAGES = window.DATAGEN_PAGES || []).push("


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Two tasks, four shards, kept and rejected candidates; a third of remove's instructions carry markup."""
    out = tmp_path_factory.mktemp("report") / "run"
    verbs = json.dumps(["Remove", INJECTED])
    run_inline("generate", "--tasks", "remove,color", "--pipeline", "local", "--n", "48", "--shard-size", "16",
            "--out", str(out), "--workers", "0", "--no-progress", *FAST, "--set", f"prompt.verbs={verbs}")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def report_dir(run_dir) -> Path:
    """The report of the whole run: a gallery budget above the run's candidates, so every row is in it."""
    return Path(build_report(str(run_dir), gallery=10_000, page_size=25)).parent


def manifest_rows(run_dir: Path) -> list[dict]:
    rows = []
    for path in sorted((run_dir / "shards").glob("*.parquet")):
        rows += pq.read_table(
            path, columns=["key", "task", "candidate", "status", "reason", "instruction"]
        ).to_pylist()
    return rows


def expected_counts(rows: list[dict]) -> dict[str, dict]:
    """Per task, from the manifests alone: samples, kept, candidates, and each failed sample's first reason."""
    first, kept, tasks = {}, set(), defaultdict(Counter)
    for row in rows:
        first.setdefault(row["key"], row)
        kept |= {row["key"]} if row["status"] == "kept" else set()
        tasks[row["task"]]["candidates"] += 1
    reasons = defaultdict(Counter)
    for key, row in first.items():
        tasks[row["task"]]["samples"] += 1
        tasks[row["task"]]["kept"] += key in kept
        if key not in kept:
            reasons[row["task"]][row["reason"]] += 1
    return {t: {**c, "rejected": c["samples"] - c["kept"], "reasons": dict(reasons[t])} for t, c in tasks.items()}


def gallery(report_dir: Path) -> list[dict]:
    entries = []
    for path in sorted((report_dir / "data").glob("page-*.js")):
        text = path.read_text()
        assert text.startswith(PAGE_PREFIX) and text.endswith(");\n"), path
        entries += json.loads(text[len(PAGE_PREFIX) : -3])
    return entries


def test_counts_equal_the_manifests(run_dir, report_dir):
    rows = manifest_rows(run_dir)
    expected = expected_counts(rows)
    assert set(expected) == {"remove", "color"} and all(e["rejected"] > 0 for e in expected.values())
    summary = json.loads((report_dir / "summary.json").read_text())
    for task, want in expected.items():
        got = summary["tasks"][task]
        assert (got["samples"], got["kept"], got["rejected"], got["candidates"]) == (
            want["samples"], want["kept"], want["rejected"], want["candidates"])  # fmt: skip
        assert got["reasons"] == want["reasons"]
    page = (report_dir / "index.html").read_text()
    shown = {(t, name): int(n.replace(",", "")) for t, name, n in
             re.findall(r'data-task="(\w+)" data-count="(\w+)">([\d,]+)<', page)}  # fmt: skip
    for task, want in expected.items():
        for name in ("samples", "kept", "rejected", "candidates"):
            assert shown[(task, name)] == want[name], (task, name)
    assert shown[("all", "samples")] == len({r["key"] for r in rows})
    assert shown[("all", "kept")] == sum(r["status"] == "kept" for r in rows)

    entries = gallery(report_dir)
    assert sorted((e["key"], e["candidate"]) for e in entries) == sorted((r["key"], r["candidate"]) for r in rows)
    for task in expected:
        statuses = {e["status"] for e in entries if e["task"] == task}
        assert statuses == {r["status"] for r in rows if r["task"] == task} == {"kept", "rejected"}
    pages = re.findall(r'<script src="(data/page-\d{4}\.js)"></script>', page)
    assert pages == [f"data/page-{i:04d}.js" for i in range(1, len(pages) + 1)] and len(pages) == -(-len(rows) // 25)


def test_assets_exist_and_decode(report_dir):
    entries = gallery(report_dir)
    kept = [e for e in entries if e["status"] == "kept"]
    assert kept and all(set(e["thumbs"]) == {"input", "output", "mask"} for e in kept)
    assert all(e["thumbs"] is None for e in entries if e["status"] != "kept")  # not in the tar: a placeholder
    for entry in kept:
        for name in entry["thumbs"].values():
            with Image.open(report_dir / name) as image:
                assert 0 < max(image.size) <= 128
    page = (report_dir / "index.html").read_text()
    plots = re.findall(r'<img src="(plots/[\w-]+\.png)"', page)
    assert {"plots/kept.png", "plots/reasons.png", "plots/throughput.png"} <= set(plots)
    assert {p for p in plots if "scores-" in p} == {"plots/scores-01-color.png", "plots/scores-02-remove.png"}
    for name in plots:
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(report_dir / name) as image:
            assert image.width > 300 and image.height > 150


def test_data_is_shown_as_text(run_dir, report_dir):
    injected = [r for r in manifest_rows(run_dir) if "onerror" in (r["instruction"] or "")]
    assert injected, "the run should have instructions carrying markup"
    page = (report_dir / "index.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=window.__pwned=1&gt;&lt;/script&gt;" in page
    for path in (report_dir / "data").glob("*.js"):
        assert "<" not in path.read_text()  # no markup at all, so no '</script>' either
    by_key = {(e["key"], e["candidate"]): e["instruction"] for e in gallery(report_dir)}
    assert all(by_key[(r["key"], r["candidate"])] == r["instruction"] for r in injected)  # exact text, escaped only
    script = page[page.rindex("<script>") :]
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)


def test_gallery_is_a_bounded_deterministic_sample(run_dir, tmp_path):
    first = Path(build_report(str(run_dir), dest=str(tmp_path / "a"), gallery=10, page_size=4)).parent
    again = Path(build_report(str(run_dir), dest=str(tmp_path / "b"), gallery=10, page_size=4)).parent
    entries = gallery(first)
    assert entries == gallery(again)
    assert len(entries) == 10 and len(list((first / "data").glob("page-*.js"))) == 3
    strata = Counter((e["task"], e["status"]) for e in entries)
    assert sorted(strata.values()) in ([2, 2, 3, 3], [2, 3, 2, 3]) or max(strata.values()) - min(strata.values()) <= 1
    assert set(strata) == {("remove", "kept"), ("remove", "rejected"), ("color", "kept"), ("color", "rejected")}
    kept = sum(e["status"] == "kept" for e in entries)
    assert len(list((first / "thumbs").iterdir())) == 3 * kept  # only the sampled kept pairs are decoded
    other = gallery(Path(build_report(str(run_dir), dest=str(tmp_path / "c"), gallery=10, page_size=4, seed=1)).parent)
    assert {e["key"] for e in other} != {e["key"] for e in entries}

    build_report(str(run_dir), dest=str(tmp_path / "a"), gallery=4, page_size=4)  # a smaller rebuild in place
    assert sorted(p.name for p in (first / "data").iterdir()) == ["page-0001.js"]
    assert len(list((first / "thumbs").iterdir())) == 3 * sum(e["status"] == "kept" for e in gallery(first))


def test_remote_run_through_fsspec(run_dir):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(str(run_dir), "/report-test/run", recursive=True)
    fs.pipe_file("/report-test/run/shards/remove-000009.parquet", b"half-written, no marker: ignored")
    failure = {"phase": "render", "attempts": 3, "error": "RuntimeError: <b>boom</b>"}
    fs.pipe_file("/report-test/run/failed/remove-000007.json", json.dumps(failure).encode())
    try:
        index = build_report("memory://report-test/run", gallery=6)
        assert re.fullmatch(r"memory:///?report-test/run/report/index\.html", index), index
        summary = json.loads(fs.cat_file("/report-test/run/report/summary.json"))
        assert summary["total"]["samples"] == 48 and summary["gallery"]["entries"] == 6
        assert summary["warnings"] == ["remove-000007: failed render after 3 attempt(s): RuntimeError: <b>boom</b>"]
        assert "RuntimeError: &lt;b&gt;boom&lt;/b&gt;" in fs.cat_file("/report-test/run/report/index.html").decode()
        assert fs.cat_file("/report-test/run/report/plots/kept.png")[:4] == b"\x89PNG"
        thumbs = fs.ls("/report-test/run/report/thumbs", detail=False)
        assert len(thumbs) == 3 * sum(1 for e in gallery_of(fs) if e["status"] == "kept") > 0
    finally:
        fs.rm("/report-test", recursive=True)


def gallery_of(fs) -> list[dict]:
    text = fs.cat_file("/report-test/run/report/data/page-0001.js").decode()
    return json.loads(text[len(PAGE_PREFIX) : -3])


def test_clear_errors(run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=re.escape(f"{empty}/run.json: no such file")):
        run(parser.parse_args(["report", str(empty)]))

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("report"))
    (broken / "shards" / "color-000001.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match=re.escape(f"{broken}/shards/color-000001.parquet: unreadable parquet")):
        build_report(str(broken))
    (broken / "shards" / "color-000000.stats.json").write_text("{")
    with pytest.raises(ConfigError, match=re.escape(f"{broken}/shards/color-000000.stats.json: unreadable stats")):
        build_report(str(broken))
    for path in (broken / "shards").glob("*.stats.json"):
        path.unlink()
    with pytest.raises(ConfigError, match=re.escape(f"{broken}/shards: no committed shards")):
        build_report(str(broken))

    assert run(parser.parse_args(["report", str(run_dir), "--dest", str(tmp_path / "ok"), "--gallery", "5"])) == 0
    assert f"file://{tmp_path / 'ok' / 'index.html'}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ browser


def shown(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#pairs .pair')].map((p) => ({key: p.dataset.key, task: p.dataset.task,"
        " status: p.dataset.status, text: p.querySelector('.instruction').textContent,"
        " scores: Object.fromEntries([...p.querySelectorAll('[data-score]')].map((c) => [c.dataset.score,"
        " Number(c.dataset.value)]))}))"
    )


def test_report_in_browser(browser, report_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get((report_dir / "index.html").as_uri())
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return [...document.querySelectorAll('#pairs img')].every((i) => i.complete)")
    )
    widths = browser.execute_script("return [...document.querySelectorAll('#pairs img')].map((i) => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths)  # every thumbnail of the first page loaded
    first_page = shown(browser)
    assert len(first_page) == 25 and "page 1 of" in browser.find_element(By.ID, "page-info").text

    Select(browser.find_element(By.ID, "f-task")).select_by_value("remove")
    rows = shown(browser)
    assert rows and {r["task"] for r in rows} == {"remove"}
    assert any(INJECTED in r["text"] for r in rows)  # markup shown as the text it is ...
    assert browser.execute_script("return window.__pwned === undefined")  # ... and never run
    Select(browser.find_element(By.ID, "f-status")).select_by_value("rejected")
    rows = shown(browser)
    assert rows and {(r["task"], r["status"]) for r in rows} == {("remove", "rejected")}
    Select(browser.find_element(By.ID, "f-task")).select_by_value("")
    Select(browser.find_element(By.ID, "f-status")).select_by_value("")

    Select(browser.find_element(By.ID, "sort")).select_by_value("inside_change")
    values = [r["scores"]["inside_change"] for r in shown(browser)]
    assert len(values) == 25 and values == sorted(values, reverse=True)
    Select(browser.find_element(By.ID, "sort-dir")).select_by_value("asc")
    values = [r["scores"]["inside_change"] for r in shown(browser)]
    assert values == sorted(values) and values[0] < values[-1]
    Select(browser.find_element(By.ID, "sort")).select_by_value("")

    browser.find_element(By.ID, "next").click()
    second_page = shown(browser)
    assert "page 2 of" in browser.find_element(By.ID, "page-info").text
    assert second_page and not {r["key"] for r in second_page} & {r["key"] for r in first_page[:1]}
    assert [r["key"] for r in second_page] != [r["key"] for r in first_page]
    browser.find_element(By.ID, "prev").click()
    assert [r["key"] for r in shown(browser)] == [r["key"] for r in first_page]

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.2)
    browser.save_screenshot(str(tmp_path / "report.png"))
    if os.environ.get("DATAGEN_SCREENSHOT_DIR"):
        Path(os.environ["DATAGEN_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(os.environ["DATAGEN_SCREENSHOT_DIR"]) / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
