"""Box-prompted segmentation with transformers' SamModel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

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
        """Per (inputs, detections): one bool mask per detection, SAM's highest-IoU mask for its box clipped to the
        box. Images of one shape go through the model together, `batch_size` at a time."""
        import torch

        out: list = [[] for _ in items]
        boxed = [i for i, (_, detections) in enumerate(items) if detections]
        for part in chunked([items[i][0].image.shape for i in boxed], self.spec.batch_size):
            chunk = [boxed[i] for i in part]
            images = [Image.fromarray(items[i][0].image) for i in chunk]
            # one tensor needs as many boxes per image: the shorter lists repeat their last box, whose extra masks
            # are dropped (SAM decodes every box prompt on its own)
            most = max(len(items[i][1]) for i in chunk)
            boxes = [[d.box for d in items[i][1]] + [items[i][1][-1].box] * (most - len(items[i][1])) for i in chunk]
            batch = self.processor(images=images, input_boxes=boxes, return_tensors="pt")
            self.counted(len(chunk))
            with torch.inference_mode():
                outputs = self.model(
                    pixel_values=batch["pixel_values"].to(self.device, self.dtype),
                    input_boxes=batch["input_boxes"].to(self.device, self.dtype),
                    multimask_output=True,
                )
            masks = self.processor.image_processor.post_process_masks(
                outputs.pred_masks.float().cpu(), batch["original_sizes"], batch["reshaped_input_sizes"]
            )  # per image: (boxes, 3, H, W)
            iou = outputs.iou_scores.float().cpu()  # (images, boxes, 3)
            for row, index in enumerate(chunk):
                out[index] = [
                    _clipped(masks[row][n, int(torch.argmax(iou[row, n]))].numpy().astype(bool), detection.box)
                    for n, detection in enumerate(items[index][1])
                ]
        return out


def _clipped(mask: np.ndarray, box: list[float]) -> np.ndarray:
    """SAM masks can spill: the grounded box bounds the object. An empty mask is useless; the box stands in for it,
    and the filters judge it."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    clipped = np.zeros_like(mask)
    clipped[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    if not clipped.any():
        clipped[y0:y1, x0:x1] = True
    return clipped
