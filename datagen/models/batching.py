"""What every batched role shares: call counting for the shard's stats, grouping items into model calls."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from datagen.errors import Reject

T = TypeVar("T")


class Counted:
    """A role that counts what its model was asked: `calls` (batched calls) and `items` (what they held); diffusers
    roles also count `forwards` of their denoiser. The render reads the counters around each stage."""

    calls: int = 0
    items: int = 0
    forwards: int = 0

    def counted(self, items: int) -> None:
        self.calls += 1
        self.items += items


def chunked(keys: Sequence[Hashable], size: int) -> list[list[int]]:
    """Indices of `keys` grouped by equal key (first-seen order; e.g. the image shape, which one tensor batch
    needs), each group cut into chunks of at most `size`: one chunk = one model call."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return [group[start : start + size] for group in groups.values() for start in range(0, len(group), size)]


def each(function: Callable[..., T], items: Sequence[tuple]) -> list[T | Reject]:
    """`function(*item)` for every item, a rejection in place of the result of an item that raised one: the batched
    call of a role whose model works one item at a time (classical methods, oracles)."""
    out: list[Any] = []
    for item in items:
        try:
            out.append(function(*item))
        except Reject as e:
            out.append(e)
    return out
