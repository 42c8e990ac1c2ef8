"""Procedural scenes: seeded, exact masks that match the drawn objects, unambiguous names, exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from datagen.scenes import SHAPES, background_texture, make_scene, shape_mask


@pytest.mark.parametrize("seed", range(12))
def test_masks_are_exact_and_match_objects(seed):
    scene = make_scene(seed, 128)
    image = scene.render()
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert 2 <= len(scene.objects) <= 4
    union = np.zeros((128, 128), bool)
    for obj in scene.objects:
        mask = scene.masks[obj.name]
        assert mask.sum() > 0.5 * shape_mask(obj, 128, 128).sum(), "objects stay mostly visible"
        assert not (mask & union).any(), "instance masks are disjoint"
        union |= mask
        x0, y0, x1, y1 = scene.box(obj.name)
        ys, xs = np.nonzero(mask)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # Removing the object changes exactly the pixels of its mask (or less, where textures coincide).
        without = scene.render(exclude=(obj.name,))
        changed = (without != image).any(axis=2)
        assert not (changed & ~mask).any(), "re-rendering without the object touches only its mask"
        assert changed[mask].mean() > 0.5
    background = background_texture(scene.background, 128, 128, scene.background_seed)
    assert (image[~union] == background[~union]).all(), "pixels outside every mask are background"


def test_seeded_and_distinct():
    a, b, c = make_scene(7, 96), make_scene(7, 96), make_scene(8, 96)
    assert (a.render() == b.render()).all() and a.caption() == b.caption()
    assert a.caption() != c.caption() or not (a.render() == c.render()).all()


def test_names_unambiguous_and_caption_lists_every_object():
    for seed in range(30):
        scene = make_scene(seed, 96)
        names = [o.name for o in scene.objects]
        shapes = [o.shape for o in scene.objects]
        assert len(set(shapes)) == len(shapes), "one object per shape: 'the ball' is never ambiguous"
        assert all(s in SHAPES for s in shapes)
        caption = scene.caption()
        for name in names:
            assert name in caption
        assert scene.background in caption
        removed = scene.caption(exclude=(names[0],))
        assert names[0] not in removed and all(n in removed for n in names[1:])


def test_plain_objects_are_exactly_their_named_colour():
    from datagen.scenes import COLORS

    checked = 0
    for seed in range(40):
        scene = make_scene(seed, 96)
        image = scene.render()
        for obj in scene.objects:
            if obj.pattern == "plain" and obj.shape != "ball":  # balls are shaded
                assert (image[scene.masks[obj.name]] == COLORS[obj.color]).all(), obj.name
                checked += 1
    assert checked >= 5
