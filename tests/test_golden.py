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
machine gave 69b202d8…, the AVX-512 one that recorded the rest a6ab2aa3…). A third value is a finding: look.
Recorded again for issue 34 (gates measured against people): every record gained the gt_local_l1 score (a json key
and a manifest column, null off scenes), after checking that apart from it every tar member and manifest row of the
local mixture's other 13 tasks was the same; `remove` and `add` changed on purpose, twice over: their mask variants
no longer paint another object the scene knows (its pixels are spared and the fill is made without them), and their
gates are the ones calibrated against labels (gt_l1 0.025, gt_local_l1 0.06, gt_objects_l1 0.002: tasks/remove.yaml
says why), so the local mixture keeps 1 remove and 0 add samples of 3 each. Only the AVX2-only machine of
2026-12-07 could record the tiny run this time (its manifest hash on an AVX-512 processor is still to be recorded
there: until then the test fails on one, naming the hash it found)."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli, run_inline

LOCAL = {
    "add-000000.parquet": "9550e83926ecf5d35897da5e92c97afe6aef2eb5d83edb936003b337f6a4d4b2",
    "add-000000.tar": "84ff92691f909a05b224e1c56abb4864f01b4f8e3c854e4bb4c7baf1d3f6d652",
    "background-000000.parquet": "10609212a3543220c117b3a1c1c3e88b1f3d9a1899e2f3d7a80bfe48acc6bcea",
    "background-000000.tar": "af69454fd4ea3a6160e5d3f788acaa51eccb67511c11dbec87edd461e56d4e78",
    "color-000000.parquet": "6efaeb579eb552e9dd9e04d723358d646a0bc8261b3821f1d4408e2dc6ca6956",
    "color-000000.tar": "20134270f6d21b7afba5b7823ed1b1cfe4761ffdd7a656fed204f04e21d9b588",
    "depth-000000.parquet": "1756d314464f564387cb92fe8ad2adab57297b5c934ae27a12aae60c61df80ba",
    "depth-000000.tar": "d9947a75d733345c68e5014ddf8b6465c2ceabcbb3f5cba323d93ec8632b4fbc",
    "detect-000000.parquet": "fe77a7744d7aa8c835766e6ed62ba73826c695323f42e27c8f88b9dcc8161f66",
    "detect-000000.tar": "505df21a9dde92ca661e16ed349222be73c30793c37fa1b1004ece057972637e",
    "global-000000.parquet": "f002b597abc944c42e2cc001e784fb44f63ef2b68e9373a1db289cf7fcf9cba2",
    "global-000000.tar": "9723b6e8c5f192cfcdd710882342fd71c1278f8418d5d9bf5775cfc2bc3da48e",
    "local-000000.parquet": "b9b91e13b04353b4e34b57dbc0054c2fb3a5eaeff73ee12c7bd00d17c7099a98",
    "local-000000.tar": "fa4df9a8503f4c7675af74d30cc4d19df45e0f2966eee2462e38753b4c1027f2",
    "normal-000000.parquet": "298020cf55bed8210d240fa2c7989016c4a6e6cb835470d7533bdf9782be6159",
    "normal-000000.tar": "e0db12982c820ccf0fd75b97c4820cf99b8ae5b027dce0f256886e5282fada7d",
    "remove-000000.parquet": "ce4a190f1c06919cc6c6de4b7366418f96afad72ffb17cfd92d2be3df4e2ff29",
    "remove-000000.tar": "9abcb6c947b1b714a27150a34666f8f2f82e7e831d9d6ee6c16af4853496edbb",
    "segmap-000000.parquet": "97b5a2ff4c744022ee53649a16e6fb1a3e41dacfe86f0027b94137d77e4a7360",
    "segmap-000000.tar": "f710279a822ad04c320656e936a605a888f21ed11d2aac2a392113946c2dad9e",
    "segment-000000.parquet": "764a7ace396758d31b23cee16526706940c665eb7397cecf57db739b7b2ebc33",
    "segment-000000.tar": "526a7d613c5c8c5a0dc627fb9ed6bb57422f27189119e944327df04df8100023",
    "sketch-000000.parquet": "a92f9b5ba3f7d2f5fcdd611b144fae87fb09d259ecdf0f4581cdc83824dbb171",
    "sketch-000000.tar": "87f9bc457f800d14542cff74a57fce386cec01d08d4e6ed66cc5c3236e8e0967",
    "style-000000.parquet": "20c314f54dff919c6f993917b33cf4354ca9a8abb8320d042d6e8197ef481f6c",
    "style-000000.tar": "c9d7f5e7a3f0e8e78e37d279544599d0fe64657c2fde57e7a404ebc72ba87138",
    "text-000000.parquet": "59f58df83aa4590a05de605bab349004a02f3f571775484053590d460de42bcb",
    "text-000000.tar": "3d6046ec9e70a91613a9c2996c9687efea7419624fee008b0c8eff58d9aeddfd",
    "texture-000000.parquet": "ae82185bed24d5df7c7f9b88e85986ddb389f7f1719d1636293f5c12ccf3d016",
    "texture-000000.tar": "16587d679161a7902836c5fe898f460313c23240b2d8a2223fddb6f9e97a31d6",
}
TINY = {
    "remove-000000.parquet": ("bb2dd5ba024aa5351ac4c2bed7259c3c589c38033b4125444c370a01cb2895ce",),  # AVX2 only
    "remove-000000.tar": ("64dd9f2f589dbb973a354e9c768dbaa0ad029868a0fda2852eba5d2f2756fbbf",),
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
