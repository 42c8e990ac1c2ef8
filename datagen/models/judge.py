"""The judge: a vision-language model on vLLM that looks at every candidate pair and scores it.

One request per candidate: the task group's rubric (prompts/judge/GROUP.yaml) as the system turn, then the input
image, the output image and the instruction as one user turn, rendered by the model's own chat template (image
parts as `{"type": "image"}`), so the adapter drives any VLM whose template takes them: Qwen2.5-VL and the judges
trained from it (ImgEdit-Judge, EditScore) on GPUs, a tiny Idefics3 on CPU. The answer is constrained to a JSON
schema: `reasoning` first (the model says what it saw before it scores), then `following`, `preservation`,
`quality` and `overall`, integers 0-10 (VIEScore's scale), and with `rewrite` an `instruction_rewritten` saying
what the edit actually did. An answer that is cut off or does not parse is that candidate's rejection, with its
reason; it never stops the shard.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import jsonschema
import numpy as np

from datagen.config import JudgePrompt, RoleSpec, judge_prompt
from datagen.errors import ConfigError, Reject
from datagen.models import weights
from datagen.models.batching import Counted
from datagen.models.options import JudgeOptions
from datagen.models.vllm_engine import check_engine_args, engine, engine_kwargs, shrink

SCORES = ("following", "preservation", "quality", "overall")
"""The judge's scores, 0-10 each; stored as score_judge_NAME."""
REASONING = r"^[^\u0000-\u001f]{1,120}[^\u0000-\u001f]{0,120}$"
"""One line of 1-240 characters, no control characters: safe to show anywhere. The bound lives in the pattern (vLLM
refuses a pattern combined with min/maxLength), as two repeats: xgrammar fails to compile one much above 120."""
INSTRUCTION = r"^[^\u0000-\u001f]{3,120}$"


class JudgeReject(Reject):
    """The judge gave no usable verdict for this candidate: judge_truncated, judge_not_json, judge_schema_invalid,
    judge_failed (the engine refused the request, e.g. a prompt longer than max_model_len)."""


@dataclass(frozen=True)
class Verdict:
    following: int
    preservation: int
    quality: int
    overall: int
    reasoning: str
    instruction_rewritten: str = ""

    def scores(self) -> dict[str, float]:
        """As the record stores them: judge_following, judge_preservation, judge_quality, judge_overall."""
        return {f"judge_{name}": float(getattr(self, name)) for name in SCORES}

    @property
    def semantics(self) -> float:
        """VIEScore's SC: the minimum of its sub-scores (the edit was made; nothing else was)."""
        return float(min(self.following, self.preservation))

    @property
    def vie_overall(self) -> float:
        """VIEScore's O = sqrt(SC x PQ), PQ being `quality`."""
        return math.sqrt(self.semantics * self.quality)


def answer_schema(rewrite: bool) -> dict:
    score = {"type": "integer", "minimum": 0, "maximum": 10}
    properties = {"reasoning": {"type": "string", "pattern": REASONING}}
    properties.update({name: score for name in SCORES})
    if rewrite:
        properties["instruction_rewritten"] = {"type": "string", "pattern": INSTRUCTION}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def parse_verdict(text: str, finish_reason: str | None, validator: jsonschema.Validator) -> Verdict | JudgeReject:
    """An answer checked against the schema, or the JudgeReject saying what is wrong with it."""
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as e:
        reason = "judge_truncated" if finish_reason == "length" else "judge_not_json"
        return JudgeReject(reason, f"{e.msg} at {e.pos}: {text[:200]!r}")
    except RecursionError:
        return JudgeReject("judge_not_json", f"nested too deeply: {text[:200]!r}")
    error = jsonschema.exceptions.best_match(validator.iter_errors(answer))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        return JudgeReject("judge_schema_invalid", f"{path}: {error.message[:200]}")
    return Verdict(
        **{name: answer[name] for name in (*SCORES, "reasoning")},
        instruction_rewritten=answer.get("instruction_rewritten", ""),
    )


def request_text(instruction: str, rewrite: bool) -> str:
    text = f"The first image is the input, the second the output. Instruction: {instruction}"
    if rewrite:
        text += "\nAlso write instruction_rewritten: the instruction that says exactly what the edit did."
    return text


