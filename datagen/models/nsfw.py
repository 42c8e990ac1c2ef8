"""The nsfw role: how likely each image shows nudity, for the curate phase's gate.

Backend `nudenet`: NudeNet's 320n detector (18 body-part classes, exposed and covered), ONNX weights shipped inside
the `nudenet` wheel (MIT), run on the CPU by onnxruntime: real weights on every pipeline and in CI, nothing to
fetch. An image's score is the highest confidence of a detection of one of the gated classes (the role's
`classes`, by default the exposed ones NudeNet's own censoring uses); 0 when none is found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datagen.models.batching import Counted
from datagen.models.options import NSFW_GATED


class NudeNetScorer(Counted):
    """NudeNet's 320n detector; `score_batch(images)` -> each image's highest confidence per class found."""

    def __init__(self, spec, options=None, **_context: Any):
        self.spec = spec
        self.options = options
        self.model_id = "nudenet:320n"
        self.classes = tuple(options.classes) if options is not None else NSFW_GATED
        self._detector = None

    def load(self) -> None:
        if self._detector is not None:
            return
        import nudenet

        weights = Path(nudenet.__file__).parent / "320n.onnx"
        if not weights.is_file():
            raise FileNotFoundError(f"the nudenet wheel lacks its detector, {weights}")
        self._detector = nudenet.NudeDetector(model_path=str(weights))
        threads = self.options.threads if self.options is not None else None
        if threads:  # the library builds its session with onnxruntime's defaults: rebuild it with the threads asked
            import onnxruntime

            settings = onnxruntime.SessionOptions()
            settings.intra_op_num_threads = settings.inter_op_num_threads = threads
            self._detector.onnx_session = onnxruntime.InferenceSession(
                str(weights), settings, providers=["CPUExecutionProvider"]
            )

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """Each image's (RGB uint8) detections as class -> highest confidence; counted as one batch."""
        self.load()
        self.counted(len(images))
        out = []
        for image in images:
            bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])  # as the library reads a file (cv2.imread)
            found: dict[str, float] = {}
            for detection in self._detector.detect(bgr):
                name, score = detection["class"], round(float(detection["score"]), 4)
                found[name] = max(found.get(name, 0.0), score)
            out.append(dict(sorted(found.items())))
        return out

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]:
        """Each image's nsfw score: the highest confidence among the gated classes, 0 where none is found."""
        return [
            max((v for k, v in found.items() if k in self.classes), default=0.0) for found in self.detect_batch(images)
        ]
