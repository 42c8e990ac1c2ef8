"""A fixed-seed `local` mixture and a `tiny` run commit exactly these bytes: what a restructuring must not change.

Recorded on main before the run folder and runner were reorganised (issue 17); recorded again when every record
gained the `change` score, the judge's scores and reasoning and `instruction_rewritten` (issue 18), after checking
that apart from those fields (and the judge in `tiny`'s `models`) every tar member and manifest row was the same; and
again when every sample recorded its `width` and `height` (issue 19: aspect-ratio buckets), after checking that apart
from those two fields (json member and manifest columns) every tar member and manifest row was the same; and again
when the OCR read-back scores were added (issue 24: ocr_target_ned, ocr_exact, ocr_old_gone), after checking that
apart from those three keys, null on every record here, in each json member and the three manifest columns, every
tar member and manifest row was the same."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli, run_inline

LOCAL = {
    "add-000000.parquet": "82845dcebe88b6a09fdfe059aabd647b4b80a06a113f9b5d491a6465121a5f18",
    "add-000000.tar": "31dbe3f7d360ec862f3ada5a48e09cf659c61ac4516edac7dbe1e3ef98e4c77b",
    "background-000000.parquet": "c06b9caf86db2201addcda17c4caf0f365bda8aeb053e19f71bfebce03869ca1",
    "background-000000.tar": "34bf8d6dfb5b56879096124544788ca17979689f55defe2a0a3ef6ce2b09803b",
    "color-000000.parquet": "c11efc5fa27a7e4559c7912e2f0571d43da5f329490ded433435f7d3226b0aba",
    "color-000000.tar": "2fe9957bd169c6642d5c8da47f5fec814dedafb8ec3e4f35183f8bf27446c1ed",
    "depth-000000.parquet": "c0ecc6e7a392ea86d7fa7fdb3c15bd77b0382dd68ffda520bc309c7cd86d8ef1",
    "depth-000000.tar": "6bfba344c2ec136f31504785059c77d077c0eb74315a3ed12c891c674a3a2c5c",
    "detect-000000.parquet": "bea2da8cfee4dc3487b5bd6dd5726c49a5fb02e7a2c873d079926592b25544c5",
    "detect-000000.tar": "da7a41fbec4e10b54d57146cd8ebd22dbb92414d9a5b2b0a73abe28cea00f376",
    "global-000000.parquet": "17334110bb122b60786c7aa6d816a4df1b79ff4e3c672881127c7847bf99524c",
    "global-000000.tar": "fd82ed7d45309a356232e1250a97da856bf36992b3cc0b823f42c2cfd535304e",
    "local-000000.parquet": "28a29af11813494023534242a22dbee44df0716494b2ffbca02827ab4ed76754",
    "local-000000.tar": "0000f2e0bfb69aa220ea7ec2347457a81eca3a77722a6952c495f9bb8564aac9",
    "normal-000000.parquet": "c6af5d51949e8fd8e78fcdbcb1034a7145b99094efd919ad545570160f306c09",
    "normal-000000.tar": "1b01ef76b634133360189b99f0acef6bf47b217706e1d829c6b8fa04e5d6c580",
    "remove-000000.parquet": "e1f0e97312456b3cba074dcf98bba071eba88edc6e87534286291e6ddaf151a6",
    "remove-000000.tar": "624d5ce35a76564f4920107ddc65eb555bd2cf5d5eb58aaf2a65cea033f85f2f",
    "segmap-000000.parquet": "66e2658a69cc343fb26170e84a5b2625e5f84111072826b35617725db4fd6ddd",
    "segmap-000000.tar": "e3d2b359d72da22ffc0c13cf542a3b51b92c0c637cc2d7365541349cddaeebc7",
    "segment-000000.parquet": "9d726495fba6ad4e1fb0e71fb444be237eecda5979ec320b426574360df602ae",
    "segment-000000.tar": "53a1b6c6bedb1def34fe03a5cfa210ee2b3e54b203fd650beed0acdc2bb5a152",
    "sketch-000000.parquet": "7f8aa2286dded046e44e47265b22a5e436a1a2fe8533f5b571fa66e2f2d968d3",
    "sketch-000000.tar": "008d425554318e0c8c26331cf5e688d6c3b2ee6a08bb5241d4dde474df16c73a",
    "style-000000.parquet": "726c6fb2897c607511b03a7b317fa1a3d74302d6dbfc1662dbea2551eac7baec",
    "style-000000.tar": "cae091aeef0962a79e3e393e40df280ee01cf425a03b0b21cb9f642770bf4a5c",
    "text-000000.parquet": "57925531193ba94a9de0da5efeca1f0524d5112f91f1d473c6716098d6ee7fc6",
    "text-000000.tar": "add78388f3874cd90c9d19274cd2916394f8fe84045b52fbec6bce8153921214",
    "texture-000000.parquet": "6f4da0ef1ed7cdea9db3d19e7817991df3ccc21d44525ae053c6ad3d67590fb5",
    "texture-000000.tar": "061ddc78b5dd9190bd92ad7b3561d1e1d0060c4374e80061b70e6411c0702670",
}
TINY = {
    "remove-000000.parquet": "ad4a361add8cc77c14e6137b85d843600f8d840746b175de3c50bbe2409fd37e",
    "remove-000000.tar": "67298d7839a8a63218d574e779a204500b0b35041da7f375068bdd41ac1d2155",
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
    assert _hashes(tmp_path) == TINY
