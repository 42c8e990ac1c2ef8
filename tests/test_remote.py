"""OUT on an object store: write, render, verify, resume and read back through a real S3 server (moto) on loopback."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time

import pytest
from conftest import DATAGEN, FAST, REPO, committed_checksums, run_inline

if importlib.util.find_spec("moto") is None:  # found, not imported: see `s3` below
    pytest.skip("moto[server] is a dev dependency: make install", allow_module_level=True)

ARGS = ["--task", "remove", "--n", "96", "--shard-size", "12", "--workers", "0", "--no-progress", *FAST]
BUCKET = "datagen-test"


@pytest.fixture(scope="module")
def s3(moto_s3):
    client, env = moto_s3
    client.create_bucket(Bucket=BUCKET)
    return client, env


def _objects(client, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for entry in page.get("Contents", []):
            found[entry["Key"][len(prefix) :]] = client.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
    return found


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_inline("generate", "--out", str(out), *ARGS)
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    return out, committed_checksums(files)


def test_a_run_on_s3_is_byte_identical_to_a_local_one_and_verifies(s3, local_reference, tmp_path):
    client, env = s3
    proc = run_inline("generate", "--out", f"s3://{BUCKET}/whole", *ARGS)
    assert "8/8 shards done" in proc.stdout
    files = _objects(client, "whole/")
    assert "run.json" in files and not any(n.startswith(".") or "/." in n for n in files), "no temporaries"
    assert committed_checksums(files) == local_reference[1] and len(local_reference[1]) == 8
    proc = run_inline("verify", f"s3://{BUCKET}/whole")
    assert "8 committed shards" in proc.stdout and proc.stdout.strip().endswith("OK")

    # the rest of the tools read the bucket too
    run_inline("report", f"s3://{BUCKET}/whole", "--dest", str(tmp_path / "report"))
    assert (tmp_path / "report" / "index.html").is_file() and any((tmp_path / "report" / "thumbs").iterdir())
    assert "remove_000000_00000" in run_inline("show", f"s3://{BUCKET}/whole", "--n", "1").stdout
    run_inline("export", f"s3://{BUCKET}/whole", f"s3://{BUCKET}/exported", "--format", "hf-parquet")
    exported = _objects(client, "exported/")
    assert sum(n.endswith(".parquet") for n in exported) == 8 and ".datagen-export.json" in exported

    # a corrupted object is caught the same way as on disk
    name = "whole/shards/remove-000003.tar"
    data = client.get_object(Bucket=BUCKET, Key=name)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=name, Body=data[: len(data) // 2])
    proc = run_inline("verify", f"s3://{BUCKET}/whole", check=False)
    assert proc.returncode != 0 and "remove-000003.tar" in proc.stdout + proc.stderr


def test_a_killed_run_on_s3_resumes_to_the_same_shards(s3, local_reference):
    client, env = s3
    prefix = "killed/"
    proc = subprocess.Popen(
        [*DATAGEN, "generate", "--out", f"s3://{BUCKET}/killed", *ARGS],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "shards/").get("Contents", [])
            if sum(e["Key"].endswith(".stats.json") for e in listed) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # what a crash between a shard's objects and its marker leaves: finals with no marker, to be redone
    client.put_object(Bucket=BUCKET, Key=prefix + "shards/remove-000007.tar", Body=b"half a shard")
    client.put_object(Bucket=BUCKET, Key=prefix + "shards/remove-000007.parquet", Body=b"not parquet")
    before = committed_checksums(_objects(client, prefix))
    assert 3 <= len(before) < 8

    run_inline("verify", f"s3://{BUCKET}/killed")  # uncommitted leftovers are ignored, not errors
    proc = run_inline("generate", "--out", f"s3://{BUCKET}/killed", "--no-progress", "--workers", "0")
    assert f"({len(before)} already committed)" in proc.stdout
    after = _objects(client, prefix)
    assert committed_checksums(after) == local_reference[1]
    assert run_inline("verify", f"s3://{BUCKET}/killed").stdout.strip().endswith("OK")
    assert after["shards/remove-000007.tar"] != b"half a shard"


def test_the_trainer_reads_committed_shards_from_s3(s3, local_reference):
    from datagen.shards import tar_urls
    from datagen.train import TrainConfig, read_samples

    client, env = s3
    run_inline("generate", "--out", f"s3://{BUCKET}/train", *ARGS)
    client.put_object(Bucket=BUCKET, Key="train/shards/remove-000099.tar", Body=b"uncommitted")  # no marker
    urls = tar_urls([f"s3://{BUCKET}/train"])
    assert len(urls) == 8 and all(u.startswith("s3://") for u in urls) and not any("000099" in u for u in urls)
    config = TrainConfig(shards=[f"s3://{BUCKET}/train"], out="unused", tasks=["remove"], shuffle=1)
    samples = read_samples(config, urls)
    keys = set()
    for sample in samples:
        keys.add(sample["key"])
        if len(keys) == 20:
            break
    assert len(keys) == 20 and all(k.startswith("remove_") for k in keys)


def test_a_missing_bucket_is_a_clear_error(s3):
    _, env = s3
    proc = run_inline("generate", "--out", "s3://no-such-bucket/run", *ARGS, check=False)
    assert proc.returncode != 0
    assert "s3://no-such-bucket/run" in proc.stderr and "run.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_photos_curated_from_webdataset_tars_on_s3_feed_a_run(s3, tmp_path):
    """`curate --source shards --input s3://…/{000..002}.tar --out s3://…` (a WebDataset brace pattern, read in
    place through fsspec), then `generate --source curated --input s3://…`: the copies across tars are found, the
    run reads the kept photos from the bucket."""
    import json

    import webdataset as wds

    from datagen import images
    from datagen.text_photos import photo

    client, env = s3
    names = ("astronaut", "coffee", "chelsea")
    for number, name in enumerate(names):
        tar = tmp_path / f"{number:03d}.tar"
        with wds.TarWriter(str(tar)) as sink:
            sink.write({"__key__": f"{name}", "png": images.encode(photo(name), "png"), "txt": f"a photo of {name}"})
            other = names[(number + 1) % len(names)]  # each tar also holds a JPEG copy of the next photo
            sink.write({"__key__": f"{other}-copy", "jpg": images.encode(photo(other), "jpg", 70),
                        "txt": f"a photo of {other}"})  # fmt: skip
        client.upload_file(str(tar), BUCKET, f"laion/{tar.name}")
    proc = run_inline("curate", "--source", "shards", "--input", f"s3://{BUCKET}/laion/{{000..002}}.tar", "--out",
                   f"s3://{BUCKET}/curated", "--no-progress")  # fmt: skip
    assert "curated 6 inputs: dropped by the gates none; near-duplicates 3; kept 3" in proc.stdout, proc.stdout
    files = _objects(client, "curated/")
    assert {"curate.json", "duplicates.parquet", "duplicates.stats.json", "inputs/curate-000000.stats.json"} <= set(
        files
    )
    assert json.loads(files["curate.json"])["input"] == f"s3://{BUCKET}/laion/{{000..002}}.tar"
    run_inline("generate", "--task", "color", "--source", "curated", "--input", f"s3://{BUCKET}/curated", "--n", "3",
            "--out", str(tmp_path / "run"), "--workers", "0", "--no-progress", *FAST)  # fmt: skip
    texts = [json.loads(line) for line in (tmp_path / "run" / "texts" / "color-000000.jsonl").read_text().splitlines()]
    # one of each photo: of two copies at one resolution, the first in committed order (the curated key)
    assert sorted(t["source"]["of"]["key"] for t in texts) == ["astronaut", "chelsea-copy", "coffee-copy"]
    assert all(t["status"] == "ok" for t in texts)


def test_an_img2dataset_folder_on_s3_is_read_as_it_is_and_makes_the_same_bytes_as_locally(s3, tmp_path):
    """img2dataset's `files` layout: 00000/KEY.jpg with KEY.txt, or only KEY.json {url, width, height, ...} and the
    caption in 00000.parquet beside the folder (a failed row there has no image). `--source images --input s3://…`
    reads it in place; the run's bytes equal those of the same folder read locally."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from datagen import images
    from datagen.text_photos import photo

    client, _ = s3
    root = tmp_path / "img2dataset"
    (root / "00000").mkdir(parents=True)
    rows = []
    for n, name in enumerate(("astronaut", "coffee", "missing")):
        key = f"{n:09d}"
        rows.append({"url": f"https://example.com/{name}.jpg", "key": key, "caption": f"a photo of the {name}",
                     "status": "failed_to_download" if name == "missing" else "success"})  # fmt: skip
        if name == "missing":
            continue
        (root / "00000" / f"{key}.jpg").write_bytes(images.encode(photo(name), "jpg", 90))
        meta = {"url": rows[-1]["url"], "key": key, "width": photo(name).shape[1], "height": photo(name).shape[0]}
        (root / "00000" / f"{key}.json").write_text(json.dumps(meta))
        if n == 0:
            (root / "00000" / f"{key}.txt").write_text("an astronaut in a white suit")
    pq.write_table(pa.Table.from_pylist(rows), root / "00000.parquet")
    for path in root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"img2dataset/{path.relative_to(root)}")
    args = ["--task", "color", "--source", "images", "--n", "2", "--workers", "0", "--no-progress"]
    run_inline("generate", *args, "--input", str(root), "--out", str(tmp_path / "local"))
    run_inline("generate", *args, "--input", f"s3://{BUCKET}/img2dataset", "--out", str(tmp_path / "s3"))
    assert committed_checksums(tmp_path / "s3") == committed_checksums(tmp_path / "local")
    texts = [json.loads(line) for line in (tmp_path / "s3" / "texts" / "color-000000.jsonl").open()]
    assert [t["input_caption"] for t in texts] == ["an astronaut in a white suit", "a photo of the coffee"]
    assert all(t["status"] == "ok" for t in texts)
    assert [t["source"]["path"] for t in texts] == ["00000/000000000.jpg", "00000/000000001.jpg"]
