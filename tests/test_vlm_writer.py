"""A vision-language writer writes each instruction from the input image as well as its caption (roles.llm.args
see_image), through the same real vLLM engine and the same output schema as the text writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from datagen.errors import ConfigError
from datagen.resolve import load_pipeline, load_run
from datagen.sources import SourceItem


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
        sidecar = {"caption": "a red cup on a wooden table", "objects": [{"name": "red cup", "box": [10, 10, 50, 50]}]}
        (folder / f"p{i}.json").write_text(json.dumps(sidecar))
    return folder


VLM = ["--set", "pipeline.roles.llm.model=tiny:vlm", "--set", "pipeline.roles.llm.args.see_image=true"]


def test_the_writer_sees_the_image_of_an_image_source(tiny_dir, photos, tmp_path):
    from datagen.runner import execute

    config = load_run("remove", "tiny", out=str(tmp_path), n=4, source="images", input=str(photos),
                      overrides=VLM[1::2])  # fmt: skip
    assert not execute(config, "write", workers=0, progress=False).failed  # this process's engine, started once
    lines = [json.loads(line) for line in (tmp_path / "texts" / "remove-000000.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for line in lines:
        assert line["writer"] == "tiny:vlm" and line["input_caption"] == "a red cup on a wooden table"
        assert line["status"] == "ok" or line["reason"].startswith(("schema_invalid", "llm_")), line


def test_different_images_give_different_instructions(tiny_dir, tmp_path):
    from datagen import models

    config = load_run("remove", "tiny", out=str(tmp_path), n=1, overrides=VLM[1::2])
    writer = models.build("llm", config.pipeline.roles["llm"], prompt=config.prompt)
    rng = np.random.default_rng(1)
    items = [SourceItem(ref={}, caption="a red cup on a wooden table", objects=["red cup"]) for _ in range(3)]
    items[0].image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    items[1].image = items[0].image.copy()
    items[2].image = 255 - items[0].image
    out = writer.write_batch(items, [7, 7, 7])  # one seed: only the image differs between the requests
    assert json.dumps(out[0], default=str) == json.dumps(out[1], default=str)
    assert json.dumps(out[0], default=str) != json.dumps(out[2], default=str)


def test_see_image_is_checked():
    from datagen.writer import VLLMWriter

    # by the pipeline's checks (models.check_args) or, built directly, by the writer: the same field either way
    with pytest.raises(ConfigError, match=r"roles\.llm\.args\.see_image`: 'maybe'; allowed: a valid boolean"):
        spec = load_pipeline("tiny", ["roles.llm.args.see_image=maybe"]).roles["llm"]
        VLLMWriter(spec, prompt=None)


def test_a_photo_without_a_caption_is_captioned_from_the_image_first(tiny_dir, tmp_path):
    """A folder of photos without sidecars (phone pictures): the vision-language writer captions each from the image
    (prompts/caption_image.yaml) and writes the edit about that caption."""
    from datagen.runner import execute

    folder = tmp_path / "phone"
    folder.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (96, 72, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    config = load_run("remove", "tiny", out=str(tmp_path / "run"), n=3, source="images", input=str(folder),
                      overrides=VLM[1::2])  # fmt: skip
    assert config.caption_prompt.name == "caption_image"
    assert not execute(config, "write", workers=0, progress=False).failed
    lines = [json.loads(line) for line in (tmp_path / "run" / "texts" / "remove-000000.jsonl").open()]
    captioned = [line for line in lines if line["status"] == "ok" or not line["reason"].startswith("caption_")]
    assert captioned, [line["reason"] for line in lines]  # a random model still writes schema-valid captions
    for line in captioned:
        assert 10 <= len(line["source_caption"]) <= 120 and line["input_caption"] == line["source_caption"]
    assert all(line["reason"] != "caption_empty" for line in lines)


def test_without_a_seeing_writer_the_pipelines_vision_language_judge_captions_the_photo(tiny_dir, tmp_path):
    """`tiny`'s writer reads text only; its judge is a vision-language model: it captions the photos that came
    without a caption (one batched call), and the text writer writes the edit about that caption."""
    from datagen.runner import execute

    folder = tmp_path / "phone"
    folder.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(10 + i).integers(0, 255, (72, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    config = load_run("remove", "tiny", out=str(tmp_path / "run"), n=3, source="images", input=str(folder))
    assert not execute(config, "write", workers=0, progress=False).failed
    lines = [json.loads(line) for line in (tmp_path / "run" / "texts" / "remove-000000.jsonl").open()]
    captioned = [line for line in lines if line["status"] == "ok" or not line["reason"].startswith("caption_")]
    assert captioned and all(line["reason"] != "caption_empty" for line in lines), [line["reason"] for line in lines]
    for line in captioned:
        assert 10 <= len(line["source_caption"]) <= 120 and line["writer"] == "tiny:llm"
