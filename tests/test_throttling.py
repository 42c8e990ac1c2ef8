"""An object store that throttles and drops connections: a fault-injecting HTTP proxy on loopback in front of the
loopback S3 server (moto) answers a share of requests 503 SlowDown, bursts of 500 InternalError longer than any SDK
retries, and resets some connections before they reach the store. With the SDK's own retries off (AWS_MAX_ATTEMPTS=1),
datagen's jittered back-off (datagen/storage.py `retrying`) alone carries a `generate` (OUT on the store) and a
`curate` (photos and OUT on the store) through, to the same bytes as a clean run."""

from __future__ import annotations

import http.client
import importlib.util
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import FAST, committed_checksums, run_inline

from datagen import storage

if importlib.util.find_spec("moto") is None:
    pytest.skip("moto[server] is a dev dependency: make install", allow_module_level=True)

BUCKET = "datagen-throttled"
ARGS = ["--task", "remove", "--n", "24", "--shard-size", "8", "--workers", "0", "--no-progress", *FAST]
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request '
    b"rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an '
    b"internal error. Please try again.</Message></Error>"
)


class FaultyProxy(ThreadingHTTPServer):
    """Forwards HTTP/1.1 requests to `upstream`, except: of every 40 requests, the first 4 are answered 500 (a burst
    the SDK alone, retrying 3 times, would not outlast), every 7th 503 SlowDown, every 13th has its connection
    reset before it reaches the store. Deterministic by request count; counts what it did."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]):
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.count = 0
        self.faults = {"internal": 0, "slow_down": 0, "reset": 0, "forwarded": 0}

    def fault(self) -> str:
        with self.lock:
            n, self.count = self.count, self.count + 1
        if n % 40 < 4:
            return "internal"
        if n % 7 == 3:
            return "slow_down"
        if n % 13 == 6:
            return "reset"
        return ""


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _relay(self) -> None:
        server: FaultyProxy = self.server
        body = self._body()
        fault = server.fault()
        with server.lock:
            server.faults[fault or "forwarded"] += 1
        if fault == "reset":  # RST, not FIN: the client sees "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if fault:
            payload, status = (INTERNAL, 500) if fault == "internal" else (SLOW_DOWN, 503)
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():  # a HEAD answer's length is the object's: kept as it is
            if key.lower() not in ("transfer-encoding", "connection", "content-length") or self.command == "HEAD":
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay


@pytest.fixture(scope="module")
def stores(moto_s3):
    """(boto3 client, the proxy): the bucket made straight on the store, every datagen call through the proxy."""
    import s3fs

    client, env = moto_s3
    client.create_bucket(Bucket=BUCKET)
    host, port = env["AWS_ENDPOINT_URL"].removeprefix("http://").split(":")
    proxy = FaultyProxy((host, int(port)))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield client, proxy
    proxy.shutdown()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def through_proxy(stores, monkeypatch):
    """Point s3fs at the faulty proxy with the SDK's own retries off; yield what datagen retried."""
    import s3fs

    _, proxy = stores
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(storage, "RETRY_CAP", 0.2)  # the test's waits short; the policy is the same
    s3fs.S3FileSystem.clear_instance_cache()
    before = storage.RETRIES.copy()
    yield lambda: storage.RETRIES - before
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_generate_through_a_throttling_store_makes_the_bytes_of_a_clean_run(stores, through_proxy, tmp_path):
    client, proxy = stores
    clean = tmp_path / "clean"
    run_inline("generate", "--out", str(clean), *ARGS)
    run_inline("generate", "--out", f"s3://{BUCKET}/throttled", *ARGS)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="throttled/"):
        for entry in page.get("Contents", []):
            key = entry["Key"].removeprefix("throttled/")
            found[key] = client.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
    assert committed_checksums(found, texts=True) == committed_checksums(clean, texts=True)
    assert len(committed_checksums(clean)) == 3
    retried = through_proxy()
    assert proxy.faults["internal"] >= 4 and proxy.faults["slow_down"] and proxy.faults["reset"], proxy.faults
    assert sum(retried.values()) >= proxy.faults["internal"] // 4, (retried, proxy.faults)


def test_a_curate_through_a_throttling_store_makes_the_bytes_of_a_clean_run(stores, through_proxy, tmp_path):
    import webdataset as wds

    from datagen import images
    from datagen.text_photos import photo

    client, proxy = stores
    tars = tmp_path / "tars"
    tars.mkdir()
    for number, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        with wds.TarWriter(str(tars / f"{number:03d}.tar")) as sink:
            sink.write({"__key__": name, "png": images.encode(photo(name), "png"), "txt": f"a photo of {name}"})
            sink.write({"__key__": f"{name}-copy", "jpg": images.encode(photo(name), "jpg", 70), "txt": "a copy"})
        client.upload_file(str(tars / f"{number:03d}.tar"), BUCKET, f"photos/{number:03d}.tar")
    clean, throttled = str(tmp_path / "clean"), f"s3://{BUCKET}/curated"
    expected = run_inline(
        "curate", "--source", "shards", "--input", str(tars), "--out", clean, "--shard-size", "3", "--no-progress"
    ).stdout
    got = run_inline(
        "curate",
        "--source",
        "shards",
        "--input",
        f"s3://{BUCKET}/photos/{{000..003}}.tar",
        "--out",
        throttled,
        "--shard-size",
        "3",
        "--no-progress",
    ).stdout
    assert (
        got.splitlines()[0]
        == expected.splitlines()[0]
        == ("curated 8 inputs: dropped by the gates none; near-duplicates 4; kept 4")
    )
    local = {str(p.relative_to(clean)): p.read_bytes() for p in Path(clean).rglob("*.parquet")}
    remote = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="curated/"):
        for entry in page.get("Contents", []):
            if entry["Key"].endswith(".parquet"):
                remote[entry["Key"].removeprefix("curated/")] = client.get_object(Bucket=BUCKET, Key=entry["Key"])[
                    "Body"
                ].read()
    assert remote == local and len(local) == 4  # rows name each tar by its name, the same in both
    assert sum(through_proxy().values()) > 0 and proxy.faults["reset"] > 0