class VLLMJudge(Counted):
    """roles.judge with backend vllm: `judge_batch` scores (input, output, instruction, group) items."""

    def __init__(self, spec: RoleSpec, options: JudgeOptions, **_):
        check_engine_args(options.engine_args, "judge")
        if options.max_tokens >= options.max_model_len:
            raise ConfigError(
                f"field `roles.judge.args.max_tokens`: {options.max_tokens}; allowed: less than max_model_len"
            )
        if spec.device not in ("cpu", "cuda"):
            raise ConfigError(f"field `roles.judge.device`: {spec.device!r}; allowed: cpu, cuda")
        self.spec, self.options = spec, options
        self.model_id = weights.model_id(str(spec.model), spec.revision)
        self.schema = answer_schema(options.rewrite)
        self.validator = jsonschema.Draft202012Validator(self.schema)
        self.prompts: dict[str, JudgePrompt] = {}
        self._engine = None
        self._tokenizer = None

    def load(self) -> None:
        if self._engine is not None:
            return
        path = str(weights.locate(str(self.spec.model), self.spec.revision))
        o = self.options
        kwargs = engine_kwargs(
            self.spec,
            path,
            tensor_parallel_size=o.tensor_parallel_size,
            max_model_len=o.max_model_len,
            gpu_memory_utilization=o.gpu_memory_utilization,
            enforce_eager=o.enforce_eager,
            kv_cache_memory_bytes=o.kv_cache_memory_bytes,
            engine_args=o.engine_args,
            images_per_prompt=2,
        )
        self._engine = engine(self.spec.device, kwargs)
        self._tokenizer = self._engine.get_tokenizer()

    def prompt(self, group: str) -> JudgePrompt:
        if group not in self.prompts:
            self.prompts[group] = judge_prompt(group)
        return self.prompts[group]

    def request(self, before: np.ndarray, after: np.ndarray, instruction: str, group: str, seed: int):
        """One candidate's request and sampling parameters."""
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams

        rubric = self.prompt(group)
        messages = [
            {"role": "system", "content": f"{rubric.system.strip()}\n\n{rubric.rubric.strip()}"},
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "image"},
                    {"type": "text", "text": request_text(instruction, self.options.rewrite)},
                ],
            },
        ]
        text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = [shrink(image, self.options.image_edge) for image in (before, after)]
        params = SamplingParams(
            temperature=self.options.temperature,
            max_tokens=self.options.max_tokens,
            seed=seed,
            structured_outputs=StructuredOutputsParams(json=self.schema),
        )
        return {"prompt": text, "multi_modal_data": {"image": images}}, params

    def judge_batch(self, items: Sequence[tuple[np.ndarray, np.ndarray, str, str, int]]) -> list[Verdict | Reject]:
        """(input, output, instruction, task group, seed) -> a verdict, or the reason there is none; one vLLM call."""
        self.load()
        if not items:
            return []
        self.counted(len(items))
        requests = [self.request(*item) for item in items]
        try:
            completions = self._engine.generate([r for r, _ in requests], [p for _, p in requests], use_tqdm=False)
        except ValueError:  # one request the engine refuses (too long): judge one by one, refusing only it
            return [self._one(request, params) for request, params in requests]
        return [self._parse(completion) for completion in completions]

    def caption_batch(self, images: Sequence[np.ndarray], seeds: Sequence[int], prompt) -> list[str | Reject]:
        """A caption of each photo, written by this vision-language model under `prompt` (a PromptSpec whose schema
        holds `caption`: prompts/caption_image.yaml), for photos that came without one; one vLLM call."""
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams

        self.load()
        if not images:
            return []
        self.counted(len(images))
        system = f"{prompt.system.strip()}\n\n{prompt.task_description.strip()}"
        validator = jsonschema.Draft202012Validator(prompt.output_schema)
        requests = []
        for image, seed in zip(images, seeds, strict=True):
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"{prompt.input_label}:"}]},
            ]
            text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            params = SamplingParams(
                temperature=self.options.temperature,
                max_tokens=self.options.max_tokens,
                seed=seed,
                structured_outputs=StructuredOutputsParams(json=prompt.output_schema),
            )
            image = shrink(image, self.options.image_edge)
            requests.append(({"prompt": text, "multi_modal_data": {"image": [image]}}, params))
        completions = self._engine.generate([r for r, _ in requests], [p for _, p in requests], use_tqdm=False)
        out: list[str | Reject] = []
        for completion in completions:
            choice = completion.outputs[0]
            text = self._tokenizer.decode(choice.token_ids, skip_special_tokens=True)
            try:
                answer = json.loads(text)
                validator.validate(answer)
                out.append(answer["caption"].strip())
            except (ValueError, jsonschema.ValidationError) as e:
                out.append(JudgeReject("caption_invalid", f"{choice.finish_reason}: {str(e)[:200]}"))
        return out

    def _one(self, request, params) -> Verdict | Reject:
        try:
            return self._parse(self._engine.generate([request], [params], use_tqdm=False)[0])
        except ValueError as e:
            return JudgeReject("judge_failed", str(e)[:300])

    def _parse(self, completion) -> Verdict | Reject:
        choice = completion.outputs[0]
        # decoded whole: vLLM's incremental text can split a multi-byte character
        text = self._tokenizer.decode(choice.token_ids, skip_special_tokens=True)
        return parse_verdict(text, choice.finish_reason, self.validator)
