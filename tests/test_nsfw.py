"""The nsfw role with NudeNet's real detector (shipped in its wheel) on every photo scikit-image ships: the
detector finds what is there (faces), scores 0 on every photo but one — its false positive, the colour wheel read as
exposed buttocks at 0.83, which is what a real gate's threshold must reckon with — the score is taken over the
configured classes only, and a misspelt class is refused before anything loads."""

from __future__ import annotations

import pytest

from datagen import models
from datagen.config import RoleSpec
from datagen.errors import ConfigError
from datagen.text_photos import PHOTOS, photo


@pytest.fixture(scope="module")
def scorer():
    adapter = models.build("nsfw", RoleSpec(backend="nudenet"))
    adapter.load()
    return adapter


def test_the_real_detector_on_scikit_images_photos(scorer):
    images = [photo(name) for name in PHOTOS]
    scores = dict(zip(PHOTOS, scorer.score_batch(images), strict=True))
    assert {name for name, score in scores.items() if score > 0} == {"colorwheel"}, scores
    assert scores["colorwheel"] > 0.8, "NudeNet's false positive on a colour gradient"
    found = dict(zip(PHOTOS, scorer.detect_batch(images), strict=True))
    assert found["astronaut"].get("FACE_FEMALE", 0) > 0.5 and found["camera"].get("FACE_MALE", 0) > 0.5, found
    assert scorer.calls == 2 and scorer.items == 2 * len(PHOTOS)


def test_the_score_is_taken_over_the_configured_classes():
    faces = models.build("nsfw", RoleSpec(backend="nudenet", args={"classes": ["FACE_FEMALE", "FACE_MALE"]}))
    assert faces.score_batch([photo("astronaut")])[0] > 0.5
    with pytest.raises(ConfigError, match="FACE_FEMAL.*allowed FEMALE_GENITALIA_COVERED"):
        models.check_args("nsfw", RoleSpec(backend="nudenet", args={"classes": ["FACE_FEMAL"]}), "pipeline file")
