"""The neural stack on tiny random models: real diffusers and transformers calls, weights from safetensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli

from datagen.errors import ConfigError
from datagen.filters import clip_scores, cosine
from datagen.models import backend
from datagen.models.tiny import BUILDERS, resolve
from datagen.models.weights import ModelMissing, locate
from datagen.preflight import preflight, require
from datagen.resolve import load_pipeline, load_run


def test_tiny_models_are_safetensors_folders(tiny_dir):
    for kind in BUILDERS:
        folder = resolve(f"tiny:{kind}")
        files = {p.name for p in folder.rglob("*") if p.is_file()}
        assert any(n.endswith(".safetensors") for n in files), kind
        assert not any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in files), f"{kind}: pickle weights"
        assert resolve(f"tiny:{kind}") == folder, "built once, then reused"


def test_tiny_builds_are_deterministic(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DATAGEN_TINY_DIR", str(tmp_path))
    again = resolve("tiny:clip")
    monkeypatch.setenv("DATAGEN_TINY_DIR", str(tiny_dir))
    first = resolve("tiny:clip")
    assert (again / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()


def test_clip_scores_hand_computed():
    image_in, image_out = np.array([1.0, 0.0, 0.0]), np.array([0.6, 0.8, 0.0])
    text_in, text_out = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    scores = clip_scores(image_in, image_out, text_in, text_out)
    assert scores["clip_img"] == pytest.approx(0.6)
    assert scores["clip_out"] == pytest.approx(0.8)
    # image change (-0.4, 0.8, 0), caption change (-1, 1, 0): cos = 1.2 / (sqrt(0.8) * sqrt(2))
    assert scores["clip_dir"] == pytest.approx(1.2 / (math.sqrt(0.8) * math.sqrt(2)))
    assert math.isnan(cosine(np.zeros(3), image_out))


def test_preflight_names_the_missing_model_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelMissing, match=r"'nobody/missing-model'.*fetch it with: hf download nobody/missing-model"):
        locate("nobody/missing-model")
    pipeline = load_pipeline("sdxl")
    checks = {c.role: c for c in preflight(pipeline)}
    assert not checks["inpaint"].ok and checks["inpaint"].where == (
        "hf download diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
    )
    with pytest.raises(ConfigError) as error:
        require(pipeline)
    message = str(error.value)
    weighted = [role for role, spec in pipeline.roles.items() if backend(role, spec.backend).weights]
    assert "pipeline 'sdxl' needs models that are not on this machine" in message
    assert {"llm", "depth", "semseg", "pose"} < set(weighted)
    # every model with weights (the vision models, the LLM, the reward model's base) and the reward checkpoint
    assert message.count("hf download") == len(weighted) + 1
    assert "hf download TIGER-Lab/EditReward-Qwen2.5-7B-VL" in message
    assert "hf download meta-llama/Llama-2-7b-chat-hf" in message
    with pytest.raises(ConfigError) as error:
        require(pipeline, "write")
    assert str(error.value).count("hf download") == 1, "write needs only the LLM"
    with pytest.raises(ConfigError) as error:
        require(pipeline, "render")
    assert (
        "meta-llama" not in str(error.value) and str(error.value).count("hf download") == len(weighted) - 1 + 1
    )  # the LLM out, the reward checkpoint in


def test_generate_on_a_pipeline_without_weights_stops_at_preflight(tmp_path):
    proc = run_cli(
        "generate",
        "--task",
        "remove",
        "--pipeline",
        "sdxl",
        "--n",
        "4",
        "--out",
        str(tmp_path / "o"),
        env={"HF_HUB_CACHE": str(tmp_path / "empty-cache")},
        check=False,
    )
    assert proc.returncode == 2
    assert "hf download diffusers/stable-diffusion-xl-1.0-inpainting-0.1" in proc.stderr
    assert "stable-diffusion-xl-base" not in proc.stderr, "only the models remove uses (no text-to-image here)"
    assert "depth-anything" not in proc.stderr and "vitpose" not in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists(), "nothing started"
    proc = run_cli("preflight", "--pipeline", "sd15", env={"HF_HUB_CACHE": str(tmp_path / "empty-cache")}, check=False)
    assert proc.returncode == 1 and "MISSING  segmenter  facebook/sam-vit-huge" in proc.stdout


def test_weighted_role_needs_a_model(tmp_path):
    with pytest.raises(ConfigError, match=r"roles.clip.model`: backend 'clip' loads weights"):
        load_run("remove", "tiny", out=str(tmp_path), n=1, overrides=["pipeline.roles.clip.model=null"])


def test_tiny_llm_speaks_llama2_chat(tiny_dir):
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = resolve("tiny:llm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You write edits."}, {"role": "user", "content": "a red ball"}], tokenize=False
    )
    assert prompt == "<s>[INST] <<SYS>>\nYou write edits.\n<</SYS>>\n\na red ball [/INST]"
    text = '{"instruction": "Remove the red striped ball", "objects": ["ball"]}'
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text, "byte-level: lossless"
    unseen = 'Restyle the words "OPEN DAILY" in crimson capitals, 24/7 ~ {ok}'  # frozen: new prompts still tokenise
    ids = tokenizer(unseen, add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == unseen
    model = LlamaForCausalLM.from_pretrained(path, use_safetensors=True)
    assert model.config.hidden_size // model.config.num_attention_heads == 64, "a head size vLLM's CPU attention runs"
    assert model.config.vocab_size == len(tokenizer)


def test_locate_all_finds_every_instance_without_overlaps(tiny_dir):
    from datagen import models
    from datagen.models.grounding_dino import iou
    from datagen.scenes import make_scene
    from datagen.sources import LoadedInput

    assert iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7) and iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    grounding = models.build("grounding", load_pipeline("tiny").roles["grounding"])
    grounding.load()
    found = grounding.locate_all(LoadedInput(image=make_scene(1, 128).render()), "person", limit=5)
    assert 1 <= len(found) <= 5
    assert all(iou(a.box, b.box) <= 0.5 for n, a in enumerate(found) for b in found[n + 1 :])
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def test_channels_last_inpainting_gives_the_same_pixels(tiny_dir):
    """The tuned layout the GPU pipelines ask for (`channels_last: true`) changes the memory layout, not the result."""
    import torch

    from datagen import models

    pipe = load_pipeline("tiny")
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 20:48] = 255
    outputs = []
    for channels_last in (False, True):
        spec = pipe.roles["inpaint"].model_copy(deep=True)
        spec.args["channels_last"] = channels_last
        adapter = models.build("inpaint", spec, image_size=64)
        adapter.load()
        weight = adapter.pipe.unet.conv_in.weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        outputs.append(adapter.inpaint(image, mask, "a red mug", seed=3).astype(np.int16))
    assert np.abs(outputs[0] - outputs[1]).max() <= 2
