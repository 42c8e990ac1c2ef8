"""A fixed-seed `local` mixture and a `tiny` run commit exactly these bytes: what a restructuring must not change.

Recorded on main before the run folder and runner were reorganised (issue 17); recorded again when every record
gained the `change` score, the judge's scores and reasoning and `instruction_rewritten` (issue 18), after checking
that apart from those fields (and the judge in `tiny`'s `models`) every tar member and manifest row was the same; and
again when every sample recorded its `width` and `height` (issue 19: aspect-ratio buckets), after checking that apart
from those two fields (json member and manifest columns) every tar member and manifest row was the same; and again
when the OCR read-back scores were added (issue 24: ocr_target_ned, ocr_exact, ocr_old_gone), after checking that
apart from those three keys, null on every record here, in each json member and the three manifest columns, every
tar member and manifest row was the same; and again when every record named its session, turn and previous turn
(issue 26: multi-turn sessions), after checking that apart from those three fields ('', 1 and '' on every record
here) in each json member and manifest row, every tar member and manifest row was the same; and the tiny run's
manifest once more when the inpainter VAE-encoded a call's masked images as one batch (issue 27): its tar was
byte-identical, and of its 12 manifest rows one rejected candidate's five pixel and CLIP scores moved by at most
7e-4 (its image, never stored, within 1/255 of the per-item encode's).

The tiny run's manifest holds float scores from torch's CPU kernels, which take another code path on a processor
with AVX-512 than on one with AVX2 only (ATen dispatches on the CPU's capability): its images (the tar) are the same
bytes on both, its manifest has one recorded hash per kind of processor it was run on (2026-12-07: the AVX2-only
machine gave 69b202d8…, the AVX-512 one that recorded the rest a6ab2aa3…). A third value is a finding: look."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli, run_inline

LOCAL = {
    "add-000000.parquet": "88b2648edd12d02804b43785730ce52cd604d6c5e5b7de6624100208907eefd5",
    "add-000000.tar": "30840e96566d6ee97b64e35d2923166aa672cbfa68f6a8a8e0158ade6e59805a",
    "background-000000.parquet": "fa99537f7ff647e29525823e5c536b0b4aa963fd989d8432e7855651b16d770f",
    "background-000000.tar": "2775869359ac0c436bdcca2c4bf5a1605f1e4a1aa47967094b6fd5b5e88210fa",
    "color-000000.parquet": "aae32183ba5d66cb2877dcf5969eeaf482f833627cf80373c19a64d2441a08c9",
    "color-000000.tar": "f171ba57d16e6f3f7097b60111219f777da442cadd0062e1b960c897bf882e5f",
    "depth-000000.parquet": "18b6abe43633def44d0e5acad14076bcb5e504ffee142c8e7f8956f184f841c0",
    "depth-000000.tar": "c4b76b299d4cd79bd446db1e29d5c0f9f9c1371e82e08092a0a590ccd9943019",
    "detect-000000.parquet": "6fc84735616301def701c87e7329e7bccef3df4a0d8639336ab376ec13b1bee8",
    "detect-000000.tar": "0f4759196f033ee70e727a209abb7f0dd0ca555a7a4f252c500c45800fe0b19a",
    "global-000000.parquet": "17b5b57aa90fa984932ce367d6e22ff0af3c84070b57f25ac1cb30d9801ced0d",
    "global-000000.tar": "034cdf62c87e70efa6bab481ecf072986ad2b44d7879a170172ff846327975d4",
    "local-000000.parquet": "74c2b8da42382bdf8354498ccb6c6c69f9fde5538da73d957cb9948a6dec09a5",
    "local-000000.tar": "e9ee6dd171290df7d5c32fb2e830d0928c0862cf84c0d6463218453811e41840",
    "normal-000000.parquet": "561b767e7c02ab75abd3f47be908ebe99544b7d96df259f00b9c38b0069bbd1c",
    "normal-000000.tar": "6fa6b36d14d69a1b6b9edecabad4355a2a7ffd65b4389f3e768aadc4c7de8ed5",
    "remove-000000.parquet": "86f2ccfca1168951c9701ea162a7237304a3365dc2cc654b0a493b38145b7bfa",
    "remove-000000.tar": "18112ebf0aa3134e67dbf813c5b11ff593d4cfc2e8f4cea5cb9e182dc12a6c1a",
    "segmap-000000.parquet": "7fcdf6734383e137fb3c59a51ba6aa324dba96403fa0ec3f1977776adeef5567",
    "segmap-000000.tar": "50e22efff0e89807e422b291c721cea994684af8be0d5b37088fb3e33ef6510f",
    "segment-000000.parquet": "f667e222b796cb8bae3198a1662d77d7070c0db5587f6daf8c6669b4af8c6395",
    "segment-000000.tar": "4fc3d668415f36a056d7ad2275ef9f8e325db5099a5ca48acb848522541205a4",
    "sketch-000000.parquet": "0d1d5d9080d2af0ba9b1402fd6da3f74b6a685824658457e1c6cc51abee1f40f",
    "sketch-000000.tar": "ffcd2ae02df91cf65d157cc0c37d81cca44fc27d435d6c45475488660589fb53",
    "style-000000.parquet": "cc91a9fcb983ea41a5c724b1c70b4cbb820ecc4599a720e28e25de07e3a9edff",
    "style-000000.tar": "6fdae3c4ab5eb2ea3f788b17bdd303480c1dbf87775b57636aa8225d424fe362",
    "text-000000.parquet": "cb244668f5dad58dddcf14b45266c84185fb4c48bd3c4f9275c9bc8f7a5656da",
    "text-000000.tar": "dee7c53483a03fcfa582063a6f6e8ae169b3e726f7e2aa2448f19eac417ff011",
    "texture-000000.parquet": "5192f3d449eb526b95215089d5fd607c7683afff8c411d74f078b65738aee324",
    "texture-000000.tar": "482140be50050520b599a10e95586d2f5174efa378fca6a083c03722791354f1",
}
TINY = {
    "remove-000000.parquet": (
        "a6ab2aa3e29c10341d89e96a4995803e5bd44eebaf8912ce92140761aa88ba54",  # AVX-512
        "69b202d89c4e7248c8ca17d6d39d976b971d56d1ffb46707530d19d5541391d1",  # AVX2 only
    ),
    "remove-000000.tar": ("353e7c33decc82a1834cbe41f0d2888687e7eb79bce32494ffe602a359be4c72",),
}


def _hashes(out) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "shards").iterdir())
        if p.suffix in (".tar", ".parquet")
    }


def test_a_local_mixture_commits_the_recorded_bytes(tmp_path):
    run_cli("generate", "--task", "all", "--pipeline", "local", "--n", "45", "--shard-size", "3", "--seed", "7",
            "--out", str(tmp_path), "--workers", "0", "--no-progress")  # fmt: skip
    assert _hashes(tmp_path) == LOCAL


@pytest.mark.slow
def test_a_tiny_run_commits_the_recorded_bytes(tiny_dir, tmp_path):
    run_inline("generate", "--task", "remove", "--pipeline", "tiny", "--n", "4", "--shard-size", "4", "--seed", "7",
               "--out", str(tmp_path), "--workers", "0", "--no-progress")  # fmt: skip
    found = _hashes(tmp_path)
    assert set(found) == set(TINY) and all(found[name] in TINY[name] for name in found), found
