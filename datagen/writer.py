"""Instruction writers: source item -> {instruction, output_caption, objects} in the prompt's JSON schema.

The template writer (datagen/template_writer.py, pipeline `local`) fills the prompt file's templates; it returns
exactly what the LLM writer returns, validated against the same schema, so everything downstream is
writer-agnostic.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import numpy as np

from datagen.config import PromptSpec, RoleSpec
from datagen.errors import ConfigError, Reject
from datagen.models import weights
from datagen.models.options import WriterOptions
from datagen.models.vllm_engine import check_engine_args, engine, engine_kwargs, shrink
from datagen.sources import SourceItem


class WriterReject(Reject):
    """The writer could not produce a valid record for this item; `reason` is counted in the stats."""


class OutputValidator:
    """Checks a writer output against the prompt's schema; the same check for template and LLM writers."""

    def __init__(self, prompt: PromptSpec):
        self._validator = jsonschema.Draft202012Validator(prompt.output_schema)

    def __call__(self, output: Any) -> dict[str, Any]:
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(output))
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            raise WriterReject("schema_invalid", f"{path}: {error.message[:200]}")
        return output


# ------------------------------------------------------------------------------------------ LLM writer


def swap_verbs(instruction: str, verbs: list[str], rng: np.random.Generator) -> str:
    """Replace the first of `verbs` found in the instruction by a random one, keeping its capitalisation."""
    for verb in sorted(verbs, key=len, reverse=True):
        match = re.search(rf"\b{re.escape(verb)}\b", instruction, re.IGNORECASE)
        if match:
            new = str(rng.choice(verbs))
            new = new[:1].upper() + new[1:] if match.group()[:1].isupper() else new[:1].lower() + new[1:]
            return instruction[: match.start()] + new + instruction[match.end() :]
    return instruction


def build_messages(prompt: PromptSpec, text: str, rng: np.random.Generator) -> list[dict[str, str]]:
    """Chat messages of one request: system + task description, a random share of the examples shuffled (verbs
    swapped) as user/assistant turns, then the caption (or topic) to write for."""
    messages = [{"role": "system", "content": f"{prompt.system.strip()}\n\n{prompt.task_description.strip()}"}]
    count = max(1, round(prompt.example_fraction * len(prompt.examples))) if prompt.examples else 0
    for n in rng.permutation(len(prompt.examples))[:count]:
        example = prompt.examples[int(n)]
        output = dict(example.output)
        if prompt.verbs and isinstance(output.get("instruction"), str):
            output["instruction"] = swap_verbs(output["instruction"], prompt.verbs, rng)
        messages.append({"role": "user", "content": f"{prompt.input_label}: {example.caption}"})
        messages.append({"role": "assistant", "content": json.dumps(output, ensure_ascii=False)})
    messages.append({"role": "user", "content": f"{prompt.input_label}: {text}"})
    return messages


def parse_completion(text: str, finish_reason: str | None, validate: OutputValidator) -> dict[str, Any] | WriterReject:
    """A completion's JSON checked against the prompt's schema, or the WriterReject saying what is wrong with it:
    llm_truncated (cut at max_tokens), llm_not_json, schema_invalid (a field missing, of the wrong type, ...)."""
    try:
        return validate(json.loads(text))
    except json.JSONDecodeError as e:
        reason = "llm_truncated" if finish_reason == "length" else "llm_not_json"
        return WriterReject(reason, f"{e.msg} at {e.pos}: {text[:200]!r}")
    except RecursionError:
        return WriterReject("llm_not_json", f"nested too deeply: {text[:200]!r}")
    except WriterReject as e:
        return e


def with_lines(caption: str, lines: list[dict[str, Any]] | None) -> str:
    """The writer's message: the caption, and the lines the OCR read in the input when it read some."""
    if not lines:
        return caption
    return f"{caption}\nText read in the image: " + ", ".join(json.dumps(line["text"]) for line in lines)


def later_turn(schema: dict[str, Any], item: SourceItem) -> dict[str, Any]:
    """The schema of a later turn of a multi-turn session (item.history set): its pair starts from the image it is
    given, so a translation's `direction` is held to image -> map."""
    if item.history is None or "direction" not in schema.get("properties", {}):
        return schema
    return {**schema, "properties": {**schema["properties"], "direction": {"type": "string", "enum": ["to_map"]}}}


