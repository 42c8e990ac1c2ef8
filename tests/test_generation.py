"""Template writer, grounded inpainting and pixel filters on real scenes and constructed images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datagen import models
from datagen.config import FilterSpec
from datagen.filters import gate, l1, pixel_scores, rank_key
from datagen.generators.base import Sample
from datagen.generators.grounded_inpaint import GroundedInpaint, composite, mask_variants
from datagen.models.oracle import GroundingMiss
from datagen.record import EditRecord
from datagen.resolve import load_run
from datagen.sources import LoadedInput, SceneSource, SourceItem
from datagen.stages import StageClock
from datagen.template_writer import caption_without
from datagen.writer import OutputValidator, WriterReject


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return load_run("remove", "local", out=str(tmp_path_factory.mktemp("out")), n=1)


@pytest.fixture(scope="module")
def built(config):
    return {role: models.build(role, spec, prompt=config.prompt) for role, spec in config.pipeline.roles.items()}


def test_template_writer_output(config, built):
    source = SceneSource(128)
    verbs = {v.lower() for v in config.prompt.verbs}
    seen_templates = set()
    for seed in range(40):
        item = source.item(source.ref(seed, 0))
        out = built["llm"].write(item, np.random.default_rng(seed))
        assert set(out) == {"instruction", "output_caption", "objects"}
        (target,) = out["objects"]
        assert target in item.objects
        assert target in out["instruction"]
        assert target not in out["output_caption"]
        for other in item.objects:
            if other != target:
                assert other in out["output_caption"]
        lowered = out["instruction"].lower()
        assert any(v in lowered for v in verbs) or "gone" in lowered or "disappear" in lowered or "without" in lowered
        seen_templates.add(out["instruction"].replace(target, "X"))
    assert len(seen_templates) >= 10, "verbs and templates vary"


def test_template_writer_is_seeded(config, built):
    item = SceneSource(96).item({"seed": 3})
    a = built["llm"].write(item, np.random.default_rng(11))
    b = built["llm"].write(item, np.random.default_rng(11))
    assert a == b


def test_writer_rejects_items_without_objects(built):
    with pytest.raises(WriterReject) as error:
        built["llm"].write(SourceItem(ref={}, caption="a photo", objects=[]), np.random.default_rng(0))
    assert error.value.reason == "no_objects"


def test_schema_validation_rejects_bad_outputs(config):
    validate = OutputValidator(config.prompt)
    good = {"instruction": "Remove the cat", "output_caption": "an empty sofa", "objects": ["cat"]}
    assert validate(good) == good
    for bad in (
        {"instruction": "Remove the cat", "output_caption": "an empty sofa"},
        {**good, "objects": "cat"},
        {**good, "objects": []},
        {**good, "instruction": "Remove\tthe cat"},
        {**good, "extra": 1},
    ):
        with pytest.raises(WriterReject) as error:
            validate(bad)
        assert error.value.reason == "schema_invalid"


@pytest.mark.parametrize(
    "caption,name,expected",
    [
        ("a dog, a red ball and a lamp on a sofa", "red ball", "a dog and a lamp on a sofa"),
        ("a cat sitting next to a lamp", "lamp", "a cat sitting"),
        ("an apple and a pear", "apple", "a pear"),
        ("a street", "car", "a street"),
        ("", "car", "a scene without the car"),
    ],
)
def test_caption_without_textual(caption, name, expected):
    assert caption_without(SourceItem(ref={}, caption=caption, objects=[name]), name) == expected


def test_mask_variants_are_distinct_and_nested():
    mask = np.zeros((64, 64), bool)
    mask[20:30, 24:40] = True
    mask[30:36, 28:32] = True
    variants = mask_variants(mask, [[24, 20, 40, 36]], dilate_px=4, blur_px=3)
    exact, dilated, box = (variants[k] > 0 for k in ("exact", "dilated", "bbox"))
    assert (exact == mask).all()
    assert (dilated & ~exact).any() and not (exact & ~dilated).any(), "dilated strictly contains exact"
    assert not (exact & ~box).any() and box.sum() == 16 * 16, "box covers the object's box exactly"
    assert len({v.tobytes() for v in variants.values()}) == 3
    soft = variants["dilated"]
    assert 0 < soft[(soft > 0) & (soft < 255)].size, "the dilated variant has a blurred edge"


def test_composite_keeps_outside_exact_and_blends_inside():
    rng = np.random.default_rng(0)
    image, edited = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    mask[16, 8:16] = 128
    out = composite(image, edited, mask)
    assert (out[mask == 0] == image[mask == 0]).all()
    assert (out[mask == 255] == edited[mask == 255]).all()
    half = np.rint((image[16, 8:16].astype(float) + edited[16, 8:16]) / 2)
    assert np.abs(out[16, 8:16] - half).max() <= 1


def test_grounded_inpaint_removes_the_object_and_nothing_else(config, built):
    """Six samples rendered as one micro-batch: one call of each role for all of them."""
    generator = GroundedInpaint(GroundedInpaint.Args.parse(config.task.generator.args), built)
    source = SceneSource(128)
    batch, targets = [], []
    for seed in range(6):
        item = source.item(source.ref(seed, 0))
        targets.append(item.objects[0])
        record = EditRecord(
            key="remove_000000_00000", task="remove", shard=0, index=0, seed=seed, source=item.ref,
            objects=[item.objects[0]],
        )  # fmt: skip
        batch.append(Sample(record, source.load(item.ref, 10**8), np.random.default_rng(seed)))
    clock = StageClock(lambda: built)
    outcomes = generator.render(batch, clock)
    stages = clock.stats()
    assert stages["ground"]["calls"] == {"grounding": 1} and stages["ground"]["items"] == {"grounding": 6}
    assert stages["generate"]["calls"] == {"inpaint": 1} and stages["generate"]["items"] == {"inpaint": 18}
    for sample, target, candidates in zip(batch, targets, outcomes, strict=True):
        inputs = sample.inputs
        assert [c.params["mask_variant"] for c in candidates] == ["exact", "dilated", "bbox"]
        object_mask = inputs.masks[target]
        truth, _ = inputs.ground_truth((target,))
        for c in candidates:
            edited = c.mask > 0
            assert (c.output_image[~edited] == inputs.image[~edited]).all(), "outside the mask: untouched"
            assert c.scores["outside_l1"] == 0.0
            assert c.scores["inside_change"] > 0.02
            assert math.isclose(c.scores["mask_area"], object_mask.mean())
            # the filled area is closer to the true background than the object was
            assert l1(c.output_image, truth, object_mask) < l1(inputs.image, truth, object_mask)


def test_caption_objects_are_the_phrases_a_caption_names():
    from datagen.generators.grounded_inpaint import caption_objects

    assert caption_objects("a red mug on a desk next to a laptop", ["red mug"]) == ["desk", "laptop"]
    assert caption_objects("A photo of a street with two cars and a bus stop sign.") == [
        "street",
        "cars",
        "bus stop sign",
    ]
    assert caption_objects("a red striped ball, a green wooden box and a blue dotted star", ["green wooden box"]) == [
        "red striped ball",
        "blue dotted star",
    ]


def test_the_other_objects_a_caption_names_are_grounded_and_spared(tiny_dir):
    """On a photo whose source knows no object, the caption's other objects are located by the grounding role (one
    extra call for the micro-batch, a query per name) and segmented (one extra call), into the sample's neighbours,
    which the mask variants then spare (spare_neighbours, tested below on masks whose overlap is known)."""
    from datagen.resolve import load_pipeline

    pipeline = load_pipeline("tiny")
    roles = {name: models.build(name, pipeline.roles[name]) for name in ("grounding", "segmenter")}
    roles["inpaint"] = models.build("inpaint", load_pipeline("local").roles["inpaint"])
    for role in roles.values():
        role.load()
    generator = GroundedInpaint(GroundedInpaint.Args(), roles)
    rng = np.random.default_rng(0)
    batch = []
    for seed in range(2):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        record = EditRecord(
            key="remove_000000_00000",
            task="remove",
            shard=0,
            index=0,
            seed=seed,
            source={},
            objects=["red mug"],
            input_caption="a red mug on a desk next to a laptop",
        )
        batch.append(Sample(record, LoadedInput(image=image), np.random.default_rng(seed)))
    clock = StageClock(lambda: roles)
    outcomes = generator.render(batch, clock)
    stages = clock.stats()
    assert stages["ground"]["calls"] == {"grounding": 2} and stages["ground"]["items"] == {"grounding": 6}
    assert stages["segment"]["calls"] == {"segmenter": 2}
    for sample, candidates in zip(batch, outcomes, strict=True):
        assert set(sample.inputs.neighbours) == {"desk", "laptop"}  # the tiny detector keeps its best box whatever
        assert all(mask.shape == (64, 64) and mask.dtype == bool for mask in sample.inputs.neighbours.values())
        exact = candidates[0].mask > 0
        spared = np.logical_or.reduce(list(sample.inputs.neighbours.values())) & ~exact
        for candidate in candidates:
            assert not ((candidate.mask > 0) & spared).any(), candidate.params["mask_variant"]


def test_mask_variants_spare_the_neighbours_and_the_fill_is_made_without_them():
    from datagen.generators.grounded_inpaint import spare_neighbours

    target = np.zeros((40, 40), bool)
    target[10:20, 10:20] = True
    variants = mask_variants(target, [[10, 10, 20, 20]], 4, 0)
    near, far = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    near[12:18, 21:30] = True  # beside the object, inside its dilated variant's reach
    far[34:38, 34:38] = True
    keep, paint = spare_neighbours(variants, near | far)
    for name in variants:
        assert not (keep[name] > 0)[near | far].any(), name  # never painted
        assert ((keep[name] > 0) == ((variants[name] > 0) & ~(near | far))).all()
        assert (paint[name] > 0)[near].all() and not (paint[name] > 0)[far].any(), name  # filled without the near one
    assert (variants["dilated"] > 0)[near].any(), "the dilated variant did reach the neighbour"
    assert spare_neighbours(variants, None) == (variants, variants)


def test_oracle_grounding_refuses_unannotated_and_unknown(built):
    plain = LoadedInput(image=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(GroundingMiss) as error:
        built["grounding"].locate(plain, ["cat"])
    assert error.value.reason == "no_annotations" and "procedural scenes" in str(error.value)
    inputs = SceneSource(96).load({"seed": 1}, 10**8)
    with pytest.raises(GroundingMiss) as error:
        built["grounding"].locate(inputs, ["unicorn"])
    assert error.value.reason == "object_not_found"


def test_pixel_scores_hand_computed():
    before = np.zeros((10, 10, 3), np.uint8)
    after = before.copy()
    obj = np.zeros((10, 10), bool)
    obj[0:2, 0:5] = True  # 10 pixels = 10% of the image
    after[obj] = 255  # full change inside
    after[9, 9] = [51, 51, 51]  # one changed pixel outside the edit mask: 0.2 over 1 of 90 pixels
    edit = obj.astype(np.uint8) * 255
    truth = np.zeros_like(before)
    others = np.zeros((10, 10), bool)
    others[1, 0:5] = True  # half of the edited region belongs to a neighbour in the ground truth
    scores = pixel_scores(before, after, obj, edit, (truth, others))
    assert scores["mask_area"] == pytest.approx(0.1)
    assert scores["inside_change"] == pytest.approx(1.0)
    assert scores["outside_l1"] == pytest.approx(0.2 / 90)
    assert scores["gt_l1"] == pytest.approx(1.0)
    assert scores["gt_objects_l1"] == pytest.approx(1.0)
    assert l1(before, after, np.zeros((10, 10), bool)) != l1(before, after, np.zeros((10, 10), bool))  # NaN


def test_the_local_ground_truth_score_finds_a_blob_that_the_mean_dilutes():
    """gt_local_l1 is the largest 9x9-window mean of |output - truth| centred in the edited region (checked against
    a loop over every window): a 9x9 blob of error and the same total error spread as noise have one gt_l1, but
    the blob's local score is far higher; every window is the mean over 81 pixels, zeros beyond the image."""
    from datagen.filters import LOCAL_PX, local_peak

    rng = np.random.default_rng(0)
    truth = np.full((40, 40, 3), 128, np.uint8)
    region = np.zeros((40, 40), bool)
    region[5:35, 5:35] = True
    blob, noise = truth.copy(), truth.copy()
    blob[10:19, 10:19] = 228  # one 9x9 square, 100 grey levels off
    spots = rng.permutation(np.argwhere(region))[:81]
    noise[spots[:, 0], spots[:, 1]] = 228  # the same 81 pixels' error, scattered
    others = np.zeros((40, 40), bool)
    scores = {
        name: pixel_scores(truth, image, region, region.astype(np.uint8) * 255, (truth, others))
        for name, image in (("blob", blob), ("noise", noise))
    }
    assert scores["blob"]["gt_l1"] == pytest.approx(scores["noise"]["gt_l1"])
    assert scores["blob"]["gt_local_l1"] == pytest.approx(100 / 255)
    assert scores["noise"]["gt_local_l1"] < scores["blob"]["gt_local_l1"] / 4
    wrong = np.abs(noise.astype(int) - truth.astype(int)).sum(axis=-1)
    padded = np.pad(wrong, LOCAL_PX // 2)
    brute = max(padded[y : y + LOCAL_PX, x : x + LOCAL_PX].sum() for y, x in np.argwhere(region))
    assert local_peak(wrong, region) == brute / (LOCAL_PX * LOCAL_PX * 3 * 255.0)
    corner = np.zeros((40, 40), bool)
    corner[0, 0] = True
    edge = np.zeros((40, 40), int)
    edge[:5, :5] = 3 * 255  # a window at the corner holds 25 of its 81 pixels in the image
    assert local_peak(edge, corner) == pytest.approx(25 / 81)
    assert np.isnan(local_peak(edge, np.zeros((40, 40), bool)))


def test_judge_reasons_and_ranking():
    filters = {
        "mask_area": FilterSpec(min=0.01, max=0.5),
        "inside_change": FilterSpec(min=0.05),
        "outside_l1": FilterSpec(max=0.01, enabled=False),
    }
    assert gate({"mask_area": 0.1, "inside_change": 0.2, "outside_l1": 0.9}, filters) == ""
    assert gate({"mask_area": 0.001, "inside_change": 0.2}, filters) == "mask_area_low"
    assert gate({"mask_area": 0.7, "inside_change": 0.0}, filters) == "mask_area_high"
    assert gate({"mask_area": 0.1, "inside_change": 0.01}, filters) == "inside_change_low"
    assert gate({"mask_area": 0.1, "inside_change": float("nan")}, filters) == "nan_inside_change"
    assert gate({"mask_area": 0.1, "inside_change": 0.2, "clip_dir": 0.1}, filters) == "", "unfiltered score"
    assert rank_key({"gt_l1": 0.2}, ["clip_dir", "-gt_l1"]) == -0.2
    assert rank_key({"clip_dir": 0.3, "gt_l1": 0.2}, ["clip_dir", "-gt_l1"]) == 0.3
