"""The dataset card every export writes beside its data: DEST/README.md, a Hugging Face YAML header (configs,
features, size, licence) that `datasets` and the Hub read, then in words and tables what users of ImgEdit,
Pico-Banana and ScaleEdit ask their authors for in issues: what the data holds per task, every gate's threshold and
how many it rejected, why the rest were dropped, the models that made it with the licence each declares (a field in
the pipeline files: FLUX.1-dev's outputs, for one, come under a non-commercial licence), the library versions and the
command that made the run.

    datagen export out/remove exports/remove --format hf-parquet    # exports/remove/README.md
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import yaml

from datagen.scores import SCORES
from datagen.shards.tally import RunCounts, count_manifests, count_stats

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))  # fmt: skip
"""The Hub's size_categories, by the number of rows."""

UNRECORDED = "(not recorded: OUT has no run.json, or its run was made before datagen kept the command)"

DATA_FILES = {"hf-parquet": "data/train/*.parquet", "preference": "data/train/*.parquet", "imagefolder": "train/**",
              "magicbrush": "data/train/*.parquet", "sessions": "data/train/*.parquet"}  # fmt: skip
"""Where each export format's rows are, as the card's `configs` names them."""


def size_category(rows: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>1B")


def yaml_features(features: dict[str, Any]) -> list[dict[str, Any]]:
    """`datasets` features (as the parquet schema's `huggingface` metadata holds them) in the card's YAML form."""
    out = []
    for name, feature in features.items():
        if feature.get("_type") == "Image":
            out.append({"name": name, "dtype": "image"})
        elif feature.get("_type") == "Value":
            out.append({"name": name, "dtype": feature["dtype"]})
        elif feature.get("_type") == "List":  # a list of structs (the sessions format's turns)
            out.append({"name": name, "list": yaml_features(feature["feature"])})
        else:  # a struct: a mapping of its fields
            out.append({"name": name, "struct": yaml_features(feature)})
    return out


def _licence(models: list[dict[str, Any]]) -> str:
    """The header's licence: the one all the models declare, else `other` (the card's table says which)."""
    declared = {model["license"] for model in models if model["license"]}
    if len(declared) == 1 and all(model["license"] for model in models):
        return declared.pop()
    return "other"


def models_used(configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each role a run's tasks used (write and render): backend, model, revision, licence; each once."""
    from datagen.config import RunConfig
    from datagen.resolve import roles_used

    found: dict[tuple, dict[str, Any]] = {}
    for config in configs.values():
        run = RunConfig.model_validate(config)
        for role in sorted(roles_used(run, "generate")):
            spec = run.pipeline.roles[role]
            licence = spec.license
            if licence is None and (spec.model or "").startswith("tiny:"):
                licence = "none: random weights built from a config (tests)"
            row = {
                "role": role,
                "backend": spec.backend,
                "model": spec.model,
                "revision": spec.revision,
                "license": licence,
            }
            found.setdefault((role, spec.backend, spec.model, spec.revision), row)
    return sorted(found.values(), key=lambda row: (row["role"], str(row["model"])))


def _table(rows: list[list[Any]], head: list[str]) -> str:
    def cell(value: Any) -> str:
        return "—" if value in (None, "") else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def gate_reasons(name: str, spec: dict[str, Any]) -> list[str]:
    """The reasons a gate gives a candidate it rejects (filters.gate): its own, or `{score}_low` / `_high`."""
    if spec.get("reason"):
        return [spec["reason"]]
    return [f"{name}_{side}" for side, bound in (("low", "min"), ("high", "max")) if spec.get(bound) is not None]


def _gate(spec: dict[str, Any]) -> str:
    parts = []
    if spec.get("min") is not None:
        parts.append(f"≥ {spec['min']:g}")
    if spec.get("max") is not None:
        parts.append(f"≤ {spec['max']:g}")
    return " and ".join(parts) or "—"


def card(run, counts: dict[str, Any], format: str, features: dict[str, Any] | None) -> str:
    """The card of an export of `run` (a RunFolder) in `format` with `counts` (export's) and the rows' `features`
    (None where `datasets` infers them: imagefolder)."""
    from datagen.errors import ConfigError

    try:
        record = run.record()
    except ConfigError:  # shards copied without their run.json: the card says what it cannot know
        record = {"runs": {}}
    configs = {task: entry["config"] for task, entry in record["runs"].items()}
    models = models_used(configs)
    rendered = run.committed(required=False)
    written = run.committed(required=False, phase="write")
    rows = counts["samples"]
    info: dict[str, Any] = {}
    if features is not None:
        info["features"] = yaml_features(features)
    info["splits"] = [{"name": "train", "num_bytes": counts.get("bytes", 0), "num_examples": rows}]
    header = {
        "license": _licence(models),
        "task_categories": ["image-to-image"],
        "tags": ["image-editing", "instruction-based-image-editing", "synthetic", "datagen"],
        "size_categories": [size_category(rows)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILES[format]}]}],
        "dataset_info": info,
    }
    what = {
        "preference": "preference pairs (chosen, rejected)",
        "sessions": "sessions of (input image, instruction, edited image) turns",
    }.get(format, "(input image, instruction, edited image)")
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        "# Instruction-based image editing data made by datagen",
        "",
        f"{rows} {what} rows in `{format}` form, exported from the run `{counts['source']}` "
        f"({len(rendered)} committed shards; made {record.get('created', 'at an unrecorded time')}).",
        "",
        "## Contents",
        "",
    ]
    # a shard of sessions holds turns of several tasks: each sample counted under its own task, from the manifests
    sessions = any(shard.stats.get("sessions") for shard in rendered)
    counted = count_manifests(run, rendered) if sessions else count_stats(rendered)
    before = count_stats(written)
    table = [
        [
            task,
            counts["tasks"].get(task, 0),
            counted.task(task).samples,
            counted.task(task).kept,
            ", ".join(f"{reason} {n}" for reason, n in before.task(task).reasons.most_common()),
            ", ".join(f"{reason} {n}" for reason, n in counted.task(task).reasons.most_common()),
        ]
        for task in sorted(set(configs) | set(counted.tasks))
    ]
    lines += [
        _table(
            table,
            [
                "task",
                "rows here",
                "samples attempted",
                "kept",
                "rejected writing the instruction",
                "not kept when rendered (first candidate's reason)",
            ],
        ),
        "",
    ]
    if counted.sessions:
        lines += _sessions_section(counted, counts)
    lines += _quality_section(run, counts)
    lines += [
        "## Filters",
        "",
        "Every candidate is scored; these gates decide which are kept (then the best-ranked candidate of a "
        "sample is the pair). Rejected: candidates whose first failing gate it was.",
        "",
    ]
    candidates = count_stats(rendered)  # by the shard's task, as its stats count them
    gates = []
    for task, config in sorted(configs.items()):
        for name, spec in (config["task"].get("filters") or {}).items():
            if spec.get("enabled", True) is False:
                continue
            reasons = gate_reasons(name, spec)
            rejected = sum(candidates.task(task).candidate_reasons[reason] for reason in reasons)
            meaning = SCORES[name].description if name in SCORES else ""
            gates.append([task, f"`{name}`", _gate(spec), ", ".join(reasons), rejected, meaning])
    lines += [
        _table(gates, ["task", "score", "kept when", "reason when not", "candidates rejected", "what it is"]),
        "",
    ]
    lines += [
        "## Models",
        "",
        "The models that made these rows and the licence each declares (`license:` in the pipeline file; "
        "— where none is declared: read the model's own card). A licence of a model may bind what its "
        "outputs may be used for.",
        "",
    ]
    lines += [
        _table(
            [[m["role"], m["backend"], m["model"], m["revision"], m["license"]] for m in models],
            ["role", "backend", "model", "revision", "licence"],
        ),
        "",
    ]
    pipelines = sorted({config["pipeline"]["name"] for config in configs.values()})
    lines += [
        "## How it was made",
        "",
        f"Pipeline {', '.join(f'`{p}`' for p in pipelines) or '(not recorded)'}, seed "
        f"{record.get('seed', '(not recorded)')}. The command:",
        "",
        f"    {record.get('command') or UNRECORDED}",
        "",
        "The libraries that decide the bytes (the same seed, configuration and versions give the same bytes):",
        "",
    ]
    versions = record.get("versions") or {}
    lines += [_table([[name, version] for name, version in sorted(versions.items())], ["library", "version"]), ""]
    lines += ["Each row's `json` column holds its whole record: every score, the instruction, the models' ids.", ""]
    return "\n".join(lines)