def quoting_lines(schema: dict[str, Any], lines: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The schema with `text_before` held to the lines the OCR read (or empty, a text added), so that even a
    random model quotes text that is really there; the schema itself where nothing was read."""
    if not lines or "text_before" not in schema.get("properties", {}):
        return schema
    quoted = list(dict.fromkeys(["", *(line["text"] for line in lines)]))
    return {**schema, "properties": {**schema["properties"], "text_before": {"type": "string", "enum": quoted}}}


def llama2_chat(messages: list[dict[str, str]], bos: str = "<s>", eos: str = "</s>") -> str:
    """The Llama 2 chat format ([INST], <<SYS>>), for tokenizers that carry no chat template."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    turns = messages[1:] if system else messages
    out = []
    for n, message in enumerate(turns):
        if message["role"] == "user":
            head = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if n == 0 and system else ""
            out.append(f"{bos}[INST] {head}{message['content'].strip()} [/INST]")
        else:
            out.append(f" {message['content'].strip()} {eos}")
    return "".join(out)


IMAGE_TOPIC = "the photo shown above"
"""What the caption agent is given beside a photo it captions (prompts/caption_image.yaml: input_label Photo)."""


class VLLMWriter:
    """Llama 2 (or any chat model) on vLLM: one agent per task, JSON constrained by the prompt's schema. Its
    arguments (`roles.llm.args`) are declared in datagen/models/options.py (WriterOptions)."""

    def __init__(
        self,
        spec: RoleSpec,
        prompt: PromptSpec,
        caption_prompt: PromptSpec | None = None,
        options: WriterOptions | None = None,
        **_,
    ):
        options = options or WriterOptions.parse(spec.args, "llm")
        check_engine_args(options.engine_args, "llm")
        if options.max_tokens >= options.max_model_len:
            raise ConfigError(
                f"field `roles.llm.args.max_tokens`: {options.max_tokens} leaves no room for the prompt in "
                f"max_model_len {options.max_model_len}; allowed: less than max_model_len"
            )
        if spec.device not in ("cpu", "cuda"):
            raise ConfigError(f"field `roles.llm.device`: {spec.device!r}; allowed: cpu, cuda")
        self.args = options.model_dump()
        self.sees_image = options.see_image
        self.spec = spec
        self.prompt = prompt
        self.caption_prompt = caption_prompt
        self.validate = OutputValidator(prompt)
        self.validate_caption = OutputValidator(caption_prompt) if caption_prompt else None
        self.captions_images = self.sees_image and caption_prompt is not None
        """Photos without a caption are captioned from the image (a photo source's caption prompt,
        prompts/caption_image.yaml) before the edit is written."""
        self.model_id = weights.model_id(str(spec.model), spec.revision)
        self._engine = None
        self._tokenizer = None

    def engine_kwargs(self, path: str) -> dict[str, Any]:
        names = ("tensor_parallel_size", "max_model_len", "gpu_memory_utilization", "enforce_eager")
        return engine_kwargs(
            self.spec,
            path,
            **{name: self.args[name] for name in names},
            kv_cache_memory_bytes=self.args["kv_cache_memory_bytes"],
            engine_args=self.args["engine_args"],
            images_per_prompt=1 if self.sees_image else 0,
        )

    def load(self) -> None:
        if self._engine is not None:
            return
        path = str(weights.locate(str(self.spec.model), self.spec.revision))
        self._engine = engine(self.spec.device, self.engine_kwargs(path))
        self._tokenizer = self._engine.get_tokenizer()
        if self.sees_image and not getattr(self._tokenizer, "chat_template", None):
            raise ConfigError(
                f"field `roles.llm.args.see_image`: model {self.model_id} has no chat template to place an image in; "
                f"use a vision-language model, or see_image: false"
            )

    def render(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a chat: the tokenizer's chat template where it has one, else the Llama 2 format."""
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
            return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        text = llama2_chat(messages, tokenizer.bos_token or "<s>", tokenizer.eos_token or "</s>")
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def _complete(
        self, prompt: PromptSpec, texts: list[str], seeds: list[int], validate, images=None, schemas=None
    ) -> list:
        """One batched vLLM call: parsed and validated outputs, or WriterReject with the reason. `images`: per text,
        the input image the model sees with it (see_image), or None; `schemas`: per text, the JSON schema its
        output is held to (default: the prompt's)."""
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams

        requests, params, results = [], [], []
        limit = self.args["max_model_len"] - self.args["max_tokens"]
        schemas = schemas or [prompt.output_schema] * len(texts)
        for text, seed, image, schema in zip(texts, seeds, images or [None] * len(texts), schemas, strict=True):
            rng = np.random.default_rng(seed)
            messages = build_messages(prompt, text, rng)
            if image is None:
                ids = self.render(messages)
                request = {"prompt_token_ids": ids}
            else:  # the image goes where the model's chat template puts an image part; vLLM expands it to tokens
                messages[-1]["content"] = [{"type": "image"}, {"type": "text", "text": messages[-1]["content"]}]
                chat = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                ids = self._tokenizer(chat, add_special_tokens=False)["input_ids"]  # the text's share of the prompt
                request = {"prompt": chat, "multi_modal_data": {"image": shrink(image, self.args["image_edge"])}}
            if len(ids) > limit:  # one over-long request must not fail the whole batch
                results.append(
                    WriterReject("llm_prompt_too_long", f"{len(ids)} tokens > {limit} (max_model_len - max_tokens)")
                )
                continue
            results.append(None)
            requests.append(request)
            params.append(
                SamplingParams(
                    temperature=self.args["temperature"],
                    top_p=self.args["top_p"],
                    max_tokens=self.args["max_tokens"],
                    seed=int(rng.integers(2**31 - 1)),
                    structured_outputs=StructuredOutputsParams(json=schema),
                )
            )
        completions = iter(self._generate(requests, params))
        for n, slot in enumerate(results):
            if slot is not None:
                continue
            completion = next(completions)
            if isinstance(completion, WriterReject):
                results[n] = completion
                continue
            choice = completion.outputs[0]
            # decoded whole: vLLM's incremental text can split a multi-byte character into replacement characters
            text = self._tokenizer.decode(choice.token_ids, skip_special_tokens=True)
            results[n] = parse_completion(text, choice.finish_reason, validate)
        return results

    def _generate(self, requests: list, params: list) -> list:
        """The engine's completions; if it refuses the batch (a prompt whose image makes it too long), one request
        at a time, a refused one becoming its WriterReject."""
        if not requests:
            return []
        try:
            return self._engine.generate(requests, params, use_tqdm=False)
        except ValueError:
            out = []
            for request, param in zip(requests, params, strict=True):
                try:
                    out.append(self._engine.generate([request], [param], use_tqdm=False)[0])
                except ValueError as e:
                    out.append(WriterReject("llm_prompt_too_long", str(e)[:300]))
            return out

    def write_batch(self, items: list[SourceItem], seeds: list[int]) -> list[dict[str, Any] | WriterReject]:
        """Instructions for a batch of items (a whole shard in one vLLM call); topics first get a caption."""
        self.load()
        captions: list[str | WriterReject] = [item.caption for item in items]
        topical = [n for n, item in enumerate(items) if item.topic is not None]
        if topical:
            if self.caption_prompt is None:
                raise ConfigError("source `topics` needs prompts/caption.yaml loaded (load_run does this)")
            written = self._complete(
                self.caption_prompt,
                [items[n].topic for n in topical],
                [seeds[n] ^ 0x5F3759DF for n in topical],
                self.validate_caption,
            )
            for n, result in zip(topical, written, strict=True):
                captions[n] = (
                    WriterReject(f"caption_{result.reason}", result.detail)
                    if isinstance(result, WriterReject)
                    else result["caption"].strip()
                )
        uncaptioned = [
            n
            for n, item in enumerate(items)
            if item.topic is None and not item.caption and item.image is not None and self.captions_images
        ]
        if uncaptioned:  # a photo without a caption: captioned from the image first
            written = self._complete(
                self.caption_prompt,
                [IMAGE_TOPIC] * len(uncaptioned),
                [seeds[n] ^ 0x5F3759DF for n in uncaptioned],
                self.validate_caption,
                [items[n].image for n in uncaptioned],
            )
            for n, result in zip(uncaptioned, written, strict=True):
                captions[n] = (
                    WriterReject(f"caption_{result.reason}", result.detail)
                    if isinstance(result, WriterReject)
                    else result["caption"].strip()
                )
        ready = [n for n, c in enumerate(captions) if isinstance(c, str) and c]
        seen = [items[n].image if self.sees_image else None for n in ready]
        messages = [with_lines(captions[n], items[n].text_lines) for n in ready]
        schemas = [later_turn(quoting_lines(self.prompt.output_schema, items[n].text_lines), items[n]) for n in ready]
        outputs = self._complete(self.prompt, messages, [seeds[n] for n in ready], self.validate, seen, schemas)
        results: list[dict[str, Any] | WriterReject] = [
            c if isinstance(c, WriterReject) else WriterReject("empty_caption") for c in captions
        ]
        for n, output in zip(ready, outputs, strict=True):
            if isinstance(output, dict) and (items[n].topic is not None or n in uncaptioned):
                output = {**output, "source_caption": captions[n]}
            results[n] = output
        return results
