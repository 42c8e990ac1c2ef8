"""Open-vocabulary grounding with transformers' GroundingDinoForObjectDetection (same weights as the original)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.config import RoleSpec
from datagen.models.oracle import Detection, GroundingMiss
from datagen.models.weights import locate, model_id, torch_device_dtype


class GroundingDINO:
    """`locate` returns the best box per named object; `confidence` scores how present an object is."""

    def __init__(self, spec: RoleSpec, **_):
        self.spec = spec
        self.box_threshold = float(spec.args.get("box_threshold", 0.35))
        self.text_threshold = float(spec.args.get("text_threshold", 0.25))
        self.model_id = model_id(spec.model or "", spec.revision)
        self.model = self.processor = None

    def load(self) -> None:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        self.model = GroundingDinoForObjectDetection.from_pretrained(path, use_safetensors=True, dtype=self.dtype)
        self.model = self.model.to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(path)

    def _detections(self, image: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n,), boxes (n, 4) clipped to the image) of every query box for `name`, best first."""
        import torch

        height, width = image.shape[:2]
        inputs = self.processor(images=Image.fromarray(image), text=f"{name.lower()}.", return_tensors="pt")
        inputs = {
            k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=0.0,
            text_threshold=self.text_threshold,
            target_sizes=[(height, width)],
        )[0]
        scores = result["scores"].float().cpu().numpy()
        boxes = result["boxes"].float().cpu().numpy().reshape(-1, 4)
        boxes = np.clip(boxes, 0, [width, height, width, height])
        order = np.argsort(-scores, kind="stable")
        return scores[order], boxes[order]

    def _detect(self, image: np.ndarray, name: str) -> tuple[float, list[float]]:
        """(best score, box) of `name` in the image; score 0 when nothing passes the text threshold."""
        scores, boxes = self._detections(image, name)
        if len(scores) == 0:
            return 0.0, [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]
        return float(scores[0]), [float(v) for v in boxes[0]]

    def locate_all(self, inputs, name: str, limit: int = 8, overlap: float = 0.5) -> list[Detection]:
        """Every instance of `name` (pose: all the people): boxes over the threshold, overlapping ones suppressed
        (IoU > overlap), at most `limit`, best first."""
        scores, boxes = self._detections(inputs.image, name)
        kept: list[Detection] = []
        for score, box in zip(scores, boxes, strict=True):
            if score < self.box_threshold or len(kept) == limit:
                break
            if box[2] - box[0] < 1 or box[3] - box[1] < 1 or any(iou(box, d.box) > overlap for d in kept):
                continue
            kept.append(Detection(name=name, box=[float(v) for v in box], score=float(score)))
        if not kept:
            raise GroundingMiss("object_not_found", f"{name!r}: no box scores {self.box_threshold} or more")
        return kept

    def locate(self, inputs, names: list[str]) -> list[Detection]:
        found = []
        for name in names:
            score, box = self._detect(inputs.image, name)
            if score < self.box_threshold or box[2] - box[0] < 1 or box[3] - box[1] < 1:
                raise GroundingMiss("object_not_found", f"{name!r}: best box score {score:.3f} < {self.box_threshold}")
            found.append(Detection(name=name, box=box, score=score))
        return found

    def confidence(self, image: np.ndarray, name: str) -> float:
        """How surely `name` is in the image (the detector gate: removed objects must fall, added ones rise)."""
        return self._detect(image, name)[0]


def iou(a, b) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
