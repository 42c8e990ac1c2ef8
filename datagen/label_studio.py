"""Label Studio both ways: a run's candidates as Label Studio tasks (`datagen export OUT DEST --format
label-studio`), and Label Studio's JSON export read back into OUT/labels/ (`datagen labels import FILE --out OUT`).

    DEST/tasks.json            Label Studio's basic JSON import format: [{"data": {...}}, ...]
    DEST/label_config.xml      the labelling interface: input, output and mask side by side under the instruction,
                               a verdict (good / bad / unsure) and optional aspects
    DEST/images/KEY.cN.{input,output,mask}.EXT   the images the tasks point at

Every kept pair and every rejected candidate the run stored (pipeline.keep_rejected) is a task; its data names the
sample key, candidate and task, which the import reads back. Image paths are relative to DEST, or URLs under
`--image-url PREFIX` (Label Studio's local-files route or a bucket). The scores are not in the tasks: a labeller
sees the pair, not the gates' opinion of it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from datagen.errors import ConfigError
from datagen.labels import ASPECTS, VERDICTS, Label, write_all

TASKS = "tasks.json"
CONFIG = "label_config.xml"
IMAGES = "images"
VERDICT, ASPECT = "verdict", "aspects"
"""The names of the two Choices controls in CONFIG (Label Studio's `from_name` in an annotation's results)."""


def label_config() -> str:
    choices = "".join(f'<Choice value="{v}"/>' for v in VERDICTS)
    aspects = "".join(f'<Choice value="{a}"/>' for a in ASPECTS)
    return (
        "<View>\n"
        '  <Header value="$task: $instruction"/>\n'
        '  <View style="display: flex; gap: 1em;">\n'
        '    <Image name="input" value="$input"/>\n'
        '    <Image name="output" value="$output"/>\n'
        '    <Image name="mask" value="$mask"/>\n'
        "  </View>\n"
        f'  <Choices name="{VERDICT}" toName="output" choice="single" required="true">{choices}</Choices>\n'
        f'  <Choices name="{ASPECT}" toName="output" choice="multiple">{aspects}</Choices>\n'
        "</View>\n"
    )


def write_tasks(run, dest, image_url: str = "", progress: bool = True) -> dict[str, Any]:
    """Every kept pair and stored rejected candidate of `run` as a Label Studio task in DEST; returns counts."""
    from datagen.progress import Progress

    shards = run.committed()
    images = dest.sub(IMAGES)
    images.makedirs()
    tasks, counts = [], defaultdict(int)
    bar = Progress(len(shards), "export label-studio", unit="shard", enabled=progress)

    def add(key: str, candidate: int, meta: dict[str, Any], members: dict[str, tuple[str, bytes]], status: str):
        data = {
            "key": key,
            "candidate": candidate,
            "task": meta.get("task", ""),
            "instruction": meta.get("instruction", ""),
        }
        for member in ("input", "output", "mask"):
            name, content = members[member]
            file = f"{key}.c{candidate}.{member}.{name.rsplit('.', 1)[-1]}"
            images.write_atomic(file, content)
            data[member] = f"{image_url}{IMAGES}/{file}"
        tasks.append({"data": data})
        counts[status] += 1

    for shard in shards:
        rows = run.manifest(shard.name, ("key", "candidate", "status")).to_pylist()
        kept = {row["key"]: int(row["candidate"] or 0) for row in rows if row["status"] == "kept"}
        for sample in run.samples(shard):
            add(sample.key, kept.get(sample.key, 0), sample.meta, sample.images, "kept")
        if shard.keeps_rejected:
            for candidate in run.rejected(shard):
                if candidate.images:
                    add(candidate.key, candidate.candidate, candidate.meta, candidate.images, "rejected")
        bar.update(1)
    bar.close()
    dest.write_atomic(CONFIG, label_config().encode())
    dest.write_atomic(TASKS, json.dumps(tasks, indent=1).encode())
    return {"tasks": len(tasks), "kept": counts["kept"], "rejected": counts["rejected"]}


def annotator_of(annotation: dict[str, Any]) -> str:
    """A labels-store annotator name for a Label Studio annotation's author: its e-mail's local part, else
    `ls-<user id>`."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    text = str(who).split("@", 1)[0].lower() if who is not None else "label-studio"
    text = re.sub(r"[^a-z0-9_-]+", "-", text).strip("-_") or "label-studio"
    return (text if not text.isdigit() else f"ls-{text}")[:40]


def read_export(path: str | Path) -> list[Label]:
    """Label Studio's JSON export (a list of tasks with their annotations) as labels: each annotation that is not
    cancelled and chose a verdict; tasks without datagen's key and candidate are refused by name."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not Label Studio's JSON export ({e})") from None
    if not isinstance(tasks, list):
        raise ConfigError(f"{path}: expected Label Studio's JSON export, a list of tasks; got {type(tasks).__name__}")
    labels = []
    for number, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or "key" not in data or "candidate" not in data:
            raise ConfigError(
                f"{path}: task {number} has no data.key and data.candidate: export the project whose tasks "
                f"`datagen export --format label-studio` wrote"
            )
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            verdict, aspects = None, {}
            for result in annotation.get("result") or []:
                chosen = (result.get("value") or {}).get("choices") or []
                if result.get("from_name") == VERDICT and chosen:
                    verdict = chosen[0]
                elif result.get("from_name") == ASPECT:
                    aspects = {a: True for a in chosen if a in ASPECTS}
            if verdict is None:
                continue
            labels.append(
                Label(
                    str(data["key"]),
                    int(data["candidate"]),
                    str(data.get("task", "")),
                    verdict,
                    annotator_of(annotation),
                    "label-studio",
                    aspects,
                )
            )
    return labels


def import_labels(path: str, out: str) -> dict[str, int]:
    """Read Label Studio's export into OUT/labels/label-studio-<annotator>.jsonl (each file replaced whole: an
    import of a newer export supersedes the last); returns labels per annotator."""
    from datagen.shards import RunFolder

    run = RunFolder(out)
    run.record()  # OUT must be a run
    by: dict[str, list[Label]] = defaultdict(list)
    for label in read_export(path):
        by[label.annotator].append(label)
    for annotator, labels in by.items():
        write_all(run.folder, labels, "label-studio", annotator)
    return {annotator: len(labels) for annotator, labels in sorted(by.items())}


def flags(parser) -> None:
    parser.description = "The labels store, OUT/labels/: read Label Studio's JSON export into it."
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    imported = sub.add_parser("import", help="read Label Studio's JSON export into OUT/labels/")
    imported.add_argument("file", metavar="FILE", help="Label Studio's JSON export of the project")
    imported.add_argument("--out", required=True, help="the run whose candidates were labelled")


def run(args) -> int:
    counts = import_labels(args.file, args.out)
    total = sum(counts.values())
    who = ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"
    where = f"{args.out.rstrip('/')}/labels/"
    print(f"imported {total} labels into {where} ({who}); measure with: datagen calibrate {args.out}")
    return 0
