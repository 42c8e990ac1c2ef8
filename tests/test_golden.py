"""A fixed-seed `local` mixture and a `tiny` run commit exactly these bytes: what a restructuring must not change.

Recorded on main before the run folder and runner were reorganised (issue 17); recorded again when every record
gained the `change` score, the judge's scores and reasoning and `instruction_rewritten` (issue 18), after checking
that apart from those fields (and the judge in `tiny`'s `models`) every tar member and manifest row was the same."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli

LOCAL = {
    "add-000000.parquet": "a407e969f598e0a19a53730a4489398f6d0a0a9d755a8e309d22e2b4f5928c2e",
    "add-000000.tar": "8cbfef6e68816daec78c3f62a030a09658b9e7acfa72f9a4e76ff41ba24e8473",
    "background-000000.parquet": "4c49a629260bbd2d887db911e6c3e33a7145d8c1132ca4a703939541c0f81020",
    "background-000000.tar": "d43b56b8ce8447ba745ab4f0cafc779c08314a7cba3ca278a78f62cf6b8d3d41",
    "color-000000.parquet": "c1629068079343b67163b989e6db4523ba078e81a6d6dc9efb749af8db381fa3",
    "color-000000.tar": "3924f1313dcf67acc36e7a6a8d1f22ce31677165f17f749a2ffe575af8d9206f",
    "depth-000000.parquet": "97fac6987f2674331913d6adcf1893b7b27477343f254e7a359e5aae5ad4c1f3",
    "depth-000000.tar": "3202671e6d57581f225da7ee7922391c889a611b870a4505869bdd76e057a66e",
    "detect-000000.parquet": "95f4f6e949b3a51afbbbe136df04e49da471cf4eef761803d31e5102394ded51",
    "detect-000000.tar": "63f7ec26c41390ccd5ea19fba75b97097973cda9dd138f1d44ccf3b15f2eb362",
    "global-000000.parquet": "33f1b762ba6340f7fee0775138f5e68d6371bb7f77eb1db2cb3617bf975143f0",
    "global-000000.tar": "a8c58e03a686a05048e10220813568da06ddf190b5ff23b932c2d0062492e5c2",
    "local-000000.parquet": "7a1ae0427c83a6ee21a970795750698ddad2bd26bbd7cd681de0de3a1e18c3b9",
    "local-000000.tar": "5a816d1dadf2ce75f07f156db51f91d80f62523418a14e22fc64309ac786ccb5",
    "normal-000000.parquet": "41a94b5242519ff539fe136aa3520d0d16a29e85679d8d277408373b2c6d21af",
    "normal-000000.tar": "7d136f2cd677ed25bc5ebaa68347da92e3a115df2b0f2df859d11440e1371cdd",
    "remove-000000.parquet": "1c810a6361e39c6f56bb8cdca29d8267458750243c375bfcbf1f5229af321375",
    "remove-000000.tar": "6afc6d71bed2a2cbbafb9097be30ea66dff4351bebfc2c95014036cf7a01dbc1",
    "segmap-000000.parquet": "2bde902766190d5bb1720849fba0a1795879df47534bc5918342e07d63aca0bf",
    "segmap-000000.tar": "76e4ae623d816de87f99ca5c091121b32fadeff3930b896dd11a9bee4aa2c7d8",
    "segment-000000.parquet": "4d970da5b469fa2b9d03bfee03c00afdb2d038bdaa4e0c13bbe34ea2e990cb6a",
    "segment-000000.tar": "73cfb88365c4e97a2481868ea7a760b7f5f01623d356f320f5451f48a81fc047",
    "sketch-000000.parquet": "615b67d947559406c0eda945480adc77b800bcf0771c5058780eb130addb3fe2",
    "sketch-000000.tar": "841f6431ef7d3a0e861d05476a76dd0225d15f1bb15cded19a61ef630ffdef33",
    "style-000000.parquet": "26ee4bd2410bbf42b2b6f807b7c52f456e95447d6b60f5ae1ec604a5f5632eb1",
    "style-000000.tar": "ca583cecd9a5166983c2633d7c69df0a5c70693c96272a149738c74002920bf1",
    "text-000000.parquet": "a0cda45554cbb539aca8a3010c195ffee8e219accc1c12bce2fcf45e2745afb2",
    "text-000000.tar": "0ba238c1bd3f74bf256573de3384631decec610717897fd380f566ad00247be3",
    "texture-000000.parquet": "fe9c9bcf2a798fdf11f0ee8a16cf9b88e2c63b6d0600b3ac6e33c5ed5c9c5216",
    "texture-000000.tar": "75584bad45f43ac63416d86877c86f1a9042547cc0eae7913e2b8ff8e1f9ee75",
}
TINY = {
    "remove-000000.parquet": "f7b9c25375eedee7db07f2b1a335196f426198581a089e92b8d71438a6e7e6df",
    "remove-000000.tar": "8e562e005ed19a8f2799385176bb3f5101cea754c8bd0c2371504585ef150b5b",
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
    run_cli("generate", "--task", "remove", "--pipeline", "tiny", "--n", "4", "--shard-size", "4", "--seed", "7",
            "--out", str(tmp_path), "--workers", "0", "--no-progress")  # fmt: skip
    assert _hashes(tmp_path) == TINY
