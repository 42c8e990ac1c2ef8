"""Box-prompted segmentation with transformers' SamModel (SAM) and Sam2Model (SAM 2.1)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datagen.errors import ConfigError
from datagen.models.batching import chunked
from datagen.models.weights import VisionRole


class SAMSegmenter(VisionRole):
    def load(self) -> None:
        from transformers import SamModel, SamProcessor

        self._from_pretrained(SamModel, SamProcessor)

    def segment(self, inputs, detections) -> list[np.ndarray]:
        """One image's `segment_batch`."""
        return self.segment_batch([(inputs, detections)])[0]

    def segment_batch(self, items: Sequence[tuple]) -> list[list[np.ndarray]]:
        """Per (inputs, detections): one bool mask per detection, the model's highest-IoU mask for its box clipped
        to the box. Images of one shape go through the model together, `batch_size` at a time."""
        import torch

        out: list = [[] for _ in items]
        boxed = [i for i, (_, detections) in enumerate(items) if detections]
        for part in chunked([items[i][0].image.shape for i in boxed], self.spec.batch_size):
            chunk = [boxed[i] for i in part]
            # one tensor needs as many boxes per image: the shorter lists repeat their last box, whose extra masks
            # are dropped (SAM decodes every box prompt on its own)
            most = max(len(items[i][1]) for i in chunk)
            boxes = [[d.box for d in items[i][1]] + [items[i][1][-1].box] * (most - len(items[i][1])) for i in chunk]
            self.counted(len(chunk))
            masks, iou = self._masks([items[i][0].image for i in chunk], boxes)
            for row, index in enumerate(chunk):
                out[index] = [
                    _clipped(masks[row][n, int(torch.argmax(iou[row, n]))].numpy().astype(bool), detection.box)
                    for n, detection in enumerate(items[index][1])
                ]
        return out

    def _masks(self, images: list[np.ndarray], boxes: list[list[list[float]]]):
        """One forward of images of one shape with their box prompts: per image its masks at the image's size,
        (boxes, 3, H, W) bool, and the IoU the model predicts for each, (images, boxes, 3)."""
        import torch

        batch = self.processor(images=[Image.fromarray(i) for i in images], input_boxes=boxes, return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(
                pixel_values=batch["pixel_values"].to(self.device, self.dtype),
                input_boxes=batch["input_boxes"].to(self.device, self.dtype),
                multimask_output=True,
            )
        masks = self.processor.image_processor.post_process_masks(
            outputs.pred_masks.float().cpu(), batch["original_sizes"], batch["reshaped_input_sizes"]
        )
        return masks, outputs.iou_scores.float().cpu()


class SAM2Segmenter(SAMSegmenter):
    """SAM 2.1 through transformers' Sam2Model, prompted and read like SAM. Its image processor imports torchvision
    (which the CPU torch build cannot have) and has no PIL version; `Sam2Pixels` does its steps instead."""

    def load(self) -> None:
        from transformers import Sam2Model

        self._from_pretrained(Sam2Model, Sam2Pixels)

    def _masks(self, images: list[np.ndarray], boxes: list[list[list[float]]]):
        import torch

        height, width = images[0].shape[:2]
        scale = torch.tensor([self.processor.width / width, self.processor.height / height] * 2)
        with torch.inference_mode():
            outputs = self.model(
                pixel_values=self.processor.pixels(images).to(self.device, self.dtype),
                input_boxes=(torch.tensor(boxes, dtype=torch.float32) * scale).to(self.device, self.dtype),
                multimask_output=True,
            )
        # Sam2ImageProcessor.post_process_masks: the low-resolution logits resized to the image, thresholded at 0
        logits = torch.nn.functional.interpolate(
            outputs.pred_masks.float().cpu().flatten(0, 1), (height, width), mode="bilinear", align_corners=False
        )
        masks = (logits > 0).unflatten(0, outputs.pred_masks.shape[:2])
        return list(masks), outputs.iou_scores.float().cpu()


@dataclass(frozen=True)
class Sam2Pixels:
    """What transformers' Sam2ImageProcessor does to an image, in plain torch, read from the checkpoint's
    preprocessor_config.json: an antialiased bilinear resize of the uint8 image to `height` x `width` (the call
    torchvision makes on the CPU), then rescaled and normalised. Box prompts scale to that size (Sam2Processor)."""

    height: int = 1024
    width: int = 1024
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Sam2Pixels:
        file = Path(path) / "preprocessor_config.json"
        config = json.loads(file.read_text())
        steps = ("do_resize", "do_rescale", "do_normalize")
        if config.get("resample", 2) != 2 or not all(config.get(step, True) for step in steps):
            raise ConfigError(f"{file}: the sam2 backend resizes bilinearly and normalises, as SAM 2.1 is published")
        size = config.get("size") or {}
        return cls(
            height=size.get("height", cls.height),
            width=size.get("width", cls.width),
            rescale_factor=config.get("rescale_factor", cls.rescale_factor),
            image_mean=tuple(config.get("image_mean", cls.image_mean)),
            image_std=tuple(config.get("image_std", cls.image_std)),
        )

    def pixels(self, images: list[np.ndarray]):
        """(n, 3, height, width) float32 pixel values of RGB uint8 images of one shape."""
        import torch

        stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        resized = torch.nn.functional.interpolate(
            stacked, (self.height, self.width), mode="bilinear", antialias=True, align_corners=False
        )
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (resized.float() * self.rescale_factor - mean) / std


def _clipped(mask: np.ndarray, box: list[float]) -> np.ndarray:
    """SAM masks can spill: the grounded box bounds the object. An empty mask is useless; the box stands in for it,
    and the filters judge it."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    clipped = np.zeros_like(mask)
    clipped[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    if not clipped.any():
        clipped[y0:y1, x0:x1] = True
    return clipped
