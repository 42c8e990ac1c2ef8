"""`datagen review` in real Chromium: labels given from the keyboard land in OUT/labels/ as they are given, survive
a SIGKILLed server, resume at the next unlabelled item, and a second annotator labels the same items; the server
answers only its own page (token, Host, Origin)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import DATAGEN, REPO, manifest_rows

from datagen.review.sample import choose
from datagen.shards import RunFolder


def start(out: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*DATAGEN, "review", str(out), "--n", "40", "--no-browser"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("open: "):
            return proc, line.split(" ", 1)[1].strip()
    raise AssertionError(f"no URL: {proc.stderr.read()}")


def test_the_sample_is_stratified_and_the_same_for_a_seed(rejects_kept_run):
    run = RunFolder(str(rejects_kept_run))
    items = choose(run, 40, seed=0)
    assert [(i.key, i.candidate) for i in items] == [(i.key, i.candidate) for i in choose(run, 40, seed=0)]
    statuses = [i.status for i in items]
    rows = manifest_rows(rejects_kept_run)
    kept, rejected = (sum(r["status"] == status for r in rows) for status in ("kept", "rejected"))
    share = min(kept, max(20, 40 - rejected))  # half each, the rest from the other status where one runs short
    assert statuses.count("kept") == share and statuses.count("rejected") == 40 - share
    rejected_gt = sorted(i.scores["gt_l1"] for i in items if i.status == "rejected")
    all_rejected = sorted(r["score_gt_l1"] for r in manifest_rows(rejects_kept_run) if r["status"] == "rejected")
    assert (
        rejected_gt[0] <= all_rejected[len(all_rejected) // 10]
        and rejected_gt[-1] >= all_rejected[-len(all_rejected) // 10 - 1]
    )


def _label(browser, keys: str, saved: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    ActionChains(browser).send_keys(keys).perform()
    WebDriverWait(browser, 20).until(lambda b: b.execute_script("return document.body.dataset.saved") == str(saved))
    assert browser.find_element("id", "verdict").text in ("kept", "rejected")  # revealed only now
    ActionChains(browser).send_keys("\ue007").perform()  # Enter: the next item


def _name(browser, name: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(lambda b: b.find_element("id", "name").is_displayed())
    field = browser.find_element("id", "name")
    field.clear()
    field.send_keys(name + "\n")
    WebDriverWait(browser, 20).until(lambda b: b.find_element("id", "instruction").text)


def test_label_thirty_pairs_kill_the_server_resume_and_a_second_annotator(browser, rejects_kept_run, tmp_path):
    import shutil

    from selenium.webdriver.support.ui import WebDriverWait

    out = tmp_path / "run"
    shutil.copytree(rejects_kept_run, out)
    proc, url = start(out)
    try:
        browser.get(url)
        _name(browser, "ann-one")
        assert browser.execute_script("return document.getElementById('instruction').children.length") == 0
        assert not browser.find_element("id", "reveal").is_displayed(), "the gates' verdict is hidden until labelled"
        given = []
        for n in range(30):
            verdict = "gbu"[n % 3]
            _label(browser, ("1" if n % 2 else "") + verdict, n + 1)
            given.append({"g": "good", "b": "bad", "u": "unsure"}[verdict])
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lines = (out / "labels" / "review-ann-one.jsonl").read_text().splitlines()
    labels = [json.loads(line) for line in lines]
    assert [x["label"] for x in labels] == given, "every label given before the kill, in order"
    assert [x["aspects"] for x in labels] == [{"follows": True} if n % 2 else {} for n in range(30)]
    items = choose(RunFolder(str(out)), 40, seed=0)
    assert [(x["key"], x["candidate"]) for x in labels] == [(i.key, i.candidate) for i in items[:30]]

    proc, url = start(out)
    try:
        browser.get(url)  # another port: another origin, so the name is asked again
        _name(browser, "ann-one")
        assert browser.find_element("id", "number").text == "31 / 40", "resumed at the next unlabelled item"
        assert browser.find_element("id", "progress").text == "30 of 40 labelled"
        _label(browser, "g", 31)
        browser.find_element("id", "switch").click()
        _name(browser, "ann-two")
        assert browser.find_element("id", "number").text == "1 / 40"
        for n in range(3):
            _label(browser, "b", n + 1)
        WebDriverWait(browser, 5).until(lambda b: b.find_element("id", "progress").text == "3 of 40 labelled")
        token = url.split("token=")[1]
        port = url.split(":")[2].split("/")[0]
        _refused(f"http://127.0.0.1:{port}/api/state?annotator=ann-one")  # no token
        _refused(f"http://127.0.0.1:{port}/api/state?token=wrong")
        _refused(f"http://127.0.0.1:{port}/?token={token}", headers={"Host": f"evil.example:{port}"})  # rebinding
        body = json.dumps({"id": 0, "label": "good", "annotator": "mallory", "aspects": {}}).encode()
        _refused(f"http://127.0.0.1:{port}/api/label?token={token}", body, {"Origin": "http://evil.example"})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len((out / "labels" / "review-ann-one.jsonl").read_text().splitlines()) == 31
    assert len((out / "labels" / "review-ann-two.jsonl").read_text().splitlines()) == 3
    assert not (out / "labels" / "review-mallory.jsonl").exists()


def _refused(url: str, data: bytes | None = None, headers: dict | None = None) -> None:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
