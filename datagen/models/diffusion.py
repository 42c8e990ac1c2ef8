"""Text-to-image and inpainting with diffusers (Stable Diffusion 1.5 and SDXL families)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.config import RoleSpec
from datagen.models.batching import Counted, chunked
from datagen.models.options import DiffusionOptions
from datagen.models.weights import compiled, locate, model_id, torch_device_dtype


def seeded_generator(seed: int):
    """An item's own noise stream (on the CPU, so a seed draws the same noise on every device)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed % 2**63)


def uint8_images(images: np.ndarray) -> list[np.ndarray]:
    """A pipeline's float images in [0, 1] (output_type "np") as uint8 RGB arrays."""
    return [(np.clip(image, 0, 1) * 255).round().astype(np.uint8) for image in images]


def uint8_tensors(images) -> list:
    """A pipeline's images as output_type "pt" gives them ((B, 3, H, W) in [0, 1], on its device, in its dtype) as
    uint8 (H, W, 3) tensors on that device: the values uint8_images makes of output_type "np" (float32 first, then
    clipped, scaled and rounded half to even)."""
    import torch

    scaled = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return list(scaled.permute(0, 2, 3, 1))


class _Diffusion(Counted):
    pipeline_class = ""

    def __init__(self, spec: RoleSpec, image_size: int = 512, options: DiffusionOptions | None = None, **_):
        self.spec = spec
        self.options = options or DiffusionOptions.parse(spec.args, "diffusion")
        self.size = image_size
        self.steps = self.options.steps
        self.guidance = self.options.guidance
        self.negative = self.options.negative_prompt
        self.model_id = model_id(spec.model or "", spec.revision)
        self.pipe = None

    def load(self) -> None:
        import diffusers
        import torch

        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        cls = getattr(diffusers, self.options.pipeline or self.pipeline_class)
        self.pipe = cls.from_pretrained(path, torch_dtype=self.dtype, use_safetensors=True).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        parts = [getattr(self.pipe, name) for name in ("unet", "vae") if getattr(self.pipe, name, None) is not None]
        if self.options.attention == "eager":  # the classic processors: the naive baseline
            from diffusers.models.attention_processor import AttnProcessor

            for part in parts:
                part.set_attn_processor(AttnProcessor())
        if self.options.fuse_qkv:  # one projection matmul instead of three per self-attention
            for part in parts:
                part.fuse_qkv_projections()
        if self.options.channels_last:  # NHWC convolutions: the tensor cores' layout
            for part in parts:
                part.to(memory_format=torch.channels_last)
        self.pipe.unet.register_forward_pre_hook(self._count_forward)
        if self.options.compile:  # inpainting and text-to-image only: p2p swaps attention processors
            self.pipe.unet = compiled(self.pipe.unet)

    def _count_forward(self, module, args) -> None:
        self.forwards += 1


class DiffusionText2Image(_Diffusion):
    pipeline_class = "AutoPipelineForText2Image"

    def generate(self, prompt: str, seed: int, size: tuple[int, int] | None = None) -> np.ndarray:
        return self.generate_batch([prompt], [seed], None if size is None else [size])[0]

    def generate_batch(
        self, prompts: list[str], seeds: list[int], sizes: list[tuple[int, int]] | None = None
    ) -> list[np.ndarray]:
        """One image per (prompt, seed), of its (width, height) in `sizes` (default: the pipeline's image_size
        square); items of one size go through the pipeline together, `batch_size` per call, each item's noise from
        its own seeded generator, so an image never depends on its batch neighbours."""
        sizes = sizes or [(self.size, self.size)] * len(prompts)
        out: list = [None] * len(prompts)
        for chunk in chunked(sizes, self.spec.batch_size):
            width, height = sizes[chunk[0]]
            self.counted(len(chunk))
            result = self.pipe(
                prompt=[prompts[i] for i in chunk],
                negative_prompt=[self.negative] * len(chunk) if self.negative else None,
                height=height,
                width=width,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                generator=[seeded_generator(seeds[i]) for i in chunk],
                output_type="np",
            )
            for index, image in zip(chunk, uint8_images(result.images), strict=True):
                out[index] = image
        return out

    def prompt_to_prompt(
        self, source: str, target: str, seed: int, size: tuple[int, int] | None = None, **edit
    ) -> tuple[np.ndarray, np.ndarray]:
        """(source image, target image) drawn together with prompt-to-prompt attention control (datagen/models/p2p.py)
        at `size` (width, height; default the image_size square); `edit`: cross_fraction, self_fraction, reweight,
        mask, local_fraction."""
        from datagen.models.p2p import prompt_to_prompt

        before, after, _ = prompt_to_prompt(
            self.pipe,
            source,
            target,
            seed=seed,
            size=size or (self.size, self.size),
            steps=self.steps,
            guidance=self.guidance,
            negative=self.negative,
            **edit,
        )
        self.counted(1)
        return before, after

    def can_invert(self) -> bool:
        from datagen.models.p2p import can_invert

        return can_invert(self.pipe)

    def plug_and_play(self, image: np.ndarray, source: str, target: str, seed: int, **edit) -> np.ndarray:
        """`image` edited from `source` to `target` caption by DDIM inversion + plug-and-play injection."""
        from datagen.models.p2p import plug_and_play

        after, _ = plug_and_play(
            self.pipe,
            image,
            source,
            target,
            seed=seed,
            size=(image.shape[1], image.shape[0]),
            steps=self.steps,
            guidance=self.guidance,
            negative=self.negative,
            **edit,
        )
        self.counted(1)
        return after


