"""Tools given runs or tars on a command line (train, eval, classify) read samples the one way the run folder's
reader does: a run's committed shards through RunFolder, checked against their stats; other tars decoded alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import webdataset as wds

from datagen.errors import ConfigError
from datagen.shards import RunFolder
from datagen.shards.reader import decode_sample, read_samples


@pytest.fixture
def run_dir(small_remove_run) -> Path:
    return small_remove_run


def _as_read(samples) -> list[tuple]:
    return [(s.key, s.meta, s.meta_text, s.instruction, s.images) for s in samples]


def test_a_run_and_its_tars_read_as_the_run_folder_reads_them(run_dir):
    run = RunFolder(run_dir)
    expected = _as_read(s for shard in run.committed() for s in run.samples(shard))
    assert len(expected) == sum(shard.kept for shard in run.committed()) > 0
    assert _as_read(read_samples([str(run_dir)])) == expected
    tars = [str(p) for p in sorted((run_dir / "shards").glob("*.tar"))]
    assert _as_read(read_samples(tars)) == expected, "a tar named alone decodes to the same samples"
    assert {s.meta["task"] for s in read_samples([str(run_dir)])} == {"remove"}


def test_a_run_read_from_the_command_line_is_checked_against_its_stats(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    marker = copy / "shards" / "remove-000000.stats.json"
    stats = json.loads(marker.read_text())
    marker.write_text(json.dumps({**stats, "tar": {**stats["tar"], "sha256": "0" * 64}}))
    with pytest.raises(ConfigError, match="sha256 differs from its stats"):
        list(read_samples([str(copy)]))


def test_decode_sample_refuses_what_is_not_a_whole_datagen_sample(run_dir):
    raw = next(iter(wds.WebDataset(str(run_dir / "shards" / "remove-000000.tar"), shardshuffle=False)))
    sample = decode_sample(raw)
    assert sample.key == raw["__key__"] and sample.meta == json.loads(raw["json"])
    assert sample.images["input"] == (f"{raw['__key__']}.input.png", raw["input.png"])
    with pytest.raises(ConfigError, match=r"has members \['input.png', 'json', 'output.png'\]"):
        decode_sample({k: v for k, v in raw.items() if k not in ("mask.png", "txt")})
    with pytest.raises(ConfigError, match="json member is not an object"):
        decode_sample({**raw, "json": b"[1, 2]"})
    with pytest.raises(ConfigError, match="unreadable json or txt member"):
        decode_sample({**raw, "json": b"{not json"})
