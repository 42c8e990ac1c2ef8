"""FLUX.1 with diffusers: Fill plays `inpaint`, Kontext plays `editor`.

Both run a FLUX.1 transformer (12B, guidance-distilled: one forward per step), CLIP-L and T5-XXL text encoders and a
VAE that downsamples 8x and packs latents in 2x2 patches, so image sides must be multiples of 16. Images of other
sizes are padded (edge pixels repeated) up to the next multiple, the padding kept as it is (Fill) or drawn along
(Kontext), and cropped away again: every image returned has its input's size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.config import RoleSpec
from datagen.models.batching import Counted, chunked
from datagen.models.diffusion import seeded_generator, uint8_images, uint8_tensors
from datagen.models.options import FluxFillOptions, FluxKontextOptions, FluxOptions
from datagen.models.weights import compiled, locate, model_id, torch_device_dtype


def pad_to(image: np.ndarray, multiple: int) -> np.ndarray:
    """`image` (H, W[, C]) grown at the bottom and right to sides that are multiples of `multiple`, edges repeated."""
    height, width = image.shape[:2]
    grow = ((0, -height % multiple), (0, -width % multiple)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, grow, mode="edge")


class _Flux(Counted):
    pipeline_class = ""
    options_class: type[FluxOptions] = FluxOptions

    def __init__(self, spec: RoleSpec, options: FluxOptions | None = None, **_):
        self.spec = spec
        self.options = options or self.options_class.parse(spec.args, "flux")
        self.model_id = model_id(spec.model or "", spec.revision)
        self.pipe = None
        self.multiple = 16

    def load(self) -> None:
        import diffusers

        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        cls = getattr(diffusers, self.options.pipeline or self.pipeline_class)
        self.pipe = cls.from_pretrained(path, dtype=self.dtype, use_safetensors=True).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.multiple = self.pipe.vae_scale_factor * 2  # 8x VAE, then 2x2 patches: 16 for FLUX.1
        if self.options.fuse_qkv:  # one projection matmul instead of three per attention
            self.pipe.transformer.fuse_qkv_projections()
        self.pipe.transformer.register_forward_pre_hook(self._count_forward)
        if self.options.compile:
            self.pipe.transformer = compiled(self.pipe.transformer)

    def _count_forward(self, module, args) -> None:
        self.forwards += 1

    def _embedded(self, prompts: list[str]) -> dict:
        """The call's text: with batch_encode, prompt_embeds and pooled_prompt_embeds, each distinct prompt run
        through CLIP and T5 once; else the prompts, embedded by the pipeline item by item."""
        if not self.options.batch_encode:
            return {"prompt": prompts}
        import torch

        distinct = list(dict.fromkeys(prompts))
        with torch.no_grad():
            device, length = self.pipe._execution_device, self.options.max_sequence_length
            embeds, pooled, _ = self.pipe.encode_prompt(distinct, None, device=device, max_sequence_length=length)
        where = torch.tensor([distinct.index(prompt) for prompt in prompts], device=embeds.device)
        return {"prompt_embeds": embeds[where], "pooled_prompt_embeds": pooled[where]}


class FluxInpainter(_Flux):
    """inpaint: FLUX.1 Fill (black-forest-labs/FLUX.1-Fill-dev)."""

    pipeline_class = "FluxFillPipeline"
    options_class = FluxFillOptions
    follows_prompt = True
    reads_glyph_template = True

    # Copied from datagen.models.diffusion.DiffusionInpainter.inpaint_batch
    def inpaint_batch(
        self, images: list[np.ndarray], masks: list[np.ndarray], prompts: list[str], seeds: list[int]
    ) -> list[np.ndarray]:
        """Repaint each image where its mask > 0 from its prompt; the caller composites, so only masked pixels are
        used. Items of one shape go through the pipeline together, `batch_size` per call, each with its own seeded
        generator: an item's noise never depends on its batch neighbours."""
        return [image.cpu().numpy() for image in self.inpaint_batch_on_device(images, masks, prompts, seeds)]

    def inpaint_batch_on_device(
        self, images: list[np.ndarray], masks: list[np.ndarray], prompts: list[str], seeds: list[int]
    ) -> list:
        """inpaint_batch, each image a uint8 (H, W, 3) tensor left on the model's device (the same values)."""
        out: list = [None] * len(images)
        for chunk in chunked([image.shape for image in images], self.spec.batch_size):
            height, width = images[chunk[0]].shape[:2]
            padded = [pad_to(images[i], self.multiple) for i in chunk]
            holes = [pad_to(np.where(masks[i] > 0, 255, 0).astype(np.uint8), self.multiple) for i in chunk]
            for hole in holes:  # the padding is context, never repainted
                hole[height:], hole[:, width:] = 0, 0
            self.counted(len(chunk))
            result = self.pipe(
                **self._embedded([prompts[i] for i in chunk]),
                image=[Image.fromarray(image) for image in padded],
                mask_image=[Image.fromarray(hole) for hole in holes],
                height=padded[0].shape[0],
                width=padded[0].shape[1],
                num_inference_steps=self.options.steps,
                guidance_scale=self.options.guidance,
                strength=self.options.strength,
                max_sequence_length=self.options.max_sequence_length,
                generator=[seeded_generator(seeds[i]) for i in chunk],
                output_type="pt",
            )
            for index, image in zip(chunk, uint8_tensors(result.images), strict=True):
                out[index] = image[:height, :width]
        return out


class FluxEditor(_Flux):
    """editor: FLUX.1 Kontext (black-forest-labs/FLUX.1-Kontext-dev), the input image redrawn as the instruction
    says."""

    pipeline_class = "FluxKontextPipeline"
    options_class = FluxKontextOptions

    def __init__(self, spec: RoleSpec, options: FluxKontextOptions | None = None, **_):
        super().__init__(spec, options)
        self.guidance = self.options.guidance

    def edit_batch(
        self,
        images: list[np.ndarray],
        instructions: list[str],
        seeds: list[int],
        guidance: list[float] | None = None,
    ) -> list[np.ndarray]:
        """Each image edited as its instruction says, at its own guidance (default: the role's); items of one shape
        and guidance go through the pipeline together, `batch_size` per call, each with its own seeded generator."""
        scales = guidance or [self.guidance] * len(images)
        out: list = [None] * len(images)
        keys = [(image.shape, g) for image, g in zip(images, scales, strict=True)]
        for chunk in chunked(keys, self.spec.batch_size):
            height, width = images[chunk[0]].shape[:2]
            padded = [pad_to(images[i], self.multiple) for i in chunk]
            side_h, side_w = padded[0].shape[:2]
            self.counted(len(chunk))
            result = self.pipe(
                **self._embedded([instructions[i] for i in chunk]),
                image=[Image.fromarray(image) for image in padded],
                height=side_h,
                width=side_w,
                max_area=side_h * side_w,  # Kontext sizes its output by area and aspect: exactly the input's
                _auto_resize=False,  # keep the input's size, not the nearest of Kontext's training resolutions
                num_inference_steps=self.options.steps,
                guidance_scale=scales[chunk[0]],
                max_sequence_length=self.options.max_sequence_length,
                generator=[seeded_generator(seeds[i]) for i in chunk],
                output_type="np",
            )
            for index, image in zip(chunk, uint8_images(result.images), strict=True):
                out[index] = image[:height, :width]
        return out