class DiffusionInpainter(_Diffusion):
    pipeline_class = "AutoPipelineForInpainting"
    follows_prompt = True
    reads_glyph_template = False

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str = "", seed: int = 0) -> np.ndarray:
        return self.inpaint_batch([image], [mask], [prompt], [seed])[0]

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
            self.counted(len(chunk))
            pictures = [Image.fromarray(images[i]) for i in chunk]
            holes = [Image.fromarray(np.where(masks[i] > 0, 255, 0).astype(np.uint8)) for i in chunk]
            generators = [seeded_generator(seeds[i]) for i in chunk]
            if self._batches_encode():
                inputs = {
                    **self._embedded([prompts[i] for i in chunk]),
                    **self._encoded(pictures, holes, generators, height, width),
                }
            else:
                inputs = {
                    "prompt": [prompts[i] for i in chunk],
                    "negative_prompt": [self.negative] * len(chunk) if self.negative else None,
                }
            result = self.pipe(
                **inputs,
                image=pictures,
                mask_image=holes,
                height=height,
                width=width,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                strength=self.options.strength,
                generator=generators,
                output_type="pt",
            )
            for index, image in zip(chunk, uint8_tensors(result.images), strict=True):
                out[index] = image
        return out

    def _batches_encode(self) -> bool:
        """Whether this call may skip diffusers' per-item encode: Stable Diffusion's inpainting pipeline with a
        9-channel UNet at strength 1 (others, e.g. SDXL's, keep their own path)."""
        import diffusers

        return (
            self.options.batch_encode
            and type(self.pipe) is diffusers.StableDiffusionInpaintPipeline
            and self.pipe.unet.config.in_channels == 9
            and self.options.strength == 1.0
        )

    def _embedded(self, prompts: list[str]) -> dict:
        """prompt_embeds and negative_prompt_embeds of the call, each distinct prompt (and the negative one) run
        through the text encoder once."""
        import torch

        distinct = list(dict.fromkeys(prompts))
        guided = self.guidance > 1 and self.pipe.unet.config.time_cond_proj_dim is None  # the pipeline's own test
        with torch.no_grad():
            embeds, negative = self.pipe.encode_prompt(
                distinct,
                self.pipe._execution_device,
                1,
                guided,
                negative_prompt=[self.negative] * len(distinct) if self.negative else None,
            )
        where = torch.tensor([distinct.index(prompt) for prompt in prompts], device=embeds.device)
        out = {"prompt_embeds": embeds[where]}
        if negative is not None:
            out["negative_prompt_embeds"] = negative[where]
        return out

    def _encoded(self, pictures: list, holes: list, generators: list, height: int, width: int) -> dict:
        """`latents` (each item's initial noise) and `masked_image_latents` (its masked image VAE-encoded, the whole
        call in one encoder pass), drawn from each item's generator in the order diffusers draws them (the noise,
        then the latent sample), so that the pipeline, given both, makes what its per-item path makes."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        pipe = self.pipe
        device = pipe._execution_device
        dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.unet.dtype
        init = pipe.image_processor.preprocess(pictures, height=height, width=width).to(dtype=torch.float32)
        mask = pipe.mask_processor.preprocess(holes, height=height, width=width)
        masked = (init * (mask < 0.5)).to(device=device, dtype=dtype)
        scale = pipe.vae_scale_factor
        shape = (len(pictures), pipe.vae.config.latent_channels, height // scale, width // scale)
        noise = randn_tensor(shape, generator=generators, device=device, dtype=dtype)
        with torch.no_grad():
            sampled = pipe.vae.encode(masked).latent_dist.sample(generator=generators)
        return {"latents": noise, "masked_image_latents": pipe.vae.config.scaling_factor * sampled}
