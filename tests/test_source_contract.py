"""Every registered source kind keeps the `Source` protocol: built from an --input through the registry, it names
itself, counts its inputs, gives JSON references that come back the same from the write phase, and turns each into
the writer's item and the render's input. A kind is tested because it is in `sources.SOURCES`, with no list here;
a new kind adds its small example input to EXAMPLES."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from datagen import images
from datagen.config import TaskSpec, config_root, known, read_yaml
from datagen.errors import ConfigError
from datagen.sources import SOURCES, LoadedInput, Source, SourceItem, build_source, check_source

BUCKETS = [(48, 32), (32, 48)]
"""Two buckets, so that fitted images show which one they went to."""


def _picture(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _images(root: Path) -> str:
    (root / "photos").mkdir()
    (root / "photos" / "wide.png").write_bytes(images.encode(_picture(40, 64), "png"))
    (root / "photos" / "wide.json").write_text(json.dumps({"caption": "a red mug", "objects": [
        {"name": "red mug", "box": [4, 4, 20, 20]}]}))  # fmt: skip
    (root / "photos" / "tall.png").write_bytes(images.encode(_picture(64, 40), "png"))
    return str(root / "photos")


def _captions(root: Path) -> str:
    (root / "captions.jsonl").write_text('{"caption": "a red mug", "objects": ["red mug"]}\n{"caption": "a cat"}\n')
    return str(root / "captions.jsonl")


def _topics(root: Path) -> str:
    (root / "topics.yaml").write_text("- kitchens\n- gardens\n")
    return str(root / "topics.yaml")


def _shards(root: Path) -> str:
    with wds.TarWriter(str(root / "part.tar")) as sink:
        sink.write({"__key__": "a", "png": images.encode(_picture(40, 64), "png"), "txt": "a red mug"})
        sink.write({"__key__": "b", "png": images.encode(_picture(64, 40), "png"), "json": b'{"caption": "a cat"}'})
    return str(root / "part.tar")


def _curated(root: Path) -> str:
    from datagen.curate import curate

    curate("images", _images(root), str(root / "curated"), overrides=["curate={}"], progress=False)  # no gates
    return str(root / "curated")


EXAMPLES: dict[str, Callable[[Path], str | None]] = {
    "scene": lambda root: None,
    "images": _images,
    "captions": _captions,
    "topics": _topics,
    "shards": _shards,
    "curated": _curated,
}
"""Source kind -> writes a small input of two samples under a folder and returns the --input (None: none read)."""


def test_every_registered_kind_has_an_example_input():
    assert set(EXAMPLES) == set(SOURCES), "a registered kind needs an example input here (and only those)"


@pytest.mark.parametrize("kind", list(SOURCES))
def test_source_kind_keeps_the_protocol(kind, tmp_path):
    cls = SOURCES[kind]
    assert cls.kind == kind, "the registry's name is the class's kind"
    input = EXAMPLES[kind](tmp_path)
    assert (cls.input is None) == (input is None), "a kind reads an --input exactly when it declares one"
    check_source(kind, input, n=2)
    source = build_source(kind, BUCKETS, input)
    assert type(source) is cls and isinstance(source, Source)
    assert len(source) >= 2
    text_only = cls.text_only
    assert isinstance(cls.summary, str) and cls.summary and isinstance(cls.caption_where, str)
    assert all(isinstance(getattr(cls, flag), bool) for flag in ("photos", "text_only", "urls", "curates"))
    assert set(cls.fills) <= {"caption", "objects", "setting", "topic"} and cls.fills
    assert not (cls.photos and cls.text_only) and (not cls.curates or cls.photos)
    for index in range(2):
        ref = source.ref(seed=10 + index, index=index)
        assert ref["kind"] == kind
        stored = json.loads(json.dumps(ref))  # what the write phase keeps and the render reads back
        assert stored == ref and source.ref(seed=10 + index, index=index) == ref, "references are JSON and stable"
        item = source.item(stored)
        assert isinstance(item, SourceItem) and item.ref == stored
        assert isinstance(item.caption, str) and all(isinstance(name, str) for name in item.objects)
        assert (item.topic is not None) == ("topic" in cls.fills), (
            "only a topic source leaves the caption to the writer"
        )
        assert item.setting is None or "setting" in cls.fills
        loaded = source.load(stored, max_pixels=10**6)
        assert isinstance(loaded, LoadedInput)
        if text_only:
            assert loaded.image is None, "a text-only source leaves the image to text-to-image"
        else:
            assert loaded.image.dtype == np.uint8 and loaded.image.shape[2] == 3
            assert (loaded.image.shape[1], loaded.image.shape[0]) in BUCKETS, "images are fitted to a bucket"
            for name, mask in loaded.masks.items():
                assert name in item.objects and mask.shape == loaded.image.shape[:2] and mask.dtype == bool
    assert source.ref(seed=10, index=0) != source.ref(seed=11, index=1), "two samples are two inputs"


@pytest.mark.parametrize("kind", [kind for kind, cls in SOURCES.items() if cls.input is not None])
def test_a_kind_that_reads_an_input_refuses_none_and_an_empty_one(kind, tmp_path):
    spec = SOURCES[kind].input
    with pytest.raises(ConfigError, match=rf"^--source {kind} needs --input {spec.arg}: "):
        check_source(kind, None)
    empty = tmp_path / "empty"
    if spec.folder:
        empty.mkdir()
    else:
        empty = empty.with_suffix(spec.suffixes[0])
        empty.write_text("")
    with pytest.raises(ConfigError, match=rf": {spec.empty.split(' (')[0]}"):
        check_source(kind, str(empty))


def test_task_files_name_sources_only_to_restrict_them(tmp_path):
    """A task file that names no sources accepts every registered one (the first the default); one that names some
    restricts to them, each registered; an unknown one is refused, naming the file and the known kinds."""
    from datagen.resolve import load_run, task_sources

    for name in known("tasks"):
        raw = read_yaml(config_root() / "tasks" / f"{name}.yaml")
        assert set(raw.get("sources") or SOURCES) <= set(SOURCES), name
    assert load_run("remove", "local", out=str(tmp_path), n=1).run.source == next(iter(SOURCES))
    assert load_run("pose", "tiny", out=str(tmp_path), n=1).run.source == "captions"  # pose restricts: no scenes
    task = TaskSpec.model_validate({**read_yaml(config_root() / "tasks" / "color.yaml"), "sources": ["video"]})
    with pytest.raises(ConfigError, match=r"color.yaml: field `sources`: unknown source\(s\) video; known: scene"):
        task_sources(task, "tasks/color.yaml")


THROWAWAY = """
from typing import Any, ClassVar

