"""One live writer per OUT (issue 17): the lease in OUT, its heartbeat, takeover when stale, refusal while fresh,
on local disk with real processes and on a real S3 server (moto) on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO

from datagen import lease as lease_module
from datagen.errors import RunStopped
from datagen.lease import LEASE_NAME, Lease, LeaseHeld, LeaseLost, check_held, read_lease, still_held
from datagen.storage import Folder

HOLD = """
import sys, time
from datagen.lease import Lease
lease = Lease.acquire(sys.argv[1], holder="datagen generate --out " + sys.argv[1], ttl=float(sys.argv[2]))
print(lease.token, flush=True)
time.sleep(120)
"""
"""A driver that takes the lease and keeps it alive until it is killed."""

RACE = """
import sys
from datagen.lease import Lease, LeaseHeld
print("ready", flush=True)
sys.stdin.readline()  # every racer has imported datagen: start together
try:
    print("won", Lease.acquire(sys.argv[1], ttl=10.0, heartbeat=False, settle=3.0).token, flush=True)
except LeaseHeld as e:
    print("refused", e, flush=True)
"""
"""One of several acquirers started at the same moment; each reads back 3 s after writing (a long settle, so that a
racer stalled by a loaded machine between its check and its write still writes before the others read back)."""


def _wait_for(condition, timeout: float, step: float = 0.02) -> float:
    """Poll until `condition()`; returns the seconds waited, fails the test after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"still not true after {timeout} s: {condition}")
        time.sleep(step)
    return time.monotonic() - started


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True, **kwargs)


def _competitor(folder: Folder, ttl: float = 30.0) -> Lease:
    """Another writer's fresh lease, written over whatever is there (as an acquirer that raced us would)."""
    other = Lease(
        folder, "f" * 32, {"host": "elsewhere", "pid": 4242, "command": "datagen generate"}, ttl, time.time()
    )
    other._write()
    return other


# ----------------------------------------------------------------------------------------------- local disk


def test_a_killed_writer_keeps_OUT_until_its_heartbeat_is_stale_then_is_taken_over(tmp_path):
    out, ttl = str(tmp_path / "run"), 2.0
    holder = _python(HOLD, out, str(ttl), stdout=subprocess.PIPE)
    try:
        old = holder.stdout.readline().strip()
        assert len(old) == 32
        time.sleep(ttl + 0.3)  # alive past one ttl: its heartbeat keeps the lease fresh
        with pytest.raises(LeaseHeld) as refused:
            Lease.acquire(out, ttl=ttl)
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and f"datagen generate --out {out}" in message
        assert "heartbeat is older than 2 s" in message and "taken over" in message and out in message
        assert isinstance(refused.value, RunStopped)  # the CLI prints it as one line
        assert still_held(out, old)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    last = read_lease(out)
    assert last["token"] == old and last["holder"]["pid"] == holder.pid
    # as if it had run on another host, which cannot be asked whether the process lives: only the heartbeat tells
    Folder(out).write_atomic(
        LEASE_NAME, json.dumps({**last, "holder": {**last["holder"], "host": "elsewhere"}}).encode()
    )

    with pytest.raises(LeaseHeld):  # killed, but its heartbeat is younger than the ttl
        Lease.acquire(out, ttl=ttl)
    _wait_for(lambda: not still_held(out, old), timeout=ttl)  # its workers stop committing at half the ttl ...
    assert time.time() - last["renewed"] >= ttl / 2
    with pytest.raises(LeaseHeld):  # ... well before anyone may take over
        Lease.acquire(out, ttl=ttl)
    assert read_lease(out)["token"] == old

    deadline = time.monotonic() + 2 * ttl
    while True:
        try:
            new = Lease.acquire(out, ttl=ttl)
            break
        except LeaseHeld:
            assert time.monotonic() < deadline, "a stale lease must be taken over"
            time.sleep(0.05)
    try:
        assert time.time() - last["renewed"] >= ttl
        assert new.took_over["token"] == old and new.took_over["holder"]["pid"] == holder.pid
        assert still_held(out, new.token) and not still_held(out, old)
        with pytest.raises(LeaseLost, match="another datagen took over"):  # what the killed run's workers hear
            check_held(out, old)
        check_held(out, new.token)
    finally:
        new.release()

    with Lease.acquire(out, ttl=ttl) as new:  # released: a plain acquire, no takeover
        assert new.took_over is None and new.token != old
    _competitor(Folder(out), ttl=0.01)  # a stale lease of a killed writer
    time.sleep(0.05)
    with Lease.acquire(out, ttl=ttl) as new:
        assert new.took_over["token"] == "f" * 32 and new.took_over["holder"]["pid"] == 4242


