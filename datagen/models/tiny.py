"""Tiny randomly initialised models for every role, built from config under a fixed seed, saved, loaded back.

The `tiny` pipeline names these as `tiny:ROLE`; `resolve("tiny:clip")` builds the model on first use into the
cache directory (DATAGEN_TINY_DIR, default ~/.cache/datagen/tiny) and returns the folder, which the adapters load
through the same `from_pretrained` path as real weights. Output is noise; the code path is the real one. Nothing
here touches the network: tokenizers are built from a local word list.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from datagen.models.architectures import TINY
from datagen.models.tokenizers import (
    VLM_CHAT_TEMPLATE,
    bert_tokenizer,
    clip_tokenizer,
    llama_tokenizer,
    t5_tokenizer,
    vlm_tokenizer,
)

VERSION = "v6"  # bump when a builder changes, so stale caches are rebuilt


def cache_root() -> Path:
    return Path(os.environ.get("DATAGEN_TINY_DIR", Path.home() / ".cache" / "datagen" / "tiny")) / VERSION


def resolve(model: str) -> Path:
    """'tiny:ROLE' -> a local folder holding that tiny model (built on first use, atomically)."""
    kind = model.split(":", 1)[1]
    if kind not in BUILDERS:
        raise ValueError(f"unknown tiny model {model!r}; known: {', '.join('tiny:' + k for k in BUILDERS)}")
    final = cache_root() / kind
    if (final / "config.json").exists() or (final / "model_index.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{kind}.lock", "w") as lock:  # processes starting together build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "config.json").exists() or (final / "model_index.json").exists():
            return final
        build_dir = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=final.parent))
        try:
            import torch

            with torch.random.fork_rng():  # the builders seed the global RNG: leave the caller's stream alone
                BUILDERS[kind](build_dir)
            os.replace(build_dir, final)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
    return final


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def _made(cls, *args, device: str = "cpu", **kwargs):
    """cls(*args, **kwargs) with its random weights made on `device` (a billion of them take seconds on a GPU and
    minutes on a CPU), returned on the CPU to be saved."""
    import torch

    with torch.device(device):
        return cls(*args, **kwargs).cpu()


# ------------------------------------------------------------------------------------------- builders
# The builders of the families in datagen/models/architectures.py take its sizes: TINY for `tiny:ROLE`, FULL for
# the real-size stand-ins (datagen/bench_gpu.py); `device` is where the random weights are made.


def clip_text_config(vocab_size: int, sizes: dict = TINY) -> dict:
    """The CLIP text tower: CLIP's own and Stable Diffusion's text encoder share it."""
    return {"vocab_size": vocab_size, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, **sizes["clip_text"]}


def build_clip(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    _seed()
    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config=clip_text_config(len(tokenizer), sizes),
        vision_config=dict(sizes["clip_vision"]),
        projection_dim=sizes["clip_projection"],
    )
    _made(CLIPModel, config, device=device).save_pretrained(path, safe_serialization=True)
    side = sizes["clip_pixels"]
    images = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)


def build_aesthetic(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    """LAION's aesthetic MLP in the shape of its layers (Linear layers, nothing between) over tiny CLIP's embedding:
    small random weights and a bias of 6, so that the scores sit around 6, above the real gate of 4.75."""
    import torch
    from safetensors.torch import save_file

    _seed()
    widths = [sizes["clip_projection"], 16, 8, 1]
    layers = {}
    for n, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        layers[f"layers.{2 * n}.weight"] = torch.randn(b, a) * 0.3
        layers[f"layers.{2 * n}.bias"] = torch.full((b,), 6.0 if b == 1 else 0.0)
    path.mkdir(parents=True, exist_ok=True)
    save_file(layers, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"architecture": "laion-aesthetic-mlp", "widths": widths}) + "\n")


def build_dino(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    _seed()
    config = Dinov2Config(**sizes["dino"])
    _made(Dinov2Model, config, device=device).save_pretrained(path, safe_serialization=True)
    side = sizes["dino_pixels"]
    BitImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(path)


def build_grounding(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    _grounding(path, GroundingDinoConfig, GroundingDinoForObjectDetection, sizes, device)


def build_grounding_mm(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    """MM-Grounding-DINO at Grounding DINO's sizes (its tiny is a Swin-T with BERT-base too), the same processor."""
    from transformers import MMGroundingDinoConfig, MMGroundingDinoForObjectDetection

    _grounding(path, MMGroundingDinoConfig, MMGroundingDinoForObjectDetection, sizes, device)


