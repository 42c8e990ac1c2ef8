"""Classical inpainting with OpenCV (Telea's fast marching or Navier-Stokes)."""

from __future__ import annotations

import cv2
import numpy as np

from datagen.config import RoleSpec
from datagen.models.batching import Counted
from datagen.models.options import OpenCVOptions

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


class OpenCVInpainter(Counted):
    follows_prompt = False
    reads_glyph_template = False

    def __init__(self, spec: RoleSpec, options: OpenCVOptions | None = None, **_):
        options = options or OpenCVOptions.parse(spec.args, "inpaint")
        self.method, self.radius = options.method, options.radius
        self.model_id = f"opencv-{cv2.__version__}:{self.method}:r{self.radius}"

    def load(self) -> None:
        cv2.setNumThreads(1)  # one sample per core; also keeps results independent of thread count

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str = "", seed: int = 0) -> np.ndarray:
        """Fill the pixels where mask is set from their surroundings; other pixels are returned unchanged."""
        binary = (mask > 0).astype(np.uint8) * 255
        return cv2.inpaint(image, binary, float(self.radius), METHODS[self.method])

    def inpaint_batch(self, images, masks, prompts, seeds) -> list[np.ndarray]:
        """`inpaint` of every item (the prompts and seeds of a classical method change nothing)."""
        self.counted(len(images))
        return [self.inpaint(image, mask) for image, mask in zip(images, masks, strict=True)]
