"""Decoding untrusted images into RGB arrays (or a reject reason), fitting them to aspect-ratio buckets, encoding
members.

Buckets are the (width, height) shapes a pipeline makes images in, so that images keep their shape: a pipeline names
them (`pipeline.buckets`, about `image_size`² pixels each), or its one bucket is the `image_size` square. An input
image goes to the bucket nearest its aspect ratio (`nearest_bucket`, `fit_to_bucket`); an image the pipeline draws
itself (a scene, a text-to-image input, a prompt-to-prompt pair) gets a bucket drawn from its sample's seed
(`draw_bucket`), so a rerun draws the same.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from datagen.errors import Reject

MIN_SIDE = 16
Bucket = tuple[int, int]
"""(width, height) in pixels."""


class BadImage(Reject):
    """An input image that cannot become a sample; `reason` is the short code counted in the stats."""


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Bytes of any common format -> HxWx3 uint8 RGB, or BadImage with a reason.

    EXIF rotation is applied; alpha is composited on white; palette, CMYK, 16-bit and greyscale are converted;
    animated images give their first frame; images over max_pixels are refused before decoding.
    """
    if not data:
        raise BadImage("empty_file", "zero bytes")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(data, max_pixels)
            width, height = image.size
            if width * height > max_pixels:
                raise BadImage("image_too_large", f"{width}x{height} exceeds max_image_pixels={max_pixels}")
            if min(width, height) < MIN_SIDE:
                raise BadImage("image_too_small", f"{width}x{height}, need at least {MIN_SIDE} px a side")
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage("image_too_large", str(e)) from None
    except UnidentifiedImageError:
        raise BadImage("not_an_image", "no known image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow spells it both "image file is truncated" and "Truncated File Read" (header cut short).
        reason = "image_truncated" if "truncated" in str(e).lower() else "image_corrupt"
        raise BadImage(reason, str(e)) from None


_PIXEL_LIMIT = threading.Lock()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Image.open with Pillow's own bomb check (it runs inside open) at the configured limit. Pillow's limit is one
    for the whole process, shared by the input-loading threads and every other reader in it: it is set under a lock
    and put back, so nothing else decodes under ours."""
    with _PIXEL_LIMIT:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max(max_pixels, 1)
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if "transparency" in image.info and mode in ("RGB", "L", "1"):  # a tRNS colour key marks see-through pixels
        image = image.convert("RGBA")
    elif mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("LA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def bucket_list(size: int | Sequence[Sequence[int]]) -> list[Bucket]:
    """The buckets a source was given: a list of (width, height), or an int for one square of that side."""
    if isinstance(size, int):
        return [(size, size)]
    return [(int(width), int(height)) for width, height in size]


def nearest_bucket(width: int, height: int, buckets: Sequence[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is nearest `width / height`, by the distance of their logarithms (so 2:1 and
    1:2 are equally far from 1:1); a tie goes to the bucket listed first."""
    ratio = math.log(width / height)
    # rounded: log(3/2) and -log(2/3) differ in their last bits, and a tie must stay a tie
    return min(buckets, key=lambda bucket: round(abs(math.log(bucket[0] / bucket[1]) - ratio), 9))


def draw_bucket(seed: int, buckets: Sequence[Bucket]) -> Bucket:
    """The bucket an image drawn for the sample of `seed` is drawn in: uniform over the buckets, from the seed alone
    (its own stream: the sample's other draws stay as they were). One bucket draws nothing."""
    if len(buckets) == 1:
        return buckets[0]
    return buckets[int(np.random.default_rng([seed, 0xB0C]).integers(len(buckets)))]


def fit_to_bucket(array: np.ndarray, bucket: Bucket, nearest: bool = False) -> np.ndarray:
    """Resize to cover the (width, height) bucket, keeping the aspect ratio, and centre-crop to it (nearest for
    masks, so a mask follows its image pixel for pixel)."""
    width, height = bucket
    old_h, old_w = array.shape[:2]
    scale = max(width / old_w, height / old_h)
    new_w, new_h = max(width, round(old_w * scale)), max(height, round(old_h * scale))
    if (new_w, new_h) != (old_w, old_h):
        interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        array = cv2.resize(array, (new_w, new_h), interpolation=interp)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(array[top : top + height, left : left + width])


def fit_square(array: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize the short side to `size` and centre-crop to size x size (nearest for masks)."""
    return fit_to_bucket(array, (size, size), nearest)


def encode(array: np.ndarray, fmt: str, quality: int = 95, png_compression: int = 1) -> bytes:
    """RGB (HxWx3) or single-channel (HxW) uint8 -> encoded bytes; deterministic for equal input."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    elif fmt == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif fmt == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    ok, buffer = cv2.imencode(f".{fmt}", array, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {array.shape} image as {fmt}")
    return buffer.tobytes()


def decode_member(data: bytes) -> np.ndarray:
    """Bytes of a member we wrote -> array (RGB for colour images, HxW for masks)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise BadImage("image_corrupt", "OpenCV could not decode the member")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if array.ndim == 3 else array