def _grounding(path: Path, config_class, model_class, sizes: dict, device: str) -> None:
    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

    _seed()
    tokenizer = bert_tokenizer()
    arch = copy.deepcopy(sizes["grounding"])
    arch["text_config"] = {"vocab_size": len(tokenizer), **arch["text_config"]}
    _made(model_class, config_class(**arch), device=device).save_pretrained(path, safe_serialization=True)
    shortest, longest = sizes["grounding_pixels"]
    images = GroundingDinoImageProcessor(size={"shortest_edge": shortest, "longest_edge": longest})
    GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)


def build_segmenter(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    _seed()
    config = SamConfig(**copy.deepcopy(sizes["sam"]))
    _made(SamModel, config, device=device).save_pretrained(path, safe_serialization=True)
    side = sizes["sam_pixels"]
    images = SamImageProcessor(size={"longest_edge": side}, pad_size={"height": side, "width": side})
    SamProcessor(image_processor=images).save_pretrained(path)


def build_segmenter_sam2(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    """SAM 2.1, with the processor files Sam2Processor writes (its image processor needs torchvision: written here,
    read by datagen/models/sam.py's Sam2Pixels, and by transformers where torchvision exists)."""
    from transformers import Sam2Config, Sam2Model

    _seed()
    config = Sam2Config(**copy.deepcopy(sizes["sam2"]))
    _made(Sam2Model, config, device=device).save_pretrained(path, safe_serialization=True)
    side = sizes["sam2_pixels"]
    images = {
        "image_processor_type": "Sam2ImageProcessor",
        "size": {"height": side, "width": side},
        "mask_size": {"height": side // 4, "width": side // 4},
        "resample": 2,
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "do_convert_rgb": True,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(images, indent=2))
    processor = {"processor_class": "Sam2Processor", "target_size": side, "point_pad_value": -10}
    (path / "processor_config.json").write_text(json.dumps(processor, indent=2))


def _sd_parts(in_channels: int, sizes: dict = TINY, device: str = "cpu"):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    _seed()
    tokenizer = clip_tokenizer()
    unet = _made(UNet2DConditionModel, in_channels=in_channels, **sizes["unet"], device=device)
    vae = _made(AutoencoderKL, **sizes["vae"], device=device)
    text_encoder = _made(CLIPTextModel, CLIPTextConfig(**clip_text_config(len(tokenizer), sizes)), device=device)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def build_t2i(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **_sd_parts(4, sizes, device), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_t2i_xl(path: Path) -> None:
    """A tiny SDXL text-to-image pipeline (two text encoders, text-time conditioning), for the SDXL code paths."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    parts = _sd_parts(4)
    _seed()
    tokenizer = parts["tokenizer"]
    text = clip_text_config(len(tokenizer))
    parts["unet"] = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids, and the pooled text of encoder 2
        cross_attention_dim=2 * text["hidden_size"],  # both encoders' hidden states, concatenated
        norm_num_groups=32,
    )
    parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**text))
    pipe = StableDiffusionXLPipeline(
        **parts,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text, projection_dim=32)),
        tokenizer_2=tokenizer,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_inpaint(path: Path, sizes: dict = TINY, device: str = "cpu") -> None:
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        **_sd_parts(9, sizes, device), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(path, safe_serialization=True)


def _flux_parts(in_channels: int) -> dict:
    """A tiny FLUX.1: the transformer (one double-stream and one single-stream block), CLIP and T5 text encoders,
    and a VAE of four blocks (8x downsampling like the real one, so sides must be multiples of 16)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    _seed()
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=8,  # 2 latent channels, packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,  # FLUX.1 dev, Fill and Kontext are guidance-distilled
        axes_dims_rope=[4, 4, 8],
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=2,
        norm_num_groups=1,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip_text_config(len(tokenizer))))
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_ff=37,
            d_kv=8,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return dict(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        scheduler=scheduler,
    )


def build_flux_fill(path: Path) -> None:
    """FLUX.1 Fill: the transformer reads the noisy latents, the masked image's latents and the mask, packed (2x2
    patches): 8 + 8 + 4 * 8 * 8 channels."""
    from diffusers import FluxFillPipeline

    FluxFillPipeline(**_flux_parts(8 + 8 + 256)).save_pretrained(path, safe_serialization=True)


def build_flux_kontext(path: Path) -> None:
    """FLUX.1 Kontext: the input image's latents ride along as extra tokens, so the transformer reads only the packed
    latents (8 channels)."""
    from diffusers import FluxKontextPipeline

    FluxKontextPipeline(**_flux_parts(8)).save_pretrained(path, safe_serialization=True)


def build_llm(path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    _seed()
    tokenizer = llama_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,  # head dimension 64: one vLLM's CPU attention supports
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def build_vlm(path: Path) -> None:
    """A vision-language model vLLM's CPU build can serve: Idefics3 (Qwen2-VL's processing needs torchvision, which
    the CPU torch build cannot have). Two images per request, 4 tokens each, at 56 px."""
    from transformers import (
        GenerationConfig,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    _seed()
    tokenizer = vlm_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in ("<image>", "<|end_of_text|>")}
    text = {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,  # head dimension 32: one vLLM's CPU attention supports
        "max_position_embeddings": 4096,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
    }
    vision = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 56,
        "patch_size": 14,
    }
    config = Idefics3Config(
        text_config=text,
        vision_config=vision,
        scale_factor=2,
        image_token_id=ids["<image>"],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, ids["<|end_of_text|>"]],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(path, safe_serialization=True)
    images = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": 56}, max_image_size={"longest_edge": 56}
    )
    Idefics3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_len=4, chat_template=VLM_CHAT_TEMPLATE
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)


QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a "
    "helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2.5-VL's chat format (its default system prompt, each image as vision_start, image_pad, vision_end)."""
QWEN_TOKENS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def build_reward(path: Path) -> None:
    """EditReward's architecture at toy size: Qwen2.5-VL (2 decoder layers, 2 vision blocks) with its two reward
    heads at their published widths, the reward token added and the embeddings resized as the authors do; the
    image processor at 56 x 56 pixels an image (4 tokens)."""
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2VLImageProcessorPil

    from datagen.models.reward_model import REWARD_TOKEN, model_class
    from datagen.models.tokenizers import _frozen

    _seed()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_frozen("vlm"),
        eos_token="<|im_end|>",
        pad_token="<|end_of_text|>",
        unk_token="<unk>",
        additional_special_tokens=[*QWEN_TOKENS, REWARD_TOKEN],
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=4096,
    )
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in QWEN_TOKENS}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": None,
        "eos_token_id": ids["<|im_end|>"],
        "tie_word_embeddings": False,
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        tie_word_embeddings=False,
    )
    model_class()(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 56).save_pretrained(path)


def build_depth(path: Path) -> None:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    _seed()
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=56,
        patch_size=14,
        out_indices=[1, 2],  # one feature map per layer; the neck has as many stages as there are maps
        reshape_hidden_states=False,  # Depth Anything reshapes the tokens itself
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=32,
        reassemble_factors=[2, 1],
        neck_hidden_sizes=[16, 32],
        fusion_hidden_size=16,
        head_hidden_size=16,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(path, safe_serialization=True)
    # as Depth Anything V2 preprocesses: aspect kept, sides a multiple of the patch size
    DPTImageProcessorPil(
        size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=3
    ).save_pretrained(path)


def build_semseg(path: Path) -> None:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    # from its module: the top-level name needs torchvision in transformers 5 (see datagen.models.dense.SegFormer)
    from transformers.models.segformer.image_processing_pil_segformer import SegformerImageProcessorPil

    _seed()
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[16, 32],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=32,
        num_labels=8,
    )
    SegformerForSemanticSegmentation(config).save_pretrained(path, safe_serialization=True)
    SegformerImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(path)


def build_pose(path: Path) -> None:
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessorPil

    _seed()
    backbone = VitPoseBackboneConfig(
        image_size=[64, 48],
        patch_size=[8, 8],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        out_indices=[2],
    )
    # 17 keypoints, as COCO's skeleton; heatmaps at 4x the patch grid, as ViTPose's simple decoder
    config = VitPoseConfig(backbone_config=backbone, num_labels=17, scale_factor=4, use_simple_decoder=True)
    VitPoseForPoseEstimation(config).save_pretrained(path, safe_serialization=True)
    VitPoseImageProcessorPil(size={"height": 64, "width": 48}).save_pretrained(path)


BUILDERS = {
    "llm": build_llm,
    "vlm": build_vlm,
    "reward": build_reward,
    "clip": build_clip,
    "aesthetic": build_aesthetic,
    "dino": build_dino,
    "grounding": build_grounding,
    "grounding_mm": build_grounding_mm,
    "segmenter": build_segmenter,
    "segmenter_sam2": build_segmenter_sam2,
    "t2i": build_t2i,
    "t2i_xl": build_t2i_xl,
    "inpaint": build_inpaint,
    "flux_fill": build_flux_fill,
    "flux_kontext": build_flux_kontext,
    "depth": build_depth,
    "semseg": build_semseg,
    "pose": build_pose,
}
