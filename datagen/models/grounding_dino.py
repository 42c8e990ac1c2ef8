"""Open-vocabulary grounding with transformers' GroundingDinoForObjectDetection (same weights as the original) and
MMGroundingDinoForObjectDetection (OpenMMLab's MM-Grounding-DINO), which share a processor and an output."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from datagen.config import RoleSpec
from datagen.models.batching import chunked
from datagen.models.options import GroundingOptions
from datagen.models.oracle import Detection, GroundingMiss
from datagen.models.weights import VisionRole


class GroundingDINO(VisionRole):
    """`locate_batch` finds the best box per named object of each image; `confidence_batch` scores how present an
    object is (the detector gate). Every call takes a list of (image, name) queries, `batch_size` per forward."""

    scores_presence = True
    """Its detections carry a confidence the detector gate can reuse (an oracle's do not)."""

    options_class = GroundingOptions

    model_class = "GroundingDinoForObjectDetection"
    """The transformers class of its weights."""

    def __init__(self, spec: RoleSpec, options: GroundingOptions | None = None, **_):
        super().__init__(spec, options)
        self.box_threshold = self.options.box_threshold
        self.text_threshold = self.options.text_threshold

    def load(self) -> None:
        import transformers

        self._from_pretrained(getattr(transformers, self.model_class), transformers.AutoProcessor)

    def detections(self, queries: Sequence[tuple[np.ndarray, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per (image, name) query: (scores (n,), boxes (n, 4) clipped to the image) of every box, best first.
        Queries go through the model `batch_size` at a time, images of one shape together."""
        import torch
        from transformers.image_transforms import center_to_corners_format

        out: list = [None] * len(queries)
        for chunk in chunked([q[0].shape for q in queries], self.spec.batch_size):
            images = [Image.fromarray(queries[i][0]) for i in chunk]
            texts = [f"{queries[i][1].lower()}." for i in chunk]
            inputs = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
            inputs = {
                k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in inputs.items()
            }
            self.counted(len(chunk))
            with torch.inference_mode():
                outputs = self.model(**inputs)
            height, width = queries[chunk[0]][0].shape[:2]
            # transformers' post-processing decodes a phrase for every box over the threshold (all 900 at 0), in
            # Python: only scores and boxes are needed, computed as it computes them
            scores = outputs.logits.float().sigmoid().amax(-1).cpu()
            boxes = center_to_corners_format(outputs.pred_boxes.float()).cpu()
            boxes = boxes * torch.tensor([width, height, width, height], dtype=boxes.dtype)
            for row, index in enumerate(chunk):
                found = np.clip(boxes[row].numpy(), 0, [width, height, width, height])
                order = np.argsort(-scores[row].numpy(), kind="stable")
                out[index] = (scores[row].numpy()[order], found[order])
        return out

    def _best(self, image: np.ndarray, found: tuple[np.ndarray, np.ndarray]) -> tuple[float, list[float]]:
        """(best score, box) of one query; score 0 (and the whole image) when nothing passes the text threshold."""
        scores, boxes = found
        if len(scores) == 0:
            return 0.0, [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]
        return float(scores[0]), [float(v) for v in boxes[0]]

    def locate_batch(self, items: Sequence[tuple]) -> list[list[Detection] | GroundingMiss]:
        """Per (inputs, names): the best box of every name, or GroundingMiss for the first name not found. All the
        micro-batch's (image, name) queries go through the model together."""
        queries = [(inputs.image, name) for inputs, names in items for name in names]
        found = iter(self.detections(queries))
        out: list = []
        for inputs, names in items:
            detections: list[Detection] = []
            miss = None
            for name in names:
                score, box = self._best(inputs.image, next(found))
                if miss is None and (score < self.box_threshold or box[2] - box[0] < 1 or box[3] - box[1] < 1):
                    miss = GroundingMiss(
                        "object_not_found", f"{name!r}: best box score {score:.3f} < {self.box_threshold}"
                    )
                detections.append(Detection(name=name, box=box, score=score))
            out.append(miss or detections)
        return out

    def locate(self, inputs, names: list[str]) -> list[Detection]:
        """One image's `locate_batch`, raising its GroundingMiss."""
        found = self.locate_batch([(inputs, names)])[0]
        if isinstance(found, GroundingMiss):
            raise found
        return found

    def locate_all(self, inputs, name: str, limit: int = 8, overlap: float = 0.5) -> list[Detection]:
        """Every instance of `name` (pose: all the people): boxes over the threshold, overlapping ones suppressed
        (IoU > overlap), at most `limit`, best first."""
        scores, boxes = self.detections([(inputs.image, name)])[0]
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

    def confidence_batch(self, queries: Sequence[tuple[np.ndarray, str]]) -> list[float]:
        """How surely each name is in its image (the detector gate: removed objects must fall, added ones rise)."""
        return [self._best(q[0], found)[0] for q, found in zip(queries, self.detections(queries), strict=True)]


class MMGroundingDINO(GroundingDINO):
    """MM-Grounding-DINO: Grounding DINO retrained in the open by OpenMMLab, its contrastive class head improved and
    the decoder's parameter sharing removed; Grounding DINO's processor, outputs and thresholds."""

    model_class = "MMGroundingDinoForObjectDetection"


def iou(a, b) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
