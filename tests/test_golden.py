"""A fixed-seed `local` mixture and a `tiny` run commit exactly these bytes: what a restructuring must not change.

Recorded on main before the run folder and runner were reorganised (issue 17); recorded again when every record
gained the `change` score, the judge's scores and reasoning and `instruction_rewritten` (issue 18), after checking
that apart from those fields (and the judge in `tiny`'s `models`) every tar member and manifest row was the same; and
again when every sample recorded its `width` and `height` (issue 19: aspect-ratio buckets), after checking that apart
from those two fields (json member and manifest columns) every tar member and manifest row was the same."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli, run_inline

LOCAL = {
    "add-000000.parquet": "49f1e84ca2add3ba5c45567a20d67cf4bc92812d829a2786dcd4f2ad414cd6d2",
    "add-000000.tar": "531d7056b12e141ba649a93147be302b0e93d6a96d2b2ef78db0b19bb618f027",
    "background-000000.parquet": "d3122b5cb996ebd6f1ea5c89aa7ad5257c8146fe23534929f451eeb1823b18f3",
    "background-000000.tar": "2ad44b52292c421848d0112126f363c856594991918d3aa3454b5d2d3e204f65",
    "color-000000.parquet": "321675cd969219cce7472505ecf69ebfe168bfe0dce74300c7ac7791393539e7",
    "color-000000.tar": "48a64245725a54c23321c89d664d6dad9e76a534269dfecb12963bc3373b9ef8",
    "depth-000000.parquet": "60056dcfe04497c36cc397c26a1432acc12571da71f95f5fc261484edebadd4a",
    "depth-000000.tar": "f5914f23d04a8ab777dc1a7cbd5d0b097b586f89f94348bf53769744877acc9a",
    "detect-000000.parquet": "b7b8a0bc9d13ca2d6cfbc4c5dc47b6e43afa2657e6ce75ee32240b4f0b8a9abf",
    "detect-000000.tar": "3eb85f077f31ff7a0121ed3ca5fe1c7d8482f595f313541fcd388dc586976530",
    "global-000000.parquet": "65888dc6b76f693f49dcaf4f52b1083beb1840a18829a00ff76ea4cb3ee27f95",
    "global-000000.tar": "6ae703a18ce2658951033e30aab01625461fef6188092fe50d804863c85d2dec",
    "local-000000.parquet": "81405fe5eb4022d069821be3847111ba07ee80bdabe2391ae4c041b3b0d83371",
    "local-000000.tar": "4ad70b72b97ca7e066d513c196c35e0475b2117559228bc538572d903089f00e",
    "normal-000000.parquet": "c3222ba12dc8e843a3e786a2c7e1dcfd1a3c44405f300e8d626f7b38a26c5051",
    "normal-000000.tar": "64e91245e3b3486030c9f04b9c5ad56f68c5c379074a79a65ba8a1f6b85ab93c",
    "remove-000000.parquet": "57dd2149ca4ac98787b57b7d5864991ed4b35c4f8cfe1c7513a82a16b19687cd",
    "remove-000000.tar": "43ffdd2e2ab997b65e7f9ae57e7805101fd97bfba45111579ac86bf97647fc49",
    "segmap-000000.parquet": "c8fc158c0e19be7cb4ebfe7b44eb149e871e7430394a82dce0c2b25073c87819",
    "segmap-000000.tar": "72e741a99ba7fa28bf6fea222d5fa56506530444a87218344f0a5437ca6599c6",
    "segment-000000.parquet": "96f2451e12df51bf390b5d087d2bee91536211ae52813caa45fedda8f709a648",
    "segment-000000.tar": "dd3a7753d82c805e2d3a7d2686f8ed342d9cbb21228939e10df6bc1902591709",
    "sketch-000000.parquet": "5d9c1e32e88f1f293db374437df1e43afacf9d62363d0b6c0725f21e150d0134",
    "sketch-000000.tar": "748ea11422affcf5296b3c02265f4d5da2bc77ef1a0466e36f1f4f149b8b333d",
    "style-000000.parquet": "ff56a45887a5dc86d126e5e124cc43e332596c4020bfdfa1f8e8ff39d36ca4d7",
    "style-000000.tar": "69eeb082c839d3d31f95c36745ff9291a26a56dbec9cbad18f0e6cc7b37e7359",
    "text-000000.parquet": "296d0c3a361892d754f1767c4947314299446d4752d056d8c5d829ffd4a76782",
    "text-000000.tar": "b504f3b9a4a059ececed9b9fba792fd606e2b3bfd6ab34a743f901f2acffa36c",
    "texture-000000.parquet": "746e18d22b0d7c3b5509330ebf244344f6c8fd873b70c85ce975f88cad47865d",
    "texture-000000.tar": "a9928f42840b194b72311dfee84a1c1174176f740570af878224bce81204728b",
}
TINY = {
    "remove-000000.parquet": "4c46117d2e37838fcf3dc1967a3d6fb050fbdd4a08bd53f27027af43c2996cf2",
    "remove-000000.tar": "9217bb5d543c0a6edca005d2cf85cadb62d568382fb532eafb51d3e26666dabb",
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