import numpy as np

from datagen.sources.base import InputSpec, LoadedInput, SourceItem

COLOURS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 60, 200)}


class PlainWallSource:
    \"\"\"Plain walls of one colour: a source written in one module, as docs/extending.md's recipe says.\"\"\"

    kind: ClassVar[str] = "wall"
    summary: ClassVar[str] = "plain walls of one colour"
    input: ClassVar[InputSpec | None] = None
    photos: ClassVar[bool] = False
    text_only: ClassVar[bool] = False
    urls: ClassVar[bool] = False
    curates: ClassVar[bool] = False
    caption_where: ClassVar[str] = "the wall's colour"
    fills: ClassVar[tuple[str, ...]] = ("caption",)

    def __init__(self, size):
        self.size = size

    @classmethod
    def from_input(cls, input, size):
        return cls(size)

    def __len__(self) -> int:
        return len(COLOURS)

    def unreadable(self):
        return []

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "colour": list(COLOURS)[index % len(COLOURS)]}

    def item(self, ref):
        return SourceItem(ref=ref, caption=f"a plain {ref['colour']} wall", objects=[])

    def load(self, ref, max_pixels: int) -> LoadedInput:
        from datagen import images

        width, height = images.bucket_list(self.size)[0]
        image = np.empty((height, width, 3), np.uint8)
        image[:] = COLOURS[ref["colour"]]
        image[height // 4 : height // 2, width // 4 : width // 2] //= 2  # a shadow, so that edits have texture
        return LoadedInput(image=image)
"""


def test_a_new_source_is_one_module_one_registry_line_and_one_example(tmp_path, monkeypatch):
    """The recipe of docs/extending.md, followed in a temporary module: registered, it keeps the protocol, every
    list of kinds derived from the registry has it, --source's help names it, and a run reads it."""
    import importlib
    import sys

    from conftest import run_inline

    from datagen import sources

    (tmp_path / "plain_walls.py").write_text(THROWAWAY)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("plain_walls")
    monkeypatch.setitem(SOURCES, "wall", module.PlainWallSource)  # the registry line
    monkeypatch.setitem(EXAMPLES, "wall", lambda root: None)  # the contract-test example
    test_source_kind_keeps_the_protocol("wall", tmp_path)
    assert "wall" in sources.kinds(photos=False) and "wall" not in sources.kinds(urls=True)
    assert "wall: plain walls of one colour" in sources.help_text()
    out = tmp_path / "run"
    proc = run_inline(
        "generate",
        "--task",
        "color",
        "--source",
        "wall",
        "--n",
        "3",
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
        "--set",
        "pipeline.image_size=64",
    )
    texts = [json.loads(line) for line in (out / "texts" / "color-000000.jsonl").read_text().splitlines()]
    assert [t["source"]["colour"] for t in texts] == ["red", "green", "blue"], proc.stdout
    assert all(t["status"] == "ok" and t["source_caption"].startswith("a plain") for t in texts)
    sys.modules.pop("plain_walls")