def test_a_killed_writer_on_this_host_is_taken_over_at_once(tmp_path):
    """A rerun right after a kill (the usual resume) need not wait for the ttl: the holder's process is gone."""
    out = str(tmp_path / "run")
    holder = _python(HOLD, out, "30", stdout=subprocess.PIPE)
    old = holder.stdout.readline().strip()
    with pytest.raises(LeaseHeld):  # alive: refused
        Lease.acquire(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with Lease.acquire(out) as new:
        assert new.took_over["token"] == old and new.took_over["holder"]["pid"] == holder.pid
        assert not still_held(out, old)


def test_the_lease_file_names_its_holder_and_release_removes_it(tmp_path):
    out = Folder(tmp_path / "run")
    with Lease.acquire(out, holder="datagen generate --task remove", ttl=5.0) as lease:
        record = json.loads((tmp_path / "run" / LEASE_NAME).read_text())
        assert record["token"] == lease.token and record["ttl"] == 5.0
        assert record["holder"] == {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": "datagen generate --task remove",
        }
        assert abs(record["renewed"] - time.time()) < 2 and record["started"] == lease.started
        assert lease.took_over is None
    assert not (tmp_path / "run" / LEASE_NAME).exists()
    assert not still_held(out, lease.token)
    with pytest.raises(LeaseLost, match="lease is gone"):
        check_held(out, lease.token)

    (tmp_path / "run" / LEASE_NAME).write_text("not json")  # unreadable: taken over, not a crash
    lease = Lease.acquire(out, ttl=2.0, heartbeat=False)
    assert read_lease(out)["token"] == lease.token
    lease.release()
    assert not (tmp_path / "run" / LEASE_NAME).exists()

    (tmp_path / "a-file").write_text("")  # OUT that cannot be written: one clear line, no traceback
    with pytest.raises(RunStopped, match=f"a-file/run: cannot write the writer's lease {LEASE_NAME}"):
        Lease.acquire(str(tmp_path / "a-file" / "run"))


def test_the_heartbeat_keeps_a_lease_fresh_and_stops_when_another_writer_took_it(tmp_path):
    out = Folder(tmp_path / "run")
    lease = Lease.acquire(out, ttl=0.4)  # a beat every 0.1 s
    try:
        time.sleep(0.7)
        assert read_lease(out)["renewed"] > lease.started + 0.3
        with pytest.raises(LeaseHeld):
            Lease.acquire(out, ttl=0.4)
        lease.check()

        other = _competitor(out)
        _wait_for(lambda: lease.lost, timeout=2)
        time.sleep(0.25)
        assert read_lease(out)["token"] == other.token, "the heartbeat must not write over another writer's lease"
        with pytest.raises(LeaseLost, match="took over the writer's lease"):
            lease.check()
    finally:
        lease.release()
    assert read_lease(out)["token"] == other.token, "release leaves another writer's lease alone"


def test_of_two_acquirers_at_once_the_last_writer_wins_and_the_other_refuses(tmp_path, monkeypatch):
    out = Folder(tmp_path / "run")
    rivals = []
    monkeypatch.setattr(lease_module, "_settle", lambda seconds: rivals.append(_competitor(out)))
    with pytest.raises(LeaseHeld, match="at the same moment") as refused:
        Lease.acquire(out, ttl=5.0)
    assert "pid 4242" in str(refused.value)
    assert len(rivals) == 1 and read_lease(out)["token"] == rivals[0].token


def test_acquirers_racing_in_separate_processes_leave_exactly_one_writer(tmp_path):
    out = str(tmp_path / "run")
    racers = [_python(RACE, out, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(3)]
    try:
        assert [racer.stdout.readline().strip() for racer in racers] == ["ready"] * 3
        for racer in racers:
            racer.stdin.write("go\n")
        for racer in racers:
            racer.stdin.flush()
        answers = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    won = [a.split()[1] for a in answers if a.startswith("won ")]
    assert len(won) == 1, answers
    assert sum(a.startswith("refused ") for a in answers) == 2, answers
    assert read_lease(out)["token"] == won[0]


# ----------------------------------------------------------------------------------------------------- S3

BUCKET = "datagen-lease"


@pytest.fixture(scope="module")
def s3(moto_s3):
    client, _ = moto_s3
    client.create_bucket(Bucket=BUCKET)
    return client


def _keys(client, prefix: str) -> list[str]:
    return [e["Key"] for e in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_on_s3_a_fresh_lease_refuses_a_stale_one_is_taken_over_and_release_removes_it(s3):
    out = f"s3://{BUCKET}/run"
    with Lease.acquire(out, ttl=1.0) as first:
        assert _keys(s3, "run/") == [f"run/{LEASE_NAME}"]
        time.sleep(1.3)  # past one ttl: the heartbeat renewed it on the bucket
        with pytest.raises(LeaseHeld, match=f"s3://{BUCKET}/run"):
            Lease.acquire(out, ttl=1.0)
        assert still_held(out, first.token)
    assert _keys(s3, "run/") == []

    killed = Lease.acquire(out, ttl=0.6, heartbeat=False)  # a driver that stopped beating
    _wait_for(lambda: not still_held(out, killed.token), timeout=2)
    time.sleep(0.65)
    with Lease.acquire(out, ttl=1.0) as second:
        assert second.took_over["token"] == killed.token
        assert still_held(out, second.token) and not still_held(out, killed.token)
        assert (
            json.loads(s3.get_object(Bucket=BUCKET, Key=f"run/{LEASE_NAME}")["Body"].read())["token"] == second.token
        )
        killed.release()  # no longer its lease: leaves the new one
        assert read_lease(out)["token"] == second.token
    assert _keys(s3, "run/") == []
    with pytest.raises(RunStopped, match="s3://no-such-bucket/run: cannot write the writer's lease"):
        Lease.acquire("s3://no-such-bucket/run")


def test_on_s3_the_last_of_two_racing_writers_wins_and_the_heartbeat_sees_a_takeover(s3, monkeypatch):
    out = Folder(f"s3://{BUCKET}/race")
    with monkeypatch.context() as patch:
        rivals = []
        patch.setattr(lease_module, "_settle", lambda seconds: rivals.append(_competitor(out)))
        with pytest.raises(LeaseHeld, match="at the same moment"):
            Lease.acquire(out, ttl=5.0)
    assert read_lease(out)["token"] == rivals[0].token
    out.remove(LEASE_NAME)

    lease = Lease.acquire(out, ttl=0.4)
    try:
        other = _competitor(out)
        _wait_for(lambda: lease.lost, timeout=3)
        with pytest.raises(LeaseLost):
            lease.check()
    finally:
        lease.release()
    assert read_lease(out)["token"] == other.token


def test_a_second_generate_on_the_same_out_is_refused_while_the_first_runs(tmp_path):
    """Two `datagen generate` on one OUT: the second stops at once with who writes there; nothing is lost."""
    from conftest import DATAGEN, FAST, run_cli

    out = tmp_path / "run"
    args = ["generate", "--task", "remove", "--n", "400", "--shard-size", "10", "--out", str(out), "--workers", "0",
            "--no-progress", *FAST]  # fmt: skip
    first = subprocess.Popen([*DATAGEN, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (out / LEASE_NAME).exists(), timeout=60)
        second = run_cli(*args, check=False)
        assert second.returncode == 1 and "run stopped" in second.stderr, second.stderr
        assert f"pid {first.pid}" in second.stderr and "another datagen writes there since" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first run goes on"
    finally:
        first.kill()
        first.wait()
    run_cli(*args)  # killed on this host: the rerun takes the lease over at once and finishes the run
    assert len(list((out / "shards").glob("*.stats.json"))) == 40 and not (out / LEASE_NAME).exists()
