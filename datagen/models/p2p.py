"""Prompt-to-prompt (Hertz et al.) on diffusers attention processors, with Emu Edit's grounded latent blending, and
plug-and-play editing of real images after DDIM inversion.

The source and target prompts are denoised together from the same noise. For the first `cross_fraction` of the
steps the target's cross-attention maps are the source's (word swap when both prompts tokenise to the same length;
refinement through a token alignment otherwise; new words optionally reweighted), for the first `self_fraction` its
self-attention maps too: the layout and identity of the source survive while the words change. With a mask
(grounded editing), the target's latents outside it are the source's: replaced outright for the first
`local_fraction` of the steps, then blended x_t·m + (1 − m)·y_t with a soft mask.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


def align_tokens(source: list[int], target: list[int]) -> tuple[list[int], list[float]]:
    """For each target position, the source position holding the same token (difflib's matching blocks, an
    alignment like P2P's), and 1.0 where aligned, 0.0 where the target's token is new."""
    mapper = list(range(len(target)))
    alphas = [0.0] * len(target)
    matcher = difflib.SequenceMatcher(a=source, b=target, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            mapper[block.b + k] = block.a + k
            alphas[block.b + k] = 1.0
    return mapper, alphas


@dataclass
class AttentionEdit:
    """What one paired generation does to attention; `step` is advanced by the pipeline's step callback."""

    steps: int
    cross_fraction: float
    self_fraction: float
    mapper: torch.Tensor
    """(tokens,) source position of each target token."""
    alphas: torch.Tensor
    """(tokens,) 1 where the target token has a source counterpart."""
    equalizer: torch.Tensor
    """(tokens,) weights applied to the target's cross-attention columns (1 = unchanged)."""
    step: int = 0
    mode: str = "refine"
    """swap (same token count: the target's maps are the source's) or refine (aligned tokens only)."""
    edited: dict[str, int] = field(default_factory=lambda: {"cross": 0, "self": 0})

    def __call__(self, probs: torch.Tensor, is_cross: bool, heads: int) -> torch.Tensor:
        """probs: (batch * heads, queries, keys) with batch [source, target] or, under classifier-free guidance,
        [uncond source, uncond target, source, target]; only the conditional pair is edited."""
        limit = self.cross_fraction if is_cross else self.self_fraction
        if self.step >= round(limit * self.steps):
            return probs
        batch = probs.shape[0] // heads
        maps = probs.view(batch, heads, *probs.shape[1:])
        source, target = maps[batch - 2], maps[batch - 1]
        if is_cross:
            mapped = source[..., self.mapper.to(source.device)]
            alphas = self.alphas.to(source.dtype).to(source.device)
            new = mapped * alphas + target * (1 - alphas)
            new = new * self.equalizer.to(source.dtype).to(source.device)
        else:
            new = source
        maps = maps.clone()
        maps[batch - 1] = new
        self.edited["cross" if is_cross else "self"] += 1
        return maps.view_as(probs)


class P2PAttnProcessor:
    """diffusers' reference attention computation with the probabilities handed to an AttentionEdit."""

    def __init__(self, edit: AttentionEdit):
        self.edit = edit

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, sequence_length, _ = context.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        probs = self.edit(probs, is_cross, attn.heads)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _token_ids(pipe, prompt: str, pad: bool = True) -> list[int]:
    tokenizer = pipe.tokenizer
    padding = "max_length" if pad else False
    return tokenizer(prompt, padding=padding, max_length=tokenizer.model_max_length, truncation=True).input_ids


def token_map(pipe, source: str, target: str) -> tuple[list[int], list[float], str]:
    """(mapper, alphas, mode): a word swap when both prompts tokenise to the same length (every target position
    takes the source's map at the same position), else a refinement through the token alignment."""
    source_ids, target_ids = _token_ids(pipe, source), _token_ids(pipe, target)
    if len(_token_ids(pipe, source, pad=False)) == len(_token_ids(pipe, target, pad=False)):
        return list(range(len(target_ids))), [1.0] * len(target_ids), "swap"
    mapper, alphas = align_tokens(source_ids, target_ids)
    return mapper, alphas, "refine"


def prompt_to_prompt(
    pipe,
    source: str,
    target: str,
    *,
    seed: int,
    size: int | tuple[int, int],
    steps: int,
    guidance: float,
    cross_fraction: float,
    self_fraction: float = 0.4,
    reweight: float = 1.0,
    mask: np.ndarray | None = None,
    local_fraction: float = 0.3,
    negative: str = "",
    start: torch.Tensor | None = None,
    feature_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, AttentionEdit]:
    """(source image, target image, the edit's record) as RGB uint8, from one paired denoising run.

    size: a side, or (width, height). mask: bool HxW where the target may differ (grounded editing); None edits the
    whole image. start: the initial latent (1, C, h, w) — an inverted real image — instead of seeded noise.
    feature_fraction: for that share of the steps the target's decoder features are the source's (plug-and-play).
    """
    mapper, alphas, mode = token_map(pipe, source, target)
    changed = set(_token_ids(pipe, target)) - set(_token_ids(pipe, source))
    ids = _token_ids(pipe, target)
    # reweighting scales the target's new words: unaligned tokens (refine), or the swapped ones (swap)
    equalizer = [float(reweight) if (a == 0 or ids[n] in changed) else 1.0 for n, a in enumerate(alphas)]
    edit = AttentionEdit(
        steps=steps,
        cross_fraction=cross_fraction,
        self_fraction=self_fraction,
        mapper=torch.tensor(mapper),
        alphas=torch.tensor(alphas)[None, None, :],
        equalizer=torch.tensor(equalizer)[None, None, :],
        mode=mode,
    )
    unet = pipe.unet
    original = dict(unet.attn_processors)
    unet.set_attn_processor({name: P2PAttnProcessor(edit) for name in original})
    scale = pipe.vae_scale_factor
    width, height = (size, size) if isinstance(size, int) else size
    if start is None:
        generator = torch.Generator(device="cpu").manual_seed(seed % 2**63)
        start = torch.randn((1, unet.config.in_channels, height // scale, width // scale), generator=generator)
    latents = start.repeat(2, 1, 1, 1).to(unet.device, unet.dtype)
    hook = None
    if feature_fraction > 0:
        layer = unet.up_blocks[min(1, len(unet.up_blocks) - 1)].resnets[-1]  # PnP's decoder layer

        def inject(module, args, output):
            if edit.step >= round(feature_fraction * steps):
                return output
            output = output.clone()
            output[1::2] = output[0::2]  # [source, target] pairs, with or without the unconditional pair
            return output

        hook = layer.register_forward_hook(inject)
    hard = soft = None
    if mask is not None:
        small = torch.from_numpy(mask.astype(np.float32))[None, None]
        hard = (F.interpolate(small, size=latents.shape[-2:], mode="area") > 0).to(latents.dtype).to(latents.device)
        soft = F.avg_pool2d(hard, 3, stride=1, padding=1).clamp(min=hard)

    def on_step_end(pipeline, index, timestep, tensors):
        edit.step = index + 1
        if hard is None:
            return tensors
        x = tensors["latents"]
        m = hard if index + 1 <= round(local_fraction * steps) else soft
        x[1:2] = x[1:2] * m + x[0:1] * (1 - m)  # outside the mask, the source's trajectory
        return {"latents": x}

    try:
        result = pipe(
            prompt=[source, target],
            negative_prompt=[negative, negative] if negative else None,
            latents=latents,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            output_type="np",
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents"],
        )
    finally:
        unet.set_attn_processor(original)
        if hook is not None:
            hook.remove()
    images = (np.clip(result.images, 0, 1) * 255).round().astype(np.uint8)
    return images[0], images[1], edit


def can_invert(pipe) -> bool:
    """DDIM inversion needs the pipeline's own prompt encoder (SD 1.5 and SDXL families have one)."""
    return hasattr(pipe, "encode_prompt")


def _condition(pipe, prompt: str, height: int, width: int) -> dict:
    """The UNet's text conditioning for one prompt, without classifier-free guidance (SDXL adds pooled text and
    its six size/crop ids: original height and width, crop top and left, target height and width)."""
    device = pipe.unet.device
    if getattr(pipe, "text_encoder_2", None) is None:
        return {"encoder_hidden_states": pipe.encode_prompt(prompt, device, 1, False)[0]}
    embeddings, _, pooled, _ = pipe.encode_prompt(
        prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=embeddings.dtype, device=device)
    return {"encoder_hidden_states": embeddings, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}


def ddim_invert(pipe, image: np.ndarray, prompt: str, steps: int) -> torch.Tensor:
    """The initial latent (1, C, h, w) that DDIM sampling under `prompt` maps back to `image` (RGB uint8)."""
    from diffusers import DDIMInverseScheduler

    unet, vae = pipe.unet, pipe.vae
    pixels = torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean * vae.config.scaling_factor
        condition = _condition(pipe, prompt, *image.shape[:2])
        inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
        inverse.set_timesteps(steps, device=unet.device)
        for t in inverse.timesteps:
            noise = unet(latents.to(unet.dtype), t, **condition).sample
            latents = inverse.step(noise, t, latents).prev_sample
    return latents


def plug_and_play(
    pipe,
    image: np.ndarray,
    source: str,
    target: str,
    *,
    steps: int,
    feature_fraction: float = 0.8,
    self_fraction: float = 0.5,
    **edit,
) -> tuple[np.ndarray, AttentionEdit]:
    """(edited image, the edit's record) of a real image: DDIM-inverted under the source caption, then denoised
    under the target caption with the source branch's decoder features and self-attention injected
    (plug-and-play, Tumanyan et al.). Sampling uses DDIM, the inversion's own scheduler."""
    from diffusers import DDIMScheduler

    start = ddim_invert(pipe, image, source, steps)
    scheduler = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(scheduler.config)
    try:
        _, after, record = prompt_to_prompt(
            pipe,
            source,
            target,
            steps=steps,
            start=start,
            feature_fraction=feature_fraction,
            self_fraction=self_fraction,
            **edit,
        )
    finally:
        pipe.scheduler = scheduler
    return after, record
