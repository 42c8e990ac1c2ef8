"""Safe by default: pickled weights are never loaded, keys and member names are checked exactly, and the package
runs nothing through a shell, evaluates no strings and unpickles nothing."""

from __future__ import annotations

import ast
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from datagen.config import RoleSpec
from datagen.record import EditRecord

PACKAGE = Path(__file__).resolve().parent.parent / "datagen"


class _Payload:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_model_folder_with_pickled_weights_is_refused_without_unpickling(tiny_dir, tmp_path):
    from datagen.models import tiny
    from datagen.models.embeddings import CLIPEmbedder

    folder = tmp_path / "clip"
    shutil.copytree(tiny.resolve("tiny:clip"), folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _Payload(marker)}))
    embedder = CLIPEmbedder(RoleSpec(backend="clip", model=str(folder)))
    with pytest.raises(OSError, match="safetensors"):
        embedder.load()
    assert not marker.exists(), "the pickle was never opened"


@pytest.mark.parametrize("key", ["remove_000000_00000\n", "../remove_000000_00000", "remove_000000_00000.x", ""])
def test_the_shard_writer_refuses_malformed_keys(tmp_path, key):
    from datagen.shards import TarShardWriter
    from datagen.storage import Folder

    image = np.zeros((8, 8, 3), np.uint8)
    record = EditRecord(key=key, task="remove", shard=0, index=0, seed=0, source={}, input_caption="",
                        instruction="x", output_caption="", input_image=image, output_image=image,
                        mask=np.zeros((8, 8), np.uint8))  # fmt: skip
    writer = TarShardWriter(Folder(tmp_path), "remove-000000.tar", "png", 90, 1)
    with pytest.raises(ValueError, match="sample key"):
        writer.add(record)
    writer.abort()
    assert list(tmp_path.iterdir()) == [], "nothing left behind"


FORBIDDEN_CALLS = {
    ("os", "system"), ("os", "popen"), ("pickle", "load"), ("pickle", "loads"), ("torch", "load"),
    ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("marshal", "loads"),
}  # fmt: skip
FORBIDDEN_MODULES = {"subprocess", "pickle", "shelve", "marshal", "dill"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}: imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile"):
                found.append(f"{where}: calls {func.id}()")
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if (func.value.id, func.attr) in FORBIDDEN_CALLS:
                    found.append(f"{where}: calls {func.value.id}.{func.attr}()")
            for kw in node.keywords:
                value = kw.value
                if kw.arg in ("trust_remote_code", "shell") and not (
                    isinstance(value, ast.Constant) and not value.value
                ):
                    found.append(f"{where}: passes {kw.arg}={ast.unparse(value)}")
                if kw.arg == "use_safetensors" and not (isinstance(value, ast.Constant) and value.value is True):
                    found.append(f"{where}: passes use_safetensors={ast.unparse(value)}")
    return found


def test_the_package_runs_no_shell_evaluates_no_strings_and_unpickles_nothing():
    found = [v for path in sorted(PACKAGE.rglob("*.py")) for v in _violations(path)]
    assert found == [], "\n".join(found)


def test_the_scan_catches_what_it_forbids(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import subprocess\nimport torch\nx = torch.load('w.bin')\n"
        "m = M.from_pretrained(p, trust_remote_code=True)\ny = eval('1')\n"
        "z = M.from_pretrained(p, use_safetensors=False)\nos.system(cmd)\n"
    )
    assert len(_violations(probe)) == 6, _violations(probe)
