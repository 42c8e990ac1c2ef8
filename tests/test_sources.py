"""Input sources on real files: caption files, topic lists and WebDataset shards; input errors and reject reasons."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from datagen import images
from datagen.errors import ConfigError
from datagen.sources import (
    BadSource,
    CaptionFileSource,
    ImageFolderSource,
    SceneSource,
    ShardSource,
    TopicSource,
    build_source,
    check_source,
)

SIZE = 32


def roundtrip(ref: dict) -> dict:
    return json.loads(json.dumps(ref))


def picture(seed: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_shard(path: Path, samples: list[dict]) -> None:
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)


def write_parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


# ------------------------------------------------------------------------------------------- captions


def test_txt_captions_skip_blank_lines_and_wrap_around(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_bytes("\ufeffa red mug on a desk\n\n   \nun café à Paris\r\n  a dog  \n".encode())
    source = CaptionFileSource(str(path))
    assert len(source) == 3
    assert source.ref(7, 1) == {"kind": "captions", "row": 1}
    assert source.ref(7, 5) == {"kind": "captions", "row": 2}
    captions = [source.item(roundtrip(source.ref(0, i))).caption for i in range(4)]
    assert captions == ["a red mug on a desk", "un café à Paris", "a dog", "a red mug on a desk"]
    assert source.item(source.ref(0, 0)).objects == []
    assert source.load(source.ref(0, 0), 10_000).image is None


def test_jsonl_captions_read_objects(tmp_path):
    path = tmp_path / "captions.jsonl"
    rows = [
        {"caption": " a mug and a lamp ", "objects": ["mug", " lamp "]},
        {"caption": "a plain wall"},
        {"caption": "a cat", "objects": [{"name": "cat"}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n", encoding="utf-8")
    source = CaptionFileSource(str(path))
    items = [source.item(roundtrip(source.ref(3, i))) for i in range(3)]
    assert [(i.caption, i.objects) for i in items] == [
        ("a mug and a lamp", ["mug", "lamp"]),
        ("a plain wall", []),
        ("a cat", ["cat"]),
    ]
    assert items[2].ref == {"kind": "captions", "row": 2}
    assert items[0].topic is None


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        ({"caption": "   "}, "empty_caption", "row 0"),
        ({"caption": "a mug", "objects": "mug"}, "bad_annotation", "objects must be a list, got str"),
        ({"caption": "a mug", "objects": ["mug", 3]}, "bad_annotation", "object without a name: 3"),
        ({"caption": "a mug", "objects": [{"label": "mug"}]}, "bad_annotation", "object without a name"),
    ],
)
def test_jsonl_bad_rows_are_bad_sources(tmp_path, row, reason, detail):
    path = tmp_path / "captions.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    check_source("captions", str(path))
    with pytest.raises(BadSource) as caught:
        CaptionFileSource(str(path)).item({"kind": "captions", "row": 0})
    assert caught.value.reason == reason
    assert detail in str(caught.value)


def test_parquet_captions_with_objects(tmp_path):
    path = write_parquet(
        tmp_path / "captions.parquet",
        {
            "caption": ["a mug on a desk", None, "a lamp"],
            "objects": [["mug", "desk"], None, []],
            "url": ["u1", "u2", "u3"],
        },
    )
    source = CaptionFileSource(str(path))
    assert len(source) == 3
    first = source.item(roundtrip(source.ref(0, 3)))
    assert (first.caption, first.objects) == ("a mug on a desk", ["mug", "desk"])
    assert first.ref == {"kind": "captions", "row": 0}
    assert source.item(source.ref(0, 2)).objects == []
    with pytest.raises(BadSource) as caught:
        source.item(source.ref(0, 1))
    assert caught.value.reason == "empty_caption"


def test_parquet_without_objects_column(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", {"caption": pa.array(["x", "y"], pa.large_string())})
    source = CaptionFileSource(str(path))
    assert [(source.item(source.ref(0, i)).caption, source.item(source.ref(0, i)).objects) for i in range(2)] == [
        ("x", []),
        ("y", []),
    ]


# --------------------------------------------------------------------------------------------- topics


def test_txt_topics(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("a rainy street\n\nkitchens\n", encoding="utf-8")
    source = TopicSource(str(path))
    assert len(source) == 2
    ref = source.ref(11, 5)
    assert ref == {"kind": "topics", "topic": 1, "index": 5}
    item = source.item(roundtrip(ref))
    assert (item.caption, item.objects, item.topic) == ("", [], "kitchens")
    assert source.load(ref, 10_000).image is None


def test_yaml_topics(tmp_path):
    path = tmp_path / "topics.yaml"
    path.write_text("- a rainy street\n- ' kitchens '\n- 'birthday parties'\n", encoding="utf-8")
    source = TopicSource(str(path))
    assert [source.item(source.ref(0, i)).topic for i in range(4)] == [
        "a rainy street",
        "kitchens",
        "birthday parties",
        "a rainy street",
    ]


# --------------------------------------------------------------------------------------------- shards


@pytest.fixture
def shard_dir(tmp_path) -> Path:
    root = tmp_path / "shards"
    (root / "part2").mkdir(parents=True)
    write_shard(
        root / "part1.tar",
        [
            {"__key__": "000001", "png": images.encode(picture(1), "png"), "txt": "  a red mug  "},
            {"__key__": "000002", "txt": "a caption without an image"},
            {
                "__key__": "000003",
                "png": images.encode(picture(3, 48, 64), "png"),
                "json": {"caption": "a lamp and a cat", "objects": ["lamp", {"name": "cat", "box": [0, 0, 4, 4]}]},
            },
        ],
    )
    write_shard(root / "empty.tar", [{"__key__": "x", "txt": "no image here"}])
    write_shard(
        root / "part2" / "a.tar",
        [{"__key__": "sub/000004", "jpg": images.encode(picture(4), "jpg"), "json": {"caption": "a jpeg"}}],
    )
    (root / "notes.md").write_text("not a shard")
    return root


def test_shards_index_in_sorted_tar_order_and_wrap_around(shard_dir):
    source = ShardSource(str(shard_dir), SIZE)
    assert len(source) == 3
    refs = [roundtrip(source.ref(0, i)) for i in range(4)]
    assert refs == [
        {"kind": "shards", "tar": "part1.tar", "key": "000001"},
        {"kind": "shards", "tar": "part1.tar", "key": "000003"},
        {"kind": "shards", "tar": "part2/a.tar", "key": "sub/000004"},
        {"kind": "shards", "tar": "part1.tar", "key": "000001"},
    ]
    items = [source.item(ref) for ref in refs[:3]]
    assert [(i.caption, i.objects) for i in items] == [
        ("a red mug", []),
        ("a lamp and a cat", ["lamp", "cat"]),
        ("a jpeg", []),
    ]


def test_shards_load_the_right_pixels(shard_dir):
    source = ShardSource(str(shard_dir), SIZE)
    loaded = source.load(source.ref(0, 0), 10_000)
    np.testing.assert_array_equal(loaded.image, picture(1))
    wide = source.load({"kind": "shards", "tar": "part1.tar", "key": "000003"}, 10_000).image
    np.testing.assert_array_equal(wide, images.fit_square(picture(3, 48, 64), SIZE))
    jpeg = source.load(source.ref(0, 2), 10_000).image
    np.testing.assert_array_equal(jpeg, images.decode_image(images.encode(picture(4), "jpg"), 10_000))


def test_single_tar_input(shard_dir):
    source = build_source("shards", SIZE, str(shard_dir / "part2" / "a.tar"))
    assert source.ref(0, 9) == {"kind": "shards", "tar": "a.tar", "key": "sub/000004"}
    assert source.item(source.ref(0, 0)).caption == "a jpeg"


def test_shard_txt_caption_wins_over_json(tmp_path):
    write_shard(
        tmp_path / "s.tar",
        [{"__key__": "k", "png": images.encode(picture(0), "png"), "txt": "txt", "json": {"caption": "json"}}],
    )
    source = ShardSource(str(tmp_path / "s.tar"), SIZE)
    assert source.item(source.ref(0, 0)).caption == "txt"


@pytest.mark.parametrize(
    ("members", "reason", "detail"),
    [
        ({"json": b"{not json"}, "bad_annotation", "k.json"),
        ({"json": b"[1, 2]"}, "bad_annotation", "expected"),
        ({"json": {"caption": 5}}, "bad_annotation", "caption must be a string, got int"),
        ({"json": {"caption": "x", "objects": [{"box": [0, 0, 1, 1]}]}}, "bad_annotation", "object without a name"),
        ({"txt": b"\xff\xfe bad"}, "bad_annotation", "not UTF-8"),
    ],
)
def test_shard_bad_annotations(tmp_path, members, reason, detail):
    write_shard(tmp_path / "s.tar", [{"__key__": "k", "png": images.encode(picture(0), "png"), **members}])
    source = ShardSource(str(tmp_path / "s.tar"), SIZE)
    with pytest.raises(BadSource) as caught:
        source.item(source.ref(0, 0))
    assert caught.value.reason == reason
    assert detail in str(caught.value)


def test_shard_missing_key_and_bad_image(tmp_path):
    write_shard(tmp_path / "s.tar", [{"__key__": "k", "png": b"not a png at all", "txt": "x"}])
    source = ShardSource(str(tmp_path), SIZE)
    with pytest.raises(images.BadImage) as bad_image:
        source.load(source.ref(0, 0), 10_000)
    assert bad_image.value.reason == "not_an_image"
    with pytest.raises(BadSource) as missing:
        source.item({"kind": "shards", "tar": "s.tar", "key": "gone"})
    assert missing.value.reason == "missing_sample"
    with pytest.raises(BadSource) as other_tar:
        source.load({"kind": "shards", "tar": "../elsewhere.tar", "key": "k"}, 10_000)
    assert other_tar.value.reason == "missing_sample"


# ------------------------------------------------------------------------------------- every kind / len


def test_build_source_builds_every_kind_and_len_works(tmp_path, shard_dir):
    (tmp_path / "c.txt").write_text("a\nb\n")
    (tmp_path / "t.yaml").write_text("- x\n")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "p.png").write_bytes(images.encode(picture(0), "png"))
    built = {
        "scene": build_source("scene", SIZE, None),
        "images": build_source("images", SIZE, str(tmp_path / "imgs")),
        "captions": build_source("captions", SIZE, str(tmp_path / "c.txt")),
        "topics": build_source("topics", SIZE, str(tmp_path / "t.yaml")),
        "shards": build_source("shards", SIZE, str(shard_dir)),
    }
    expected = {
        "scene": SceneSource,
        "images": ImageFolderSource,
        "captions": CaptionFileSource,
        "topics": TopicSource,
        "shards": ShardSource,
    }
    assert {kind: type(source) for kind, source in built.items()} == expected
    assert {kind: len(source) for kind, source in built.items()} == {
        "scene": sys.maxsize,
        "images": 1,
        "captions": 2,
        "topics": 1,
        "shards": 3,
    }
    for kind, source in built.items():
        assert source.kind == kind
        assert source.ref(5, 0)["kind"] == kind
    with pytest.raises(ConfigError, match="--source 'video': unknown source; known: scene, images, captions, topics"):
        build_source("video", SIZE, None)


def test_check_source_accepts_good_inputs(tmp_path, shard_dir):
    (tmp_path / "c.jsonl").write_text('{"caption": "a"}\n')
    check_source("scene", None)
    check_source("captions", str(tmp_path / "c.jsonl"))
    check_source("shards", str(shard_dir))
    check_source("shards", str(shard_dir / "part1.tar"))


# -------------------------------------------------------------------------------------- input errors


def config_error(kind: str, input: str | None) -> str:
    with pytest.raises(ConfigError) as caught:
        check_source(kind, input)
    return str(caught.value)


def test_missing_input_says_what_each_kind_needs():
    assert config_error("images", None) == (
        "--source images needs --input DIR: a folder of images (with optional .json or .txt sidecars), local or in "
        "an object store"
    )
    message = config_error("captions", None)
    assert message.startswith("--source captions needs --input FILE: captions as .txt")
    assert ".jsonl" in message and ".parquet" in message
    assert config_error("topics", None).startswith("--source topics needs --input FILE: topics as .txt")
    assert config_error("shards", None).startswith("--source shards needs --input DIR or FILE.tar: WebDataset")
    assert config_error("scene", "x") == (
        "--input is only used with --source images, captions, topics, shards, curated (source is 'scene')"
    )


def test_missing_files(tmp_path):
    missing = str(tmp_path / "nope.txt")
    assert config_error("images", missing) == (
        f"--input {missing!r}: no such directory; --source images reads a folder of images (with optional .json "
        "or .txt sidecars), local or in an object store"
    )
    message = config_error("captions", missing)
    assert message.startswith(f"--input {missing!r}: no such file; --source captions reads captions as .txt")
    assert config_error("topics", missing).startswith(f"--input {missing!r}: no such file; --source topics reads")
    assert config_error("shards", missing).startswith(
        f"--input {missing!r}: no such directory or .tar, .tar.gz, .tgz file"
    )


def test_wrong_suffixes_list_the_allowed_ones(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text("caption\na mug\n")
    assert config_error("captions", str(path)).startswith(
        f"{path}: --source captions reads .txt, .jsonl, .parquet files, not '.csv'"
    )
    assert config_error("topics", str(path)).startswith(
        f"{path}: --source topics reads .txt, .yaml, .yml files, not '.csv'"
    )
    assert config_error("shards", str(path)).startswith(
        f"{path}: --source shards reads .tar, .tar.gz, .tgz files, not '.csv'"
    )
    bare = tmp_path / "captions"
    bare.write_text("a mug\n")
    assert "not a file without a suffix" in config_error("captions", str(bare))


def test_bad_jsonl_lines_name_the_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"caption": "ok"}\n\n{"caption": "cut\n', encoding="utf-8")
    message = config_error("captions", str(path))
    assert message.startswith(f"{path}:3: not valid JSON (")
    assert 'each line must be {"caption": "...", "objects": ["...", ...]}' in message
    path.write_text('{"caption": "ok"}\n{"text": "no caption"}\n', encoding="utf-8")
    assert config_error("captions", str(path)).startswith(f"{path}:2: no string field `caption`; each line must be")
    path.write_text('{"caption": 7}\n', encoding="utf-8")
    assert config_error("captions", str(path)).startswith(f"{path}:1: no string field `caption`")


def test_non_utf8_text_names_the_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"fine\ncaf\xe9\n")
    assert config_error("captions", str(path)).startswith(f"{path}:2: not UTF-8 (")


def test_parquet_errors_list_columns(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", {"text": ["a"], "url": ["u"]})
    message = config_error("captions", str(path))
    assert message == (
        f"{path}: no column `caption` (it has: text, url); a captions table has a string column `caption` and an "
        "optional list-of-strings column `objects`"
    )
    write_parquet(path, {"caption": [1, 2]})
    assert config_error("captions", str(path)).startswith(f"{path}: column `caption` is int64; a captions table")
    write_parquet(path, {"caption": ["a"], "objects": ["mug"]})
    assert config_error("captions", str(path)).startswith(f"{path}: column `objects` is string; a captions table")
    path.write_bytes(b"not parquet")
    assert config_error("captions", str(path)).startswith(f"{path}: not a readable Parquet file (")


def test_yaml_topic_errors(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("topics:\n  - a\n")
    assert config_error("topics", str(path)).startswith(f"{path}: expected a list, got a dict; a YAML topics file")
    path.write_text("- kitchens\n- 1984\n")
    assert config_error("topics", str(path)).startswith(f"{path}: list item 2 is 1984, not a topic;")
    path.write_text("- kitchens\n- [unclosed\n")
    assert config_error("topics", str(path)).startswith(f"{path}:3: not valid YAML (")


def test_empty_inputs_are_rejected(tmp_path):
    blank = tmp_path / "c.txt"
    blank.write_text("\n  \n")
    assert config_error("captions", str(blank)).startswith(
        f"--input {str(blank)!r}: no captions in it (blank lines are skipped); --source captions reads"
    )
    (tmp_path / "c.jsonl").write_text("")
    assert "no captions in it" in config_error("captions", str(tmp_path / "c.jsonl"))
    write_parquet(tmp_path / "c.parquet", {"caption": pa.array([], pa.string())})
    assert "no captions in it" in config_error("captions", str(tmp_path / "c.parquet"))
    topics = tmp_path / "t.yaml"
    topics.write_text("")
    assert config_error("topics", str(topics)).startswith(f"--input {str(topics)!r}: no topics in it")
    (tmp_path / "imgs").mkdir()
    assert "no images found (looked for .png .jpg" in config_error("images", str(tmp_path / "imgs"))
    (tmp_path / "shards").mkdir()
    message = config_error("shards", str(tmp_path / "shards"))
    assert "no samples with an image member (.png .jpg" in message and "--source shards reads WebDataset" in message
    write_shard(tmp_path / "shards" / "s.tar", [{"__key__": "k", "txt": "caption only"}])
    assert "no samples with an image member" in config_error("shards", str(tmp_path / "shards"))


def test_unreadable_tar(tmp_path):
    path = tmp_path / "s.tar"
    path.write_bytes(b"this is not a tar archive" * 40)
    message = config_error("shards", str(path))
    assert message.startswith(f"--input {str(path)!r}: no samples with an image member (")
    assert "; s.tar: shard_unreadable (s.tar: not a readable tar (ReadError: " in message
    assert "WebDataset .tar (or .tar.gz, .tgz) shards" in message


def test_an_image_folder_in_an_object_store_lists_its_images_as_on_disk(tmp_path):
    """Files of a folder before its sub-folders, each sorted (os.walk's order), wherever the folder is: the same
    index gives the same photo on disk and through fsspec."""
    import fsspec

    from datagen.sources import build_source

    names = ["b.png", "a.png", "00000/x.png", "00000/deep/y.png", "00000/w.png", "zz/q.png", "0.png"]
    fs = fsspec.filesystem("memory")
    try:
        for name in names:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(b"")
            fs.pipe_file(f"/order/{name}", b"")
        local = build_source("images", 64, str(tmp_path)).files
        remote = build_source("images", 64, "memory://order").files
        assert local == remote == ["0.png", "a.png", "b.png", "00000/w.png", "00000/x.png", "00000/deep/y.png",
                                   "zz/q.png"]  # fmt: skip
    finally:
        fs.rm("/order", recursive=True)
