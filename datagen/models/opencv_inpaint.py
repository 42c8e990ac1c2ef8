"""Classical inpainting with OpenCV (Telea's fast marching or Navier-Stokes)."""

from __future__ import annotations

import cv2
import numpy as np

from datagen.config import ConfigError, RoleSpec

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


class OpenCVInpainter:
    def __init__(self, spec: RoleSpec, **_):
        self.method = str(spec.args.get("method", "telea"))
        self.radius = spec.args.get("radius", 5)
        if self.method not in METHODS:
            raise ConfigError(f"roles.inpaint.args.method: {self.method!r}; allowed: {', '.join(METHODS)}")
        if not isinstance(self.radius, int | float) or not 1 <= self.radius <= 50:
            raise ConfigError(f"roles.inpaint.args.radius: {self.radius!r}; allowed: a number in [1, 50]")
        self.model_id = f"opencv-{cv2.__version__}:{self.method}:r{self.radius}"

    def load(self) -> None:
        cv2.setNumThreads(1)  # one sample per core; also keeps results independent of thread count

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str = "", seed: int = 0) -> np.ndarray:
        """Fill the pixels where mask is set from their surroundings; other pixels are returned unchanged."""
        binary = (mask > 0).astype(np.uint8) * 255
        return cv2.inpaint(image, binary, float(self.radius), METHODS[self.method])
