"""Workers that cannot start, and workers lost with their node: bounded, clear, and exactly once.

The node-loss test starts a real two-node Ray cluster with `ray start` on loopback (127.0.0.2: Ray turns 127.0.0.1
into the machine's outward address) and kills the worker node's processes in the middle of a run.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import DATAGEN, FAST, REPO, committed_checksums, run_cli, run_inline

from datagen.shards import verify


def _events(stderr: str, name: str) -> list[dict]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


def test_a_worker_whose_model_cannot_load_fails_its_shards_after_bounded_restarts(tmp_path, tiny_dir, ray_cluster):
    from datagen.models import tiny

    good = tiny.resolve("tiny:clip")
    broken = tmp_path / "clip"
    shutil.copytree(good, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated download
    out = tmp_path / "run"
    args = ["--task", "color", "--pipeline", "tiny", "--n", "4", "--shard-size", "2", "--out", str(out),
            "--no-progress", "--set", f"pipeline.roles.clip.model={broken}",
            "--set", "pipeline.actor.max_restarts=2"]  # fmt: skip

    proc = run_inline("generate", "--workers", "0", *args, check=False)  # inline: nothing attempted, all shards failed
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "FAILED shards: 2" in proc.stdout and "worker could not start:" in proc.stdout
    failure = json.loads((out / "failed" / "color-000000.json").read_text())
    assert failure["error"].startswith(f"worker could not start: ModelLoadError: the clip model {str(broken)!r}")
    assert "SafetensorError" in failure["error"] and "SafetensorError" in failure["traceback"]
    assert len(list((out / "texts").glob("*.stats.json"))) == 2  # the write phase (the LLM) was unaffected

    env = {"RAY_ADDRESS": ray_cluster}
    started = time.monotonic()
    proc = run_cli("render", "--out", str(out), "--workers", "1", "--no-progress", env=env, check=False, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lost = _events(proc.stderr, "worker_lost")
    assert len(lost) == 3, proc.stderr  # the first worker and its two replacements: then the run stops trying
    assert all(e["error"].startswith("worker could not start:") for e in lost)
    assert [e["replacements_left"] for e in lost] == [2, 1, 0]
    assert "FAILED shards: 2" in proc.stdout and "no worker left after 2 restart(s) per worker" in proc.stdout
    failure = json.loads((out / "failed" / "color-000001.json").read_text())
    assert "worker could not start:" in failure["error"] and "Error" in failure["error"]
    assert not list((out / "shards").glob("*.stats.json"))
    assert time.monotonic() - started < 300

    shutil.copy(good / "model.safetensors", weights)  # the model fixed in place: the same run resumes and completes
    proc = run_inline("render", "--out", str(out), "--workers", "0", "--no-progress")
    assert "2/2 shards done" in proc.stdout and not list((out / "failed").glob("*.json"))
    assert not verify(str(out)).problems


def test_a_judge_whose_weights_are_missing_stops_the_worker_at_its_start(tmp_path, tiny_dir):
    """The judge loads with the rest when the worker starts (resolve.roles_used names it), not inside the first
    shard: a judge that cannot load stops the worker once, with the load error, before it takes a shard."""
    from datagen.distribute import run_inline
    from datagen.models import tiny
    from datagen.resolve import load_run, roles_used

    broken = tmp_path / "judge"
    shutil.copytree(tiny.resolve("tiny:vlm"), broken)
    (broken / "model.safetensors").unlink()  # weights missing, config and tokenizer there
    config = load_run("color", "tiny", out=str(tmp_path / "run"), n=4, shard_size=2,
                      overrides=[f"pipeline.roles.judge.model={broken}"])  # fmt: skip
    assert roles_used(config, "render")["judge"] == "score"
    results = []
    run_inline([config], "render", [("color", 0), ("color", 1)], lambda *call, **kw: results.append(call) or True)
    assert [(item, attempts) for item, _, attempts in results] == [(("color", 0), 0), (("color", 1), 0)]
    error = results[0][1]["error"]
    assert error.startswith(f"worker could not start: ModelLoadError: the judge model {str(broken)!r} (vllm)")
    assert not (tmp_path / "run" / "shards").exists()  # no shard was begun


# ------------------------------------------------------------------------------------------- node loss


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _kill_session(sid: int) -> None:
    """SIGKILL every process of a session: `ray start --block` and everything it spawned (raylet, workers)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            try:
                os.kill(int(stat.split("/")[2]), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _titles(sid: int) -> list[str]:
    """The command lines of a session's processes; a Ray worker's names the actor method it runs."""
    titles = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            if int(Path(stat).read_text().rsplit(")", 1)[1].split()[3]) == sid:
                titles.append(Path(stat).with_name("cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue
    return titles


class Cluster:
    """A head node and worker nodes, each its own `ray start --block` process session, all on 127.0.0.2."""

    HOST = "127.0.0.2"

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port(self.HOST)
        self.address = f"{self.HOST}:{self.port}"
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[subprocess.Popen] = []

    def start(self, cpus: int, head: bool = False) -> subprocess.Popen:
        ray = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--disable-usage-stats"]
        where = [f"--address={self.address}"]
        if head:
            where = ["--head", f"--port={self.port}", "--include-dashboard=false"]
        log = open(self.root / f"node{len(self.nodes)}.log", "w")  # noqa: SIM115 - lives as long as the node
        node = subprocess.Popen(
            [*ray, *where, f"--node-ip-address={self.HOST}", f"--num-cpus={cpus}", f"--temp-dir={self.root / 'ray'}"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.nodes.append(node)
        return node

    def wait_for_cpus(self, cpus: int, timeout: float = 120) -> None:
        script = "import ray; ray.init(logging_level='ERROR'); print(ray.cluster_resources().get('CPU', 0))"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = subprocess.run(
                [sys.executable, "-c", script], env={**self.env, "RAY_ADDRESS": self.address},
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if proc.returncode == 0 and float(proc.stdout.strip().splitlines()[-1]) >= cpus:
                return
            time.sleep(1)
        raise AssertionError(f"the cluster never had {cpus} CPUs; logs in {self.root}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            _kill_session(node.pid)
            node.wait(timeout=30)


@pytest.fixture
def cluster():
    root = Path(tempfile.mkdtemp(prefix="dgray", dir="/tmp"))  # Ray's socket paths must stay short
    cluster = Cluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_losing_a_worker_node_mid_run_still_commits_every_shard_exactly_once(cluster, tmp_path):
    # enough shards that the render is still under way when the node dies, however fast this machine renders
    args = ["--task", "remove", "--n", "480", "--shard-size", "4", "--no-progress", *FAST]
    reference = tmp_path / "reference"
    run_cli("generate", "--out", str(reference), "--workers", "0", *args)

    cluster.start(cpus=1, head=True)
    worker_node = cluster.start(cpus=2)
    cluster.wait_for_cpus(3)
    out = tmp_path / "run"
    run = subprocess.Popen(
        [*DATAGEN, "generate", "--out", str(out), *args], cwd=REPO, text=True,
        env={**cluster.env, "RAY_ADDRESS": cluster.address}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    # the render is under way and a worker on the node to kill holds a shard: shards done are no proof of that,
    # as the one worker on the head can finish several while the node's workers still load their models
    deadline = time.monotonic() + 300
    while len(list((out / "shards").glob("*.stats.json"))) < 4 or not any(
        title.startswith("ray::MixtureWorker.run") for title in _titles(worker_node.pid)
    ):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before the node could be killed"
        time.sleep(0.2)
    _kill_session(worker_node.pid)
    stdout, stderr = run.communicate(timeout=600)

    assert run.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr
    lost = _events(stderr, "worker_lost")
    assert lost and all(e["error"].startswith("worker died:") for e in lost), stderr
    assert "120/120 shards done" in stdout
    # every shard, byte for byte: nothing lost, nothing twice
    assert committed_checksums(out) == committed_checksums(reference)
    assert not verify(str(out)).problems
    assert not list((out / "shards").glob(".*")) and not list((out / "failed").glob("*.json"))
