"""SAM 2.1 (`segmenter: sam2`) and MM-Grounding-DINO (`grounding: mm_grounding_dino`) on their tiny twins: the
pixels SAM 2.1 is fed, masks inside their boxes at the image's size, batch consistency, and a grounded removal
that runs on both.

The run writes its instructions with the template writer and leaves the judge out: the vLLM writer and judge have
their own tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datagen import models
from datagen.config import RoleSpec
from datagen.errors import ConfigError
from datagen.images import decode_member
from datagen.models.oracle import Detection
from datagen.models.sam import Sam2Pixels
from datagen.models.tiny import resolve
from datagen.resolve import load_run
from datagen.runner import execute
from datagen.shards import RunFolder
from datagen.sources import LoadedInput

SAM2 = ["pipeline.roles.segmenter.backend=sam2", "pipeline.roles.segmenter.model=tiny:segmenter_sam2"]
MM_GROUNDING = [
    "pipeline.roles.grounding.backend=mm_grounding_dino",
    "pipeline.roles.grounding.model=tiny:grounding_mm",
]
QUICK = ["pipeline.roles.llm={backend: template}", "pipeline.roles.judge=null"]
"""Instructions from the templates, no judge: only the image models load."""


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    wide = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)]
    return [*wide, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]


BOXES = [
    [[5.0, 6.0, 40.0, 30.0], [50.4, 10.6, 79.0, 47.0]],
    [[0.0, 0.0, 80.0, 48.0]],
    [],
    [[10.0, 10.0, 20.0, 50.0]],
]
"""Box prompts per image of `_images`: two, the whole image, none, a thin one."""


def _segmenter(batch_size: int):
    segmenter = models.build("segmenter", RoleSpec(backend="sam2", model="tiny:segmenter_sam2", batch_size=batch_size))
    segmenter.load()
    return segmenter


def _segment(segmenter) -> list[list[np.ndarray]]:
    items = [
        (LoadedInput(image=image), [Detection(name=f"o{n}", box=box, score=1.0) for n, box in enumerate(boxes)])
        for image, boxes in zip(_images(), BOXES, strict=True)
    ]
    return segmenter.segment_batch(items)


def test_sam2_is_fed_the_pixels_of_its_preprocessor_config(tiny_dir, tmp_path):
    folder = resolve("tiny:segmenter_sam2")
    pixels = Sam2Pixels.from_pretrained(folder)
    assert (pixels.height, pixels.width) == (64, 64), "the tiny twin's side, read from preprocessor_config.json"
    grey = np.full((48, 80, 3), 128, np.uint8)
    values = pixels.pixels([grey, grey]).numpy()
    assert values.shape == (2, 3, 64, 64) and values.dtype == np.float32
    expected = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(values[0, :, 17, 33], expected, atol=1e-5)
    halves = np.zeros((48, 80, 3), np.uint8)
    halves[:, 40:] = 255
    resized = pixels.pixels([halves]).numpy()[0, 0]
    assert resized[:, :31].max() < resized[:, 33:].min(), "resized to the square, left stays left"

    config = json.loads((folder / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**config, "resample": 3}))
    with pytest.raises(ConfigError, match="preprocessor_config.json"):
        Sam2Pixels.from_pretrained(tmp_path)


def test_sam2_masks_are_inside_their_boxes_at_the_image_size(tiny_dir):
    segmenter = _segmenter(batch_size=8)
    masks = _segment(segmenter)
    assert [len(m) for m in masks] == [2, 1, 0, 1], "one mask per box, none for an image without boxes"
    assert (segmenter.calls, segmenter.items) == (2, 3), "the three 48x80 images in one call, the 64x64 in another"
    proper = 0
    for image, boxes, image_masks in zip(_images(), BOXES, masks, strict=True):
        for box, mask in zip(boxes, image_masks, strict=True):
            assert mask.shape == image.shape[:2] and mask.dtype == bool and mask.any()
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            inside = np.zeros_like(mask)
            inside[y0:y1, x0:x1] = True
            assert not (mask & ~inside).any(), f"mask spills out of its box {box}"
            proper += int(mask.sum() < inside.sum())
    assert proper, "some mask is the model's own, not the box standing in for an empty one"


def test_sam2_batched_masks_are_the_single_ones(tiny_dir):
    batched, single = _segment(_segmenter(batch_size=8)), _segment(_segmenter(batch_size=1))
    for one, other in zip(batched, single, strict=True):
        for a, b in zip(one, other, strict=True):
            assert (a != b).mean() < 0.01, "float32 sums may differ in order; a mask edge pixel at most"


def test_mm_grounding_dino_locates_every_name_in_the_image(tiny_dir):
    spec = RoleSpec(backend="mm_grounding_dino", model="tiny:grounding_mm", batch_size=16, args={"box_threshold": 0})
    grounding = models.build("grounding", spec)
    grounding.load()
    assert type(grounding.model).__name__ == "MMGroundingDinoForObjectDetection"
    images = _images()
    found = grounding.locate_batch([(LoadedInput(image=images[0]), ["red circle", "blue square"]),
                                    (LoadedInput(image=images[3]), ["grass"])])  # fmt: skip
    assert [[d.name for d in detections] for detections in found] == [["red circle", "blue square"], ["grass"]]
    for image, detections in zip((images[0], images[3]), found, strict=True):
        height, width = image.shape[:2]
        for d in detections:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and 0 < d.score < 1
    queries = [(images[0], "red circle"), (images[1], "red circle"), (images[3], "grass")]
    batched = grounding.confidence_batch(queries)
    single = [grounding.confidence_batch([query])[0] for query in queries]
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert batched[0] == pytest.approx(found[0][0].score, abs=1e-4)
    assert batched[0] != pytest.approx(batched[1], abs=1e-6), "another image, another confidence"


def test_grounded_removal_runs_on_sam2_and_mm_grounding_dino(tiny_dir, tmp_path):
    overrides = [*QUICK, *SAM2, *MM_GROUNDING, "generator.args.mask_variants=[exact]"]
    config = load_run("remove", "tiny", out=str(tmp_path / "run"), n=4, shard_size=4, overrides=overrides)
    summary = execute(config, "generate", workers=0, progress=False)
    assert not summary.failed
    folder = RunFolder(tmp_path / "run")
    (shard,) = folder.committed("remove")
    samples = list(folder.samples(shard))
    assert len(samples) == 4, "tiny keeps every sample (enforce_filters: false)"
    for sample in samples:
        meta = sample.meta
        used = json.loads(meta["models"])
        assert (used["segmenter"], used["grounding"]) == ("tiny:segmenter_sam2", "tiny:grounding_mm")
        images = {name: decode_member(data) for name, (_, data) in sample.images.items()}
        mask, boxes = images["mask"], meta["boxes"]
        assert mask.any(), "the exact mask of the grounded object"
        inside = np.zeros(mask.shape, bool)
        for box in boxes:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            inside[y0:y1, x0:x1] = True
        assert not (mask[~inside]).any(), "the exact variant is SAM 2.1's masks clipped to the boxes"
        assert (images["input"][mask == 0] == images["output"][mask == 0]).all()
    segment = shard.stats["stages"]["segment"]
    assert (segment["calls"]["segmenter"], segment["items"]["segmenter"]) == (1, 4), "one micro-batch, one call"
