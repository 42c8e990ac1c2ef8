"""The trainer's sample stream when nothing in the shards is usable: it stops and says why, rather than spin."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from datagen.errors import ConfigError
from datagen.train import TrainConfig, read_samples


def png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_shards_with_no_usable_sample_stop_the_stream_with_the_counts(tmp_path):
    tar = tmp_path / "color.tar"
    with wds.TarWriter(str(tar)) as sink:
        for n in range(2):  # well-formed samples, of a task the model was not given
            meta = {"task": "color", "instruction": f"edit {n}", "scores": {}}
            sink.write({"__key__": f"color_000000_{n:05d}", "input.png": png(n), "output.png": png(n + 50),
                        "mask.png": png(255), "json": json.dumps(meta), "txt": f"edit {n}"})  # fmt: skip
    settings = TrainConfig(shards=[str(tar)], out=str(tmp_path / "unused"), tasks=["remove"], shuffle=1)
    with warnings.catch_warnings(), pytest.raises(ConfigError) as stop:
        warnings.simplefilter("ignore")
        next(read_samples(settings, [str(tar)]))
    assert str(stop.value) == (
        "--shards: 10000 samples in a row unusable (0 corrupt, 10001 of other tasks; tasks remove; min scores none; "
        "inverting nothing)"
    )
