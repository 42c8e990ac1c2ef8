"""The LLM writer on the real vLLM engine (tiny random Llama, CPU), and remove/add end to end on the tiny stack.

Every test here runs in this process, so the whole pytest run shares one vLLM engine (the writer keeps engines per
process); the render phase makes real diffusers and transformers calls.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
import webdataset as wds

from datagen.config import RoleSpec
from datagen.errors import ConfigError
from datagen.images import decode_member
from datagen.models.tiny import resolve
from datagen.record import sample_seed
from datagen.resolve import load_run
from datagen.runner import execute
from datagen.shards import verify
from datagen.worker import ShardWorker
from datagen.writer import VLLMWriter, WriterReject, build_messages, llama2_chat, swap_verbs


def tiny_run(task: str, out, n: int = 8, **kwargs):
    return load_run(task, "tiny", out=str(out), n=n, shard_size=4, **kwargs)


def texts(out, task: str) -> list[dict]:
    rows = []
    for path in sorted((out / "texts").glob(f"{task}-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def samples(out) -> list[dict]:
    tars = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))


@pytest.fixture(scope="module")
def writer(tiny_dir, tmp_path_factory):
    config = tiny_run("remove", tmp_path_factory.mktemp("w"))
    worker = ShardWorker(config)
    return worker, worker.models["llm"]


# ------------------------------------------------------------------------------------------ prompting


def test_requests_hold_the_task_description_and_a_shuffled_60_percent_of_the_examples(tmp_path):
    prompt = tiny_run("remove", tmp_path).prompt
    first = build_messages(prompt, "a red ball on a table", np.random.default_rng(1))
    second = build_messages(prompt, "a red ball on a table", np.random.default_rng(2))
    assert first[0]["role"] == "system" and prompt.task_description.strip() in first[0]["content"]
    assert first[-1] == {"role": "user", "content": "Caption: a red ball on a table"}
    shown = [m["content"] for m in first[1:-1] if m["role"] == "user"]
    assert len(shown) == round(0.6 * len(prompt.examples)) == 13
    assert [m["role"] for m in first[1:-1]] == ["user", "assistant"] * 13
    other = [m["content"] for m in second[1:-1] if m["role"] == "user"]
    assert shown != other, "another sample sees other examples, in another order"
    by_caption = {f"Caption: {e.caption}": e.output for e in prompt.examples}
    for user, answer in zip(first[1:-1:2], first[2:-1:2], strict=True):
        expected, written = by_caption[user["content"]], json.loads(answer["content"])
        assert written["objects"] == expected["objects"] and written["output_caption"] == expected["output_caption"]


def test_verb_swaps_keep_the_rest_and_the_capitalisation():
    verbs = ["Remove", "Delete", "Take away", "Get rid of"]
    seen = {swap_verbs("Remove the lamp", verbs, np.random.default_rng(seed)) for seed in range(40)}
    assert seen == {"Remove the lamp", "Delete the lamp", "Take away the lamp", "Get rid of the lamp"}
    assert swap_verbs("please take away the mug", verbs, np.random.default_rng(3)).startswith("please ")
    assert swap_verbs("please take away the mug", verbs, np.random.default_rng(3))[7].islower()
    assert swap_verbs("Paint it blue", verbs, np.random.default_rng(0)) == "Paint it blue", "no verb: unchanged"


def test_llama2_fallback_format_equals_the_chat_template(tiny_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve("tiny:llm"))
    messages = [
        {"role": "system", "content": "You write edits."},
        {"role": "user", "content": "Caption: a dog"},
        {"role": "assistant", "content": '{"instruction": "Remove the dog"}'},
        {"role": "user", "content": "Caption: a cat"},
    ]
    assert llama2_chat(messages) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert llama2_chat(messages).startswith("<s>[INST] <<SYS>>\nYou write edits.\n<</SYS>>\n\nCaption: a dog [/INST]")


@pytest.mark.parametrize(
    "args, message",
    [
        ({"temperature": 3}, r"roles.llm.args.temperature`: 3; allowed: less than or equal to 2"),
        ({"tensor_parallel_size": 1.5}, r"tensor_parallel_size`: 1.5; allowed: a valid integer"),
        ({"top_k": 5}, r"roles.llm.args.top_k`: unknown argument; allowed: tensor_parallel_size, temperature"),
        ({"max_tokens": 4096}, r"roles.llm.args.max_tokens`: 4096 leaves no room for the prompt in max_model_len"),
        ({"engine_args": {"trust_remote_code": True}}, r"trust_remote_code`: not allowed"),
    ],
)
def test_bad_vllm_args_are_config_errors(tmp_path, args, message):
    prompt = tiny_run("remove", tmp_path).prompt
    with pytest.raises(ConfigError, match=message):
        VLLMWriter(RoleSpec(backend="vllm", model="tiny:llm", args=args), prompt)


# ---------------------------------------------------------------------------------------- vLLM engine


def test_every_completion_parses_and_is_schema_valid(writer):
    worker, llm = writer
    seeds = [sample_seed(0, "remove", 0, i) for i in range(24)]
    items = [worker.source.item(worker.source.ref(s, i)) for i, s in enumerate(seeds)]
    outputs = llm.write_batch(items, seeds)
    rejects = [o for o in outputs if isinstance(o, WriterReject)]
    assert not rejects, f"structured outputs: every completion parses ({[r.reason for r in rejects]})"
    schema = jsonschema.Draft202012Validator(worker.config.prompt.output_schema)
    for output in outputs:
        assert list(schema.iter_errors(output)) == []
    again = llm.write_batch(items[:6], seeds[:6])
    assert again == outputs[:6], "per-request seeds from the sample key: the same sample writes the same text"
    shifted = llm.write_batch(items[:6], [s + 1 for s in seeds[:6]])
    assert shifted != outputs[:6]


def test_a_completion_cut_off_is_a_rejected_record_with_its_reason(writer):
    worker, llm = writer
    short = VLLMWriter(llm.spec.model_copy(update={"args": {**llm.spec.args, "max_tokens": 8}}), llm.prompt)
    items = [worker.source.item(worker.source.ref(s, s)) for s in range(3)]
    results = short.write_batch(items, [0, 1, 2])
    assert short._engine is llm._engine, "same engine arguments: the engine is shared, not started again"
    assert [r.reason for r in results] == ["llm_truncated"] * 3
    assert all("Expecting" in r.detail or "Unterminated" in r.detail for r in results)


# ----------------------------------------------------------------------------------------- end to end


def test_remove_on_tiny_end_to_end(tiny_dir, tmp_path):
    config = tiny_run("remove", tmp_path / "a")
    summary = execute(config, "generate", workers=0, progress=False)
    assert not summary.failed and not summary.written.failed
    written = texts(tmp_path / "a", "remove")
    assert len(written) == 8 and all(t["status"] == "ok" for t in written), "100% schema-valid instructions"
    assert {t["writer"] for t in written} == {"tiny:llm"}
    assert verify(tmp_path / "a").problems == []
    kept = samples(tmp_path / "a")
    assert len(kept) == 8, "tiny keeps every sample (enforce_filters: false) so the whole path runs"
    for sample in kept:
        meta = json.loads(sample["json"])
        models = json.loads(meta["models"])
        assert models["llm"] == "tiny:llm" and models["inpaint"] == "tiny:inpaint"
        for score in ("clip_dir", "clip_img", "clip_out", "dino", "detect_input", "detect_output", "mask_area"):
            assert score in meta["scores"] and -1 <= meta["scores"][score] <= 1, score
        before, after, mask = (decode_member(sample[k]) for k in ("input.png", "output.png", "mask.png"))
        assert before.shape == after.shape == (64, 64, 3)
        assert (before[mask == 0] == after[mask == 0]).all(), "the diffusion fill is composited inside the mask"
        assert (before[mask == 255] != after[mask == 255]).any(), "the inpainting model changed the masked pixels"
    execute(tiny_run("remove", tmp_path / "b"), "generate", workers=0, progress=False)
    for name in ("texts/remove-000001.jsonl", "shards/remove-000000.tar", "shards/remove-000001.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_add_is_a_removal_swapped(tiny_dir, tmp_path):
    config = tiny_run("add", tmp_path, n=4)
    summary = execute(config, "generate", workers=0, progress=False)
    assert not summary.failed and summary.kept == 4
    written = texts(tmp_path, "add")
    assert all(t["status"] == "ok" and t["input_caption"] and t["output_caption"] for t in written)
    worker = ShardWorker(config)
    for text, sample in zip(written, samples(tmp_path), strict=True):
        meta = json.loads(sample["json"])
        assert json.loads(meta["params"])["direction"] == "add"
        original = worker.source.load(text["source"], config.run.max_image_pixels).image
        source_caption = worker.source.item(text["source"]).caption
        assert text["output_caption"] == source_caption, "the source image, with its caption, is the output"
        before, after, mask = (decode_member(sample[k]) for k in ("input.png", "output.png", "mask.png"))
        assert (after == original).all(), "the output is the untouched source image"
        assert (before[mask == 0] == original[mask == 0]).all() and (before[mask == 255] != after[mask == 255]).any()


def test_captions_written_from_topics_and_drawn_by_text_to_image(tiny_dir, tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("kitchens\nbeaches\n")
    config = tiny_run("remove", tmp_path / "out", n=4, source="topics", input=str(topics))
    summary = execute(config, "generate", workers=0, progress=False)
    assert not summary.failed and summary.kept == 4
    written = texts(tmp_path / "out", "remove")
    assert all(t["status"] == "ok" and len(t["input_caption"]) >= 10 for t in written), "the LLM wrote captions"
    assert [t["source"]["topic"] for t in written] == [0, 1, 0, 1]
    inputs = [decode_member(s["input.png"]) for s in samples(tmp_path / "out")]
    assert all(i.shape == (64, 64, 3) and i.std() > 0 for i in inputs), "text-to-image drew the inputs"
    assert not (inputs[0] == inputs[1]).all()


def test_caption_file_source_on_tiny(tiny_dir, tmp_path):
    captions = tmp_path / "captions.jsonl"
    rows = [{"caption": "a red mug next to a laptop on a desk", "objects": ["red mug"]}, {"caption": "a dog"}]
    captions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tiny_run("remove", tmp_path / "out", n=2, source="captions", input=str(captions))
    execute(config, "generate", workers=0, progress=False)
    written = texts(tmp_path / "out", "remove")
    assert [t["input_caption"] for t in written] == [r["caption"] for r in rows]
    assert len(samples(tmp_path / "out")) == 2
