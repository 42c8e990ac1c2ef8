"""The restructuring changes no byte: a fixed-seed `local` mixture and a `tiny` run commit exactly the shards they
committed before it (hashes recorded on main before the run folder and runner were reorganised, issue 17)."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli

LOCAL = {
    "add-000000.parquet": "a08601855a05b44153f342a0378c84f12dd4d138912020fefa9dcb2684704dc9",
    "add-000000.tar": "53b649be8f977075890ea2126f9f6d7668d765e8cff7447e444303d835027c1a",
    "background-000000.parquet": "34da87d15db0dda0faeecc3e4dcbdc331a5fbfb7b3a5587590a4abbe2c81ef07",
    "background-000000.tar": "0a2d777cb8ff5c6350ad2effc4fd25ecf0178474f704b6a7c9b59b38dc35f15d",
    "color-000000.parquet": "643a0672dcb096f5942b9a9ad6f3307579b36b587c81365301f538fb8f7f1a01",
    "color-000000.tar": "542aca4fd780f3a5f0905690bfc827ace6e19da2a0d3b08505c7ff2455acec0a",
    "depth-000000.parquet": "4f1e7a3260d6743df498247c1a14eeff0d6beb6fc54cae2d7d1fd4fde1b8cbc0",
    "depth-000000.tar": "671c7adb5905fccb1bb5560ed82951711b7183d47125b3ff7d9f67d72db8cd5c",
    "detect-000000.parquet": "6f46a77986fa69a385101c513c2d3a84dccd19ade49c4f201a5c7cc62b46b40d",
    "detect-000000.tar": "ea1319993ec76f21e97c3c328fe246869756610b901d6238399bc8fe3fcb3f5f",
    "global-000000.parquet": "a4c1db46002909a9d95f62ddfc72fbd1fb564763c52631a6bc8ac696973be562",
    "global-000000.tar": "0befbff961fdcc3af0e4b596b0982769745502cbc92c08d31c859dab9cd2549c",
    "local-000000.parquet": "79092162a51fb89d6708066ddf1ae6f338412d4b1b55966516c556364e991901",
    "local-000000.tar": "8710cfbdbd3d91aa8c9d7f8fe0e995b6ea3ee2be224aacee5c145d9aec78604c",
    "normal-000000.parquet": "78775783deeda1034dab1a99d6b11e9757866773b5ba56030d0680821322e989",
    "normal-000000.tar": "1f82f8e2b40278ff340b5dcd6d1ccbad0bbde059e5ed7f9d5fb49c8475dc5713",
    "remove-000000.parquet": "bdbe882a345e438678b0d5aaa77017fdad4949f6913824d46178d639f9cbbd41",
    "remove-000000.tar": "e1bd105fca33fd3226d3a8a99088eb4dbbf10f63c83f2f313571e429381f4dc9",
    "segmap-000000.parquet": "37e9e295aa7ad8032189fea525641e1a3ef5053cc47eb8e33bead078de2e6de3",
    "segmap-000000.tar": "f57c8a0051de9e71414990c8c6d691469330fe8cc1f290ad03530a235c3e589e",
    "segment-000000.parquet": "d480e9216b88ec4f61fd147c404c64ad568c172646e49f4bc03f2649d8977207",
    "segment-000000.tar": "93111653a54827c376fd779ecb2b78d4453a5d8895a1e24c5438246d1909a6d5",
    "sketch-000000.parquet": "7e67c09a4513d709a0a2f9f888e6ac9c3d88556cd5957adbb3314a2eba81111a",
    "sketch-000000.tar": "11d32a7932b87a9875cc3a2177706383caf275f75f68cbcabf0549dff36d8dd5",
    "style-000000.parquet": "6cb79146779fe889fea536912c3ae0d74bb16084160ac21928d9e34f6257115e",
    "style-000000.tar": "2eb4eb99d8958cf1151ab117656985e140120d414f00225b88ed00c4426454a7",
    "text-000000.parquet": "bb19d91fceea7d910e2767d98ffcf8d6abffaaf58ae2315f0b429114ed55fdf1",
    "text-000000.tar": "64cc1087da551de30f8926bc497df8b90997582cc0a5d972732da9a7a451e873",
    "texture-000000.parquet": "83015da7ae611b10995cf869afa8c63ead8d8c6aed6ace59410fbb5216cd6d07",
    "texture-000000.tar": "3566f6d834cf4d30fdf5a1e97a727b3fb616a8796732aca6ba9832aa81cd1b91",
}
TINY = {
    "remove-000000.parquet": "1305c06b592fc582c0bda572ea2b27a8346325c39aee8edcd243e3fe63b8e2af",
    "remove-000000.tar": "530eef8324839a177e8e377273b92d8ec51f5ab179f6dada774706064dedfc29",
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