def _sessions_section(counted: RunCounts, counts: dict[str, Any]) -> list:
    """The card's words and tables on a run of multi-turn sessions: how many were kept, where the others stopped."""
    sessions, by_turn = counted.sessions, counted.turns
    rule = (
        "its passing prefix kept when a later turn failed (--keep-prefix)"
        if sessions.keep_prefix
        else "kept only whole: a session any turn of which failed is dropped, its kept turns rejected as "
        "`session_dropped`"
    )
    lines = [
        "## Sessions",
        "",
        f"Multi-turn sessions of {sessions.turns} edits of one input, each turn's input the previous turn's output, "
        f"every turn gated against its own input; a session is {rule}. {sessions.sessions} sessions attempted, "
        f"{sessions.complete} complete, {sessions.kept} kept.",
        "",
    ]
    rows = [
        [
            turn,
            by_turn.get(turn, Counter())["attempted"],
            by_turn.get(turn, Counter())["kept"],
            (counts.get("turns") or {}).get(str(turn), "—"),
            sessions.dropped_at_turn.get(turn, 0),
        ]
        for turn in range(1, sessions.turns + 1)
    ]
    lines += [_table(rows, ["turn", "attempted", "kept", "rows here", "sessions that stopped here"]), ""]
    return lines


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _quality_section(run, counts: dict[str, Any]) -> list[str]:
    """How good the kept pairs are, as `datagen calibrate` measured them against people's labels and against exact
    ground truth (--oracle), and as each task file's `calibrated:` records them from when the gates were set; where
    the run itself was not measured, that it is unmeasured."""
    from datagen.calibrate import outputs

    lines = ["## How good the data is", ""]
    lines += _read_back(run)
    measured = {}
    for oracle in (False, True):
        name = outputs(oracle)[0]
        if run.folder.exists(name):
            measured["oracle" if oracle else "people"] = json.loads(run.folder.read_text(name))
    lines += _as_calibrated(run)
    if not measured:
        return lines + [
            "This run itself is unmeasured: nobody has labelled its pairs (`datagen review`, Label Studio through "
            "`datagen labels import`) and no oracle has been run on it (`datagen calibrate --oracle`)"
            + (", so the share of its kept pairs that are right is not known." if len(lines) == 2 else "."),
            "",
        ]
    rows = []
    for source, result in measured.items():
        kept = result.get("kept_pairs") or {}
        low, high = kept.get("interval") or (None, None)
        agreement = [
            p["kappa"] for p in (result.get("agreement") or {}).get("pairs", []) if p.get("kappa") is not None
        ]
        judges = [t["judge"] for t in result["tasks"].values() if t.get("judge")]
        rows.append(
            [
                "people" if source == "people" else "exact ground truth (oracle)",
                result["labels"],
                result["annotators"] if source == "people" else "—",
                f"{_pct(kept.get('precision'))} of {kept.get('labelled', 0)} [{_pct(low)}, {_pct(high)}]",
                ", ".join(
                    f"κ {j['kappa']:.2f}, accuracy {_pct(j['accuracy'])}" for j in judges if j.get("kappa") is not None
                )
                or "—",
                ", ".join(f"{k:.2f}" for k in agreement) or "—",
            ]
        )
    lines += [
        "The estimated precision of the kept pairs (the share a labeller calls good, with its 95% Wilson interval) "
        "against the labels of people and of exact ground truth, as `datagen calibrate` measured it on this run's "
        "candidates; the judge's agreement with those labels; and the annotators' agreement with each other "
        "(Cohen's κ), the ceiling any gate can be held to."
        + (
            f" This export left out the kept pairs that fail `{counts['thresholds']['file']}`; the precision is that "
            f"of the run's own gates."
            if counts.get("thresholds")
            else ""
        ),
        "",
        _table(rows, ["labels from", "labels", "annotators", "precision of kept pairs", "judge", "inter-annotator κ"]),
        "",
    ]
    return lines


