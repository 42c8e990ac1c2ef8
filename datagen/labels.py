"""People's (and the oracle's) verdicts on a run's candidates: OUT/labels/, the store `datagen review` appends to,
`datagen labels import` fills from Label Studio, and `datagen calibrate` reads.

    OUT/labels/{source}-{annotator}.jsonl    one label a line, appended as it is given

A label names a candidate by its sample key and candidate number and says `good`, `bad` or `unsure`, with optional
aspects (follows the instruction, preserves the rest, looks right). The review server appends each label with a
flush and an fsync before it answers, so a killed server loses at most the label in flight; a line cut short by
the kill is skipped when read. A later label of the same annotator on the same candidate replaces the earlier one,
and several annotators may label the same candidates (their agreement is calibrate's ceiling).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from datagen.errors import ConfigError
from datagen.storage import Folder

LABELS = "labels"
VERDICTS = ("good", "bad", "unsure")
ASPECTS = ("follows", "preserves", "looks_right")
"""Optional aspects of a label: follows the instruction, preserves the rest of the image, looks right."""
LABEL_SOURCES = ("review", "label-studio", "oracle")
"""Where a label came from (its file's prefix): not to be confused with datagen.sources, where inputs come from."""
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass
class Label:
    key: str
    candidate: int
    task: str
    label: str
    annotator: str
    source: str = "review"
    aspects: dict[str, bool] = field(default_factory=dict)
    time: str = ""

    def __post_init__(self) -> None:
        if self.label not in VERDICTS:
            raise ConfigError(f"label {self.label!r} of {self.key}: allowed: {', '.join(VERDICTS)}")
        if not NAME.match(self.annotator):
            raise ConfigError(
                f"annotator {self.annotator!r}: allowed: 1-40 lower-case letters, digits, '_' and '-', starting with "
                f"a letter or digit"
            )
        if self.source not in LABEL_SOURCES:
            raise ConfigError(f"label source {self.source!r}: allowed: {', '.join(LABEL_SOURCES)}")
        unknown = set(self.aspects) - set(ASPECTS)
        if unknown:
            raise ConfigError(f"label aspects {sorted(unknown)}: allowed: {', '.join(ASPECTS)}")

    @property
    def item(self) -> tuple[str, int]:
        return self.key, self.candidate


def file_name(source: str, annotator: str) -> str:
    return f"{source}-{annotator}.jsonl"


def append(out: str | Folder, label: Label) -> None:
    """Append one label to its annotator's file, durably (flushed and fsynced before this returns). Local folders
    only: object stores cannot append (label there through Label Studio and `datagen labels import`)."""
    folder = (out if isinstance(out, Folder) else Folder(out)).sub(LABELS)
    if not folder.local:
        raise ConfigError(f"{folder}: labels are appended on a local disk; review a local copy of the run")
    folder.makedirs()
    label.time = label.time or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = json.dumps(asdict(label), sort_keys=True) + "\n"
    with open(folder.at(file_name(label.source, label.annotator)), "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_all(out: str | Folder, labels: list[Label], source: str, annotator: str) -> str:
    """Replace one source's file of one annotator at once (an import, an oracle pass); returns its name."""
    folder = (out if isinstance(out, Folder) else Folder(out)).sub(LABELS)
    folder.makedirs()
    name = file_name(source, annotator)
    folder.write_atomic(name, "".join(json.dumps(asdict(x), sort_keys=True) + "\n" for x in labels).encode())
    return name


def read_labels(out: str | Folder, sources: tuple[str, ...] = LABEL_SOURCES) -> list[Label]:
    """Every label in OUT/labels/ of the given sources, the last of each (annotator, candidate) winning; a line cut
    short (a server killed mid-write) or not a label is skipped."""
    folder = (out if isinstance(out, Folder) else Folder(out)).sub(LABELS)
    if not folder.is_dir():
        return []
    latest: dict[tuple[str, str, int], Label] = {}
    for name in folder.names():
        if not name.endswith(".jsonl") or not any(name.startswith(f"{source}-") for source in sources):
            continue
        for line in folder.read_text(name).splitlines():
            try:
                data: dict[str, Any] = json.loads(line)
                label = Label(**data)
            except (ValueError, TypeError, ConfigError):
                continue
            latest[(label.annotator, label.key, label.candidate)] = label
    return list(latest.values())
