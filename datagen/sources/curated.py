"""A curated set (`datagen curate --out CURATED`) as a source: the photos no gate dropped and no near-duplicate, in
committed order, each read through the source it was curated from; a sample's reference names its curated key. The
set's folder is datagen/shards/curated.py's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from datagen.errors import ConfigError
from datagen.shards.curated import CURATE_JSON, DUPLICATES_MARKER, kept_inputs
from datagen.sources.base import InputSpec, LoadedInput, SourceItem
from datagen.storage import Folder


class CuratedSource:
    kind: ClassVar[str] = "curated"
    summary: ClassVar[str] = "a set `datagen curate` made"
    photos: ClassVar[bool] = True
    text_only: ClassVar[bool] = False
    urls: ClassVar[bool] = True
    curates: ClassVar[bool] = False
    caption_where: ClassVar[str] = "in the source it was curated from"
    fills: ClassVar[tuple[str, ...]] = ("caption", "objects")
    input: ClassVar[InputSpec | None] = InputSpec(
        arg="CURATED",
        allowed="a folder `datagen curate` wrote (curate.json, inputs/, duplicates.parquet)",
        folder=True,
        suffixes=(),
        empty="no curated input (no curate.json, or every input dropped: see `datagen curate`'s funnel)",
        repeat=True,
    )

    def __init__(self, root: str, size: int | Sequence[tuple[int, int]]):
        self.folder = Folder(root)
        self.size = size
        self._kept: list[dict[str, Any]] | None = None
        self._inner = None

    @property
    def inner(self):
        """The source the set was curated from, as curate.json names it."""
        if self._inner is None:
            from datagen.sources import build_source

            settings = json.loads(self.folder.read_text(CURATE_JSON))
            self._inner = build_source(settings["source"], self.size, settings["input"])
        return self._inner

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> CuratedSource:
        return cls(str(input), size)

    @property
    def kept(self) -> list[dict[str, Any]]:
        """The kept inputs; none in a folder without curate.json; ConfigError for an unfinished curation."""
        if self._kept is None:
            if not self.folder.exists(CURATE_JSON):
                self._kept = []
            elif not self.folder.exists(DUPLICATES_MARKER):
                raise ConfigError(
                    f"--input {self.folder}: its curation is unfinished (no {DUPLICATES_MARKER}); "
                    f"run the same `datagen curate` again to finish it"
                )
            else:
                self._kept = kept_inputs(self.folder)
        return self._kept

    def unreadable(self) -> list[tuple[str, str, str]]:
        return []

    def __len__(self) -> int:
        return len(self.kept)

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        chosen = self.kept[index % len(self.kept)]
        return {"kind": self.kind, "key": chosen["key"], "of": chosen["ref"], "scores": chosen["scores"]}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        item = self.inner.item(ref["of"])
        item.ref = ref
        return item

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        return self.inner.load(ref["of"], max_pixels)

    def original(self, ref: dict[str, Any], max_pixels: int) -> np.ndarray:
        return self.inner.original(ref["of"], max_pixels)