def _read_back(run) -> list[str]:
    """Who read back the kept text edits on photos: the planner's own OCR alone (the reader role not installed), or
    it and a reader that shares no weights with it."""
    from datagen.errors import ConfigError

    try:
        rows = list(
            run.rows(
                status="kept",
                columns=[
                    "score_ocr_target_ned",
                    "score_ocr_old_gone",
                    "score_reader_target_ned",
                    "score_reader_old_gone",
                ],
            )
        )
    except ConfigError:  # a folder without committed manifests: nothing to say
        return []
    read = [r for r in rows if r.get("score_ocr_target_ned") is not None or r.get("score_ocr_old_gone") is not None]
    if not read:
        return []
    alone = [r for r in read if r.get("score_reader_target_ned") is None and r.get("score_reader_old_gone") is None]
    if alone:
        return [
            f"{len(alone)} of the {len(read)} kept text edits on photos were verified only by the planner's own "
            "model: the OCR that found the line and planned the edit (PP-OCRv4) read them back, and a reader agrees "
            "with itself. The independent reader (Tesseract, the `reader` role) was not installed where they were "
            "made (`make install-ocr`).",
            "",
        ]
    return [
        f"All {len(read)} kept text edits on photos were read back right by two readers that share no weights: the "
        "OCR that planned the edit (PP-OCRv4) and an independent one (Tesseract, the `reader` role).",
        "",
    ]


def _as_calibrated(run) -> list[str]:
    """The precision each task's gates had when they were set (the task file's `calibrated:`), on this run's
    pipeline: what the card can say of a run nobody labelled."""
    from datagen.errors import ConfigError

    try:
        runs = run.record()["runs"]
    except ConfigError:
        return []
    rows = []
    for task, entry in sorted(runs.items()):
        config = entry["config"]
        for record in config["task"].get("calibrated") or []:
            if record["pipeline"] == config["pipeline"]["name"]:
                low, high = record["interval"]
                precision = f"{_pct(record['precision'])} of {record['labelled']} [{_pct(low)}, {_pct(high)}]"
                when, note = record["date"], record.get("note", "")
                rows.append([task, record["pipeline"], record["labels"], precision, _pct(record["kept"]), when, note])
    if not rows:
        return []
    return [
        "The gates' precision as measured when they were set (the task file's `calibrated:`), on this pipeline: the "
        "share of kept pairs labelled good, its 95% interval, and the share of samples the gates kept.",
        "",
        _table(rows, ["task", "pipeline", "labels", "precision of kept pairs", "kept", "measured", "how"]),
        "",
    ]


def features_of(schema) -> dict[str, Any] | None:
    """The `datasets` features a parquet schema's `huggingface` metadata holds (None without it)."""
    meta = (schema.metadata or {}).get(b"huggingface")
    return json.loads(meta)["info"]["features"] if meta else None
