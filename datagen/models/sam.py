"""Box-prompted segmentation with transformers' SamModel."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.config import RoleSpec
from datagen.models.weights import locate, model_id, torch_device_dtype


class SAMSegmenter:
    def __init__(self, spec: RoleSpec, **_):
        self.spec = spec
        self.model_id = model_id(spec.model or "", spec.revision)
        self.model = self.processor = None

    def load(self) -> None:
        from transformers import SamModel, SamProcessor

        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        self.model = SamModel.from_pretrained(path, use_safetensors=True, dtype=self.dtype).to(self.device).eval()
        self.processor = SamProcessor.from_pretrained(path)

    def segment(self, inputs, detections) -> list[np.ndarray]:
        """One bool mask per detection: SAM's highest-IoU mask for its box, clipped to the box."""
        import torch

        if not detections:
            return []
        image = inputs.image
        boxes = [[d.box for d in detections]]
        batch = self.processor(images=Image.fromarray(image), input_boxes=boxes, return_tensors="pt")
        pixel_values = batch["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            outputs = self.model(
                pixel_values=pixel_values,
                input_boxes=batch["input_boxes"].to(self.device, self.dtype),
                multimask_output=True,
            )
        masks = self.processor.image_processor.post_process_masks(
            outputs.pred_masks.float().cpu(), batch["original_sizes"], batch["reshaped_input_sizes"]
        )[0]  # (boxes, 3, H, W)
        iou = outputs.iou_scores.float().cpu()[0]  # (boxes, 3)
        out = []
        for n, detection in enumerate(detections):
            mask = masks[n, int(torch.argmax(iou[n]))].numpy().astype(bool)
            x0, y0, x1, y1 = (int(round(v)) for v in detection.box)
            clipped = np.zeros_like(mask)
            clipped[y0:y1, x0:x1] = mask[y0:y1, x0:x1]  # SAM masks can spill; the grounded box bounds the object
            if not clipped.any():  # an empty mask is useless; fall back to the box, which the filters will judge
                clipped[y0:y1, x0:x1] = True
            out.append(clipped)
        return out
