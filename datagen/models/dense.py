"""Per-pixel maps and keypoints through transformers: depth (Depth Anything V2), semantic classes (SegFormer) and
human pose (ViTPose, top-down on the boxes grounding found). The translation tasks draw them as images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.errors import ConfigError
from datagen.models.batching import chunked
from datagen.models.weights import VisionRole

BACKGROUND_LABELS = {"background", "unlabeled", "unlabelled", "void"}
"""Names a segmentation model gives a no-class label; when its class 0 is one of these, class ids are kept as is."""
COCO_KEYPOINTS = 17
"""The translate generator draws COCO's 17-keypoint skeleton."""


class _DenseModel(VisionRole):
    def _pixels(self, images: list[np.ndarray], **kwargs):
        batch = self.processor(images=[Image.fromarray(image) for image in images], return_tensors="pt", **kwargs)
        return batch["pixel_values"].to(self.device, self.dtype)

    def _chunks(self, items: list) -> list[list[int]]:
        """Indices of inputs of one shape, `batch_size` per model call."""
        return chunked([inputs.image.shape for inputs in items], self.spec.batch_size)


class DepthAnything(_DenseModel):
    """`depth(inputs)`: float32 HxW in [0, 1], 1 the nearest pixel, scaled per image (relative depth has no unit)."""

    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self._from_pretrained(AutoModelForDepthEstimation, AutoImageProcessor)
        # relative models predict disparity (larger = nearer); metric ones predict distance (larger = farther)
        self.nearer_is_larger = getattr(self.model.config, "depth_estimation_type", "relative") != "metric"

    def depth(self, inputs) -> np.ndarray:
        return self.depth_batch([inputs])[0]

    def depth_batch(self, items: list) -> list[np.ndarray]:
        import torch

        out: list = [None] * len(items)
        for chunk in self._chunks(items):
            height, width = items[chunk[0]].image.shape[:2]
            self.counted(len(chunk))
            with torch.inference_mode():
                predicted = self.model(pixel_values=self._pixels([items[i].image for i in chunk])).predicted_depth
                # resized in float32: the prediction is at the processor's size (a multiple of the patch size)
                resized = torch.nn.functional.interpolate(
                    predicted.float()[:, None], size=(height, width), mode="bicubic", align_corners=False
                )
            for row, index in enumerate(chunk):
                out[index] = self._scaled(resized[row, 0].cpu().numpy())
        return out

    def _scaled(self, depth: np.ndarray) -> np.ndarray:
        low, high = float(depth.min()), float(depth.max())
        if not high > low:  # a flat prediction says nothing about order
            return np.zeros(depth.shape, np.float32)
        scaled = (depth - low) / (high - low)
        return (scaled if self.nearer_is_larger else 1.0 - scaled).astype(np.float32)


class SegFormer(_DenseModel):
    """`classes(inputs)`: uint8 HxW class ids, 0 meaning no class.

    A model whose label 0 is background or unlabelled keeps its ids (clipped to 255). Otherwise 0 is reserved and
    model class k becomes k + 1 (clipped to 255): ADE20k's 150 classes (wall = 0) come out as 1..150.
    """

    def load(self) -> None:
        from transformers import SegformerForSemanticSegmentation

        # transformers 5 marks SegformerImageProcessorPil as needing torchvision (only its label-map path uses it),
        # so AutoImageProcessor refuses it here; imported from its module, it preprocesses images without.
        from transformers.models.segformer.image_processing_pil_segformer import SegformerImageProcessorPil

        self._from_pretrained(SegformerForSemanticSegmentation, SegformerImageProcessorPil)
        first = str(self.model.config.id2label.get(0, "")).strip().lower()
        self.offset = 0 if first in BACKGROUND_LABELS else 1

    def classes(self, inputs) -> np.ndarray:
        return self.classes_batch([inputs])[0]

    def classes_batch(self, items: list) -> list[np.ndarray]:
        import torch

        out: list = [None] * len(items)
        for chunk in self._chunks(items):
            height, width = items[chunk[0]].image.shape[:2]
            self.counted(len(chunk))
            with torch.inference_mode():
                outputs = self.model(pixel_values=self._pixels([items[i].image for i in chunk]))
            outputs.logits = outputs.logits.float()  # upsampled before the argmax: bf16 rounds close classes together
            sizes = [(height, width)] * len(chunk)
            labels = self.processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
            for index, label in zip(chunk, labels, strict=True):
                out[index] = np.minimum(label.cpu().numpy().astype(np.int64) + self.offset, 255).astype(np.uint8)
        return out


class ViTPose(_DenseModel):
    """`keypoints(inputs, detections)`: one (17, 3) float32 array of x, y, score in image pixels per detection."""

    def load(self) -> None:
        from transformers import AutoProcessor, VitPoseForPoseEstimation

        self._from_pretrained(VitPoseForPoseEstimation, AutoProcessor)
        if self.model.config.num_labels != COCO_KEYPOINTS:
            raise ConfigError(
                f"pose model {self.model_id!r} predicts {self.model.config.num_labels} keypoints; the pose task draws "
                f"COCO's {COCO_KEYPOINTS} (e.g. usyd-community/vitpose-base-simple)"
            )

    def keypoints(self, inputs, detections) -> list[np.ndarray]:
        import torch

        if not detections:
            return []
        boxes = [[[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in (d.box for d in detections)]]  # COCO x, y, w, h
        self.counted(1)
        with torch.inference_mode():
            outputs = self.model(pixel_values=self._pixels([inputs.image], boxes=boxes))
        outputs.heatmaps = outputs.heatmaps.float()  # the post-processing runs in numpy, which has no bfloat16
        people = self.processor.post_process_pose_estimation(outputs, boxes=boxes)[0]
        return [
            np.concatenate([p["keypoints"].numpy(), p["scores"].numpy()[:, None]], axis=1).astype(np.float32)
            for p in people
        ]
