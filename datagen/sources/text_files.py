"""Text-only sources read from one file: caption files (.txt, .jsonl, .parquet) and topic lists (.txt, .yaml). They
give no image: the render phase generates it from the caption (which, for a topic, the writer writes first)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml

from datagen.errors import ConfigError
from datagen.sources.base import BadSource, InputSpec, LoadedInput, SourceItem, object_names, wrong_suffix


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line of a UTF-8 file."""
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
                except UnicodeDecodeError as e:
                    raise ConfigError(f"{path}:{lineno}: not UTF-8 ({e.reason}); save the file as UTF-8") from None
                if text:
                    yield lineno, text
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None


def _is_text(arrow_type: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


class CaptionFileSource:
    """Captions from a .txt, .jsonl or .parquet file, one sample per row; text-only: the render phase generates
    each input image from its caption. Rows are the file's non-blank lines (or the table's rows)."""

    kind: ClassVar[str] = "captions"
    summary: ClassVar[str] = "a caption file (.txt, .jsonl, .parquet); the images are drawn"
    photos: ClassVar[bool] = False
    text_only: ClassVar[bool] = True
    urls: ClassVar[bool] = False
    curates: ClassVar[bool] = False
    caption_where: ClassVar[str] = "the caption file"
    fills: ClassVar[tuple[str, ...]] = ("caption", "objects")
    input: ClassVar[InputSpec | None] = InputSpec(
        arg="FILE",
        allowed='captions as .txt (one per line), .jsonl (one {"caption": "...", "objects": ["..."]} per line, '
        "objects optional) or .parquet (a string column `caption`, an optional list-of-strings column `objects`)",
        folder=False,
        suffixes=(".txt", ".jsonl", ".parquet"),
        empty="no captions in it (blank lines are skipped)",
    )

    def __init__(self, path: str):
        self.path = Path(path)
        self._rows: list[tuple[Any, Any]] | None = None

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> CaptionFileSource:
        """Text-only: `size` is not used (the render draws each image in a bucket of its own)."""
        return cls(str(input))

    @property
    def rows(self) -> list[tuple[Any, Any]]:
        """(caption, objects) per row as read; each row is checked when it becomes an item."""
        if self._rows is None:
            self._rows = self._read()
        return self._rows

    def _read(self) -> list[tuple[Any, Any]]:
        suffix = self.path.suffix.lower()
        if suffix == ".txt":
            return [(text, None) for _, text in _text_lines(self.path)]
        if suffix == ".jsonl":
            return [self._jsonl_row(lineno, text) for lineno, text in _text_lines(self.path)]
        if suffix == ".parquet":
            return self._parquet_rows()
        raise wrong_suffix(self.path, self.kind, self.input)

    def _jsonl_row(self, lineno: int, text: str) -> tuple[Any, Any]:
        line = '{"caption": "...", "objects": ["...", ...]} (objects optional)'
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.path}:{lineno}: not valid JSON ({e.msg}); each line must be {line}") from None
        if not isinstance(data, dict) or not isinstance(data.get("caption"), str):
            raise ConfigError(f"{self.path}:{lineno}: no string field `caption`; each line must be {line}")
        return data["caption"], data.get("objects")

    def _parquet_rows(self) -> list[tuple[Any, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        allowed = "a captions table has a string column `caption` and an optional list-of-strings column `objects`"
        try:
            table = pq.ParquetFile(self.path)
            schema = table.schema_arrow
        except (OSError, pa.ArrowException) as e:
            raise ConfigError(f"{self.path}: not a readable Parquet file ({e}); {allowed}") from None
        if "caption" not in schema.names:
            columns = ", ".join(schema.names) or "none"
            raise ConfigError(f"{self.path}: no column `caption` (it has: {columns}); {allowed}")
        caption_type = schema.field("caption").type
        if not _is_text(caption_type):
            raise ConfigError(f"{self.path}: column `caption` is {caption_type}; {allowed}")
        columns = ["caption"]
        if "objects" in schema.names:
            objects_type = schema.field("objects").type
            is_list = pa.types.is_list(objects_type) or pa.types.is_large_list(objects_type)
            if not (is_list and _is_text(objects_type.value_type)):
                raise ConfigError(f"{self.path}: column `objects` is {objects_type}; {allowed}")
            columns.append("objects")
        try:
            data = table.read(columns=columns, use_threads=False)
        except (OSError, pa.ArrowException) as e:
            raise ConfigError(f"{self.path}: not a readable Parquet file ({e}); {allowed}") from None
        captions = data.column("caption").to_pylist()
        objects = data.column("objects").to_pylist() if "objects" in columns else [None] * len(captions)
        return list(zip(captions, objects, strict=True))

    def unreadable(self) -> list[tuple[str, str, str]]:
        return []

    def __len__(self) -> int:
        return len(self.rows)

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "row": index % len(self.rows)}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        row = int(ref["row"])
        caption, objects = self.rows[row]
        if not isinstance(caption, str) or not caption.strip():
            raise BadSource("empty_caption", f"{self.path.name} row {row}")
        return SourceItem(ref=ref, caption=caption.strip(), objects=object_names(objects))

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        return LoadedInput(image=None)


class TopicSource:
    """Topics from a .txt (one per line) or .yaml (a list of strings) file, cycled through; the writer writes a
    caption on the topic, the render phase generates the image from it."""

    kind: ClassVar[str] = "topics"
    summary: ClassVar[str] = "a topic list; the LLM writes the captions, the images are drawn"
    photos: ClassVar[bool] = False
    text_only: ClassVar[bool] = True
    urls: ClassVar[bool] = False
    curates: ClassVar[bool] = False
    caption_where: ClassVar[str] = "written by the LLM from the topic"
    fills: ClassVar[tuple[str, ...]] = ("topic",)
    input: ClassVar[InputSpec | None] = InputSpec(
        arg="FILE",
        allowed="topics as .txt (one per line) or .yaml (a list of strings)",
        folder=False,
        suffixes=(".txt", ".yaml", ".yml"),
        empty="no topics in it (blank lines are skipped)",
    )

    def __init__(self, path: str):
        self.path = Path(path)
        self._topics: list[str] | None = None

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> TopicSource:
        """Text-only: `size` is not used (the render draws each image in a bucket of its own)."""
        return cls(str(input))

    @property
    def topics(self) -> list[str]:
        if self._topics is None:
            self._topics = self._read()
        return self._topics

    def _read(self) -> list[str]:
        suffix = self.path.suffix.lower()
        if suffix == ".txt":
            return [text for _, text in _text_lines(self.path)]
        if suffix in (".yaml", ".yml"):
            return self._yaml_topics()
        raise wrong_suffix(self.path, self.kind, self.input)

    def _yaml_topics(self) -> list[str]:
        allowed = "a YAML topics file is a list of strings, one `- topic` per line"
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{self.path}: cannot read ({e})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{self.path}:{mark.line + 1}" if mark else str(self.path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)}); {allowed}") from None
        if data is None:
            return []
        if not isinstance(data, list):
            raise ConfigError(f"{self.path}: expected a list, got a {type(data).__name__}; {allowed}")
        for number, topic in enumerate(data, 1):
            if not isinstance(topic, str) or not topic.strip():
                raise ConfigError(f"{self.path}: list item {number} is {topic!r:.60}, not a topic; {allowed}")
        return [topic.strip() for topic in data]

    def unreadable(self) -> list[tuple[str, str, str]]:
        return []

    def __len__(self) -> int:
        return len(self.topics)

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "topic": index % len(self.topics), "index": index}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        return SourceItem(ref=ref, caption="", objects=[], topic=self.topics[int(ref["topic"])])

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        return LoadedInput(image=None)
