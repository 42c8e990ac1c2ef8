"""Text-to-image and inpainting with diffusers (Stable Diffusion 1.5 and SDXL families)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.config import RoleSpec
from datagen.models.weights import locate, model_id, torch_device_dtype


class _Diffusion:
    pipeline_class = ""

    def __init__(self, spec: RoleSpec, image_size: int = 512, **_):
        self.spec = spec
        self.size = image_size
        self.steps = int(spec.args.get("steps", 25))
        self.guidance = float(spec.args.get("guidance", 7.5))
        self.negative = str(spec.args.get("negative_prompt", ""))
        self.model_id = model_id(spec.model or "", spec.revision)
        self.pipe = None

    def load(self) -> None:
        import diffusers

        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        cls = getattr(diffusers, self.spec.args.get("pipeline", self.pipeline_class))
        self.pipe = cls.from_pretrained(path, torch_dtype=self.dtype, use_safetensors=True).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        if self.spec.args.get("channels_last", False):  # NHWC convolutions: the tensor cores' layout
            import torch

            for part in ("unet", "vae"):
                getattr(self.pipe, part).to(memory_format=torch.channels_last)
        if self.spec.args.get("compile", False):  # inpainting and text-to-image only: p2p swaps attention processors
            import torch

            self.pipe.unet = torch.compile(self.pipe.unet)

    def _generator(self, seed: int):
        import torch

        return torch.Generator(device="cpu").manual_seed(seed % 2**63)


class DiffusionText2Image(_Diffusion):
    pipeline_class = "AutoPipelineForText2Image"

    def generate(self, prompt: str, seed: int) -> np.ndarray:
        result = self.pipe(
            prompt=prompt,
            negative_prompt=self.negative or None,
            height=self.size,
            width=self.size,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=self._generator(seed),
            output_type="np",
        )
        return (np.clip(result.images[0], 0, 1) * 255).round().astype(np.uint8)

    def prompt_to_prompt(self, source: str, target: str, seed: int, **edit) -> tuple[np.ndarray, np.ndarray]:
        """(source image, target image) drawn together with prompt-to-prompt attention control (datagen/models/p2p.py);
        `edit`: cross_fraction, self_fraction, reweight, mask, local_fraction."""
        from datagen.models.p2p import prompt_to_prompt

        before, after, _ = prompt_to_prompt(
            self.pipe,
            source,
            target,
            seed=seed,
            size=self.size,
            steps=self.steps,
            guidance=self.guidance,
            negative=self.negative,
            **edit,
        )
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
            size=image.shape[0],
            steps=self.steps,
            guidance=self.guidance,
            negative=self.negative,
            **edit,
        )
        return after


class DiffusionInpainter(_Diffusion):
    pipeline_class = "AutoPipelineForInpainting"

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str = "", seed: int = 0) -> np.ndarray:
        """Repaint where mask > 0 from `prompt`; the caller composites, so only masked pixels are used."""
        height, width = image.shape[:2]
        result = self.pipe(
            prompt=prompt,
            negative_prompt=self.negative or None,
            image=Image.fromarray(image),
            mask_image=Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)),
            height=height,
            width=width,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            strength=float(self.spec.args.get("strength", 1.0)),
            generator=self._generator(seed),
            output_type="np",
        )
        return (np.clip(result.images[0], 0, 1) * 255).round().astype(np.uint8)
