"""The reward role: a trained reward model's score of each (input, instruction, output), stored as `reward`.

Backend `editreward`: EditReward (TIGER-AI-Lab, MIT; trained Bradley-Terry on 200k+ expert preference pairs), its
Qwen2.5-VL-7B variant as the authors publish it (EditReward/model/qwen2_5_vl_trainer.py, config
EditReward-Qwen2.5-7B-VL.yaml): Qwen2.5-VL with two reward heads (`rm_heads.head_0`, `rm_heads.head_1`, each
Linear(hidden, 1024), ReLU, Dropout, Linear(1024, 16), ReLU, Linear(16, 2), in float32) over the decoder's last hidden
states, pooled at the one `<|Reward|>` token the prompt ends with. head_0 reads the pair under the instruction-
following rubric, head_1 under the visual-quality one (prompts/reward/editreward.yaml); the two heads' outputs are
averaged (`pooling_strategy: mean`) and the first of the two numbers (the mean of the uncertainty loss's
(mean, log sigma)) is the reward. As in the authors' code the images go in source first, each resized to exactly
`pixels` pixels (their min_pixels = max_pixels = 256 * 28 * 28), and the decoder runs on the merged embeddings with
its default (sequential) positions.

Weights: a folder holding Qwen2.5-VL-7B-Instruct's config, tokenizer and processor files and its safetensors, plus
`args.checkpoint`, the EditReward checkpoint's `model.safetensors` (the whole model, heads included), loaded over it
strictly. The tiny twin (`tiny:reward`) is one folder with the heads inside. safetensors only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datagen.models.options import RewardOptions
from datagen.models.reward_model import REWARD_TOKEN, RUBRICS, model_class
from datagen.models.weights import VisionRole


@functools.cache
def rubrics() -> dict[str, str]:
    import yaml

    from datagen.config import config_root

    return yaml.safe_load((config_root() / "prompts" / "reward" / "editreward.yaml").read_text(encoding="utf-8"))


def smart_resize(height: int, width: int, factor: int, pixels: int) -> tuple[int, int]:
    """(height, width), each a multiple of `factor`, of about `pixels` pixels and the image's aspect: Qwen2-VL's
    rule with min_pixels = max_pixels = `pixels` (every image the same number of tokens)."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > pixels:
        scale = np.sqrt(height * width / pixels)
        h, w = max(factor, int(height / scale // factor) * factor), max(factor, int(width / scale // factor) * factor)
    elif h * w < pixels:
        scale = np.sqrt(pixels / (height * width))
        h, w = int(np.ceil(height * scale / factor)) * factor, int(np.ceil(width * scale / factor)) * factor
    return h, w


CHECKPOINT_FILE = "model.safetensors"
"""The file the authors' inference code loads from a checkpoint folder (their `.pth` alternative is not read)."""


def checkpoint_file(checkpoint: str) -> Path:
    """The EditReward checkpoint's safetensors file: CHECKPOINT_FILE in the folder `checkpoint` names (a model id in
    the local cache, or a folder); ModelMissing (with the fetch command) where it is not here."""
    from datagen.models.weights import ModelMissing, fetch_command, locate

    file = locate(checkpoint) / CHECKPOINT_FILE
    if not file.is_file():
        raise ModelMissing(f"{file} is missing; {fetch_command(checkpoint, None)}")
    return file


class EditReward(VisionRole):
    """`reward_batch(items)`: each (input, output, instruction)'s reward, batch_size items a model call."""

    options_class = RewardOptions

    def load(self) -> None:
        import safetensors.torch
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        from datagen.models.weights import locate, torch_device_dtype

        if self.model is not None:
            return
        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="right")
        if REWARD_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
        model = model_class().from_pretrained(path, use_safetensors=True, dtype=self.dtype)
        if model.get_input_embeddings().weight.shape[0] != len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))  # as the authors do after adding the token
        if self.options.checkpoint:
            state = safetensors.torch.load_file(str(checkpoint_file(self.options.checkpoint)), device="cpu")
            model.load_state_dict(state, strict=True)
        self.model = model.to(self.device).eval()
        self.model.rm_heads.float()  # float32 whatever the backbone's dtype, as the authors keep the heads
        self.tokenizer = tokenizer
        self.token_id = tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        self.images = Qwen2VLImageProcessorPil.from_pretrained(path)
        self.factor = self.images.patch_size * self.images.merge_size

    def _batch(self, items: Sequence[tuple[np.ndarray, np.ndarray, str]], rubric: str) -> dict[str, Any]:
        """One head's model inputs: the chat (two images, then the rubric with the instruction, then the suffix),
        each image's placeholder expanded to its tokens, padded on the right."""
        from PIL import Image

        prompts, pictures = [], []
        text = rubrics()
        for source, edited, instruction in items:
            for image in (source, edited):
                h, w = smart_resize(*image.shape[:2], self.factor, self.options.pixels)
                pictures.append(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BICUBIC))
            message = [
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "image"},
                        {"type": "text", "text": text[rubric].format(text_prompt=instruction) + text["suffix"]},
                    ],
                }
            ]
            prompts.append(self.tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True))
        vision = self.images(images=pictures, return_tensors="pt", do_resize=False)
        counts = (vision["image_grid_thw"].prod(-1) // self.images.merge_size**2).tolist()
        placeholder, expanded, k = "<|image_pad|>", [], 0
        for prompt in prompts:
            pieces = prompt.split(placeholder)
            out = pieces[0]
            for piece in pieces[1:]:
                out += placeholder * counts[k] + piece
                k += 1
            expanded.append(out)
        tokens = self.tokenizer(expanded, return_tensors="pt", padding=True)
        batch = {"input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask, **vision}
        return {
            name: value.to(self.device, self.dtype) if name == "pixel_values" else value.to(self.device)
            for name, value in batch.items()
        }

    def reward_batch(self, items: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> list[float]:
        """The reward of each (input, output, instruction): the heads' mean, its first output."""
        import torch

        self.load()
        out: list[float] = []
        size = self.spec.batch_size
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            self.counted(len(chunk))
            with torch.inference_mode():
                heads = [
                    self.model.head_scores(self._batch(chunk, rubric), f"head_{n}", self.token_id)
                    for n, rubric in enumerate(RUBRICS)
                ]
            out.extend(torch.stack(heads).mean(dim=0)[:, 0].float().cpu().tolist())
        return [round(float(v), 6) for v in out]
