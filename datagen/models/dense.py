"""Per-pixel maps and keypoints through transformers: depth (Depth Anything V2), semantic classes (SegFormer) and
human pose (ViTPose, top-down on the boxes grounding found). The translation tasks draw them as images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.config import ConfigError, RoleSpec
from datagen.models.weights import locate, model_id, torch_device_dtype

BACKGROUND_LABELS = {"background", "unlabeled", "unlabelled", "void"}
"""Names a segmentation model gives a no-class label; when its class 0 is one of these, class ids are kept as is."""
COCO_KEYPOINTS = 17
"""The translate generator draws COCO's 17-keypoint skeleton."""


class _DenseModel:
    def __init__(self, spec: RoleSpec, **_):
        self.spec = spec
        self.model_id = model_id(spec.model or "", spec.revision)
        self.model = self.processor = None

    def _load(self, model_class, processor_class):
        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        self.model = model_class.from_pretrained(path, use_safetensors=True, dtype=self.dtype).to(self.device).eval()
        self.processor = processor_class.from_pretrained(path)

    def _pixels(self, image: np.ndarray, **kwargs):
        batch = self.processor(images=Image.fromarray(image), return_tensors="pt", **kwargs)
        return batch["pixel_values"].to(self.device, self.dtype)


class DepthAnything(_DenseModel):
    """`depth(inputs)`: float32 HxW in [0, 1], 1 the nearest pixel, scaled per image (relative depth has no unit)."""

    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self._load(AutoModelForDepthEstimation, AutoImageProcessor)
        # relative models predict disparity (larger = nearer); metric ones predict distance (larger = farther)
        self.nearer_is_larger = getattr(self.model.config, "depth_estimation_type", "relative") != "metric"

    def depth(self, inputs) -> np.ndarray:
        import torch

        height, width = inputs.image.shape[:2]
        with torch.inference_mode():
            predicted = self.model(pixel_values=self._pixels(inputs.image)).predicted_depth
            # resized in float32: the prediction is at the processor's size (a multiple of the patch size)
            resized = torch.nn.functional.interpolate(
                predicted.float()[:, None], size=(height, width), mode="bicubic", align_corners=False
            )
        depth = resized[0, 0].cpu().numpy()
        low, high = float(depth.min()), float(depth.max())
        if not high > low:  # a flat prediction says nothing about order
            return np.zeros((height, width), np.float32)
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

        self._load(SegformerForSemanticSegmentation, SegformerImageProcessorPil)
        first = str(self.model.config.id2label.get(0, "")).strip().lower()
        self.offset = 0 if first in BACKGROUND_LABELS else 1

    def classes(self, inputs) -> np.ndarray:
        import torch

        height, width = inputs.image.shape[:2]
        with torch.inference_mode():
            outputs = self.model(pixel_values=self._pixels(inputs.image))
        outputs.logits = outputs.logits.float()  # upsampled before the argmax: bf16 would round close classes together
        labels = self.processor.post_process_semantic_segmentation(outputs, target_sizes=[(height, width)])[0]
        return np.minimum(labels.cpu().numpy().astype(np.int64) + self.offset, 255).astype(np.uint8)


class ViTPose(_DenseModel):
    """`keypoints(inputs, detections)`: one (17, 3) float32 array of x, y, score in image pixels per detection."""

    def load(self) -> None:
        from transformers import AutoProcessor, VitPoseForPoseEstimation

        self._load(VitPoseForPoseEstimation, AutoProcessor)
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
        with torch.inference_mode():
            outputs = self.model(pixel_values=self._pixels(inputs.image, boxes=boxes))
        outputs.heatmaps = outputs.heatmaps.float()  # the post-processing runs in numpy, which has no bfloat16
        people = self.processor.post_process_pose_estimation(outputs, boxes=boxes)[0]
        return [
            np.concatenate([p["keypoints"].numpy(), p["scores"].numpy()[:, None]], axis=1).astype(np.float32)
            for p in people
        ]
