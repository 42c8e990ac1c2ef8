"""Unit tests for datagen.images: decoding untrusted bytes, fitting to a square, encoding members.

Every input is built here with Pillow/numpy (or by hand for the PNG bomb); nothing is read from disk or the network.
"""

from __future__ import annotations

import io
import resource
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from datagen.images import MIN_SIDE, BadImage, decode_image, decode_member, encode, fit_square

MAX = 1_000_000
"""A max_pixels generous enough for every small test image."""


def save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(height: int = 64, width: int = 64, seed: int = 0) -> Image.Image:
    """Random RGB content, so that compressed streams are long and a cut lands inside pixel data."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def reason_of(data: bytes, max_pixels: int = MAX) -> str:
    with pytest.raises(BadImage) as info:
        decode_image(data, max_pixels)
    assert str(info.value).startswith(info.value.reason)
    return info.value.reason


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bilevel_png(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG built chunk by chunk, so the huge image is never held in memory here."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = bilevel_png(20_000, 20_000)
    assert len(data) < 200_000  # 400 megapixels in a file this small is what makes it a bomb
    return data


# --- rejects -------------------------------------------------------------------------------------------------------


def test_zero_bytes_is_empty_file():
    assert reason_of(b"") == "empty_file"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_cut_in_half_is_truncated(fmt):
    data = save(noise(), fmt)
    assert decode_image(data, MAX).shape == (64, 64, 3)  # the whole file is fine
    assert reason_of(data[: len(data) // 2]) in ("image_truncated", "image_corrupt")


def test_truncated_reasons_are_the_truncated_code():
    # Cut inside the pixel data ("image file is truncated") and inside the JPEG header ("Truncated File Read").
    png, jpeg = save(noise(), "PNG"), save(noise(), "JPEG")
    assert reason_of(png[: len(png) // 2]) == "image_truncated"
    assert reason_of(jpeg[: len(jpeg) // 2]) == "image_truncated"
    assert reason_of(jpeg[:100]) == "image_truncated"


def test_random_bytes_are_not_an_image():
    data = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert reason_of(data) == "not_an_image"


def test_text_is_not_an_image():
    assert reason_of(b"<html><body>404 Not Found</body></html>\n" * 20) == "not_an_image"
    assert reason_of("légende : un vélo rouge\n".encode()) == "not_an_image"


def test_decompression_bomb_fails_fast_without_decoding(bomb, monkeypatch):
    loads = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self):
        loads.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(BadImage) as info:
        decode_image(bomb, 50_000_000)
    elapsed = time.perf_counter() - start
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib

    assert info.value.reason == "image_too_large"
    assert "400000000" in info.value.detail  # 20000 x 20000, read from the header
    assert elapsed < 2.0
    assert loads == []  # pixel data never decoded
    assert grown_kib < 100 * 1024  # decoding would need 400 MB (L) to 1.2 GB (RGB)


def test_bomb_between_one_and_two_times_the_limit_is_too_large(bomb):
    # Pillow only warns (not errors) between MAX_IMAGE_PIXELS and twice that; the warning must still reject.
    assert reason_of(bomb, max_pixels=250_000_000) == "image_too_large"


def test_valid_image_over_max_pixels_is_too_large():
    data = save(noise(300, 300), "PNG")
    assert reason_of(data, max_pixels=10_000) == "image_too_large"
    assert reason_of(data, max_pixels=300 * 300 - 1) == "image_too_large"
    assert decode_image(data, max_pixels=300 * 300).shape == (300, 300, 3)  # exactly at the limit is allowed


def test_tiny_image_is_too_small():
    assert reason_of(save(noise(8, 8), "PNG")) == "image_too_small"
    assert reason_of(save(noise(MIN_SIDE - 1, 200), "PNG")) == "image_too_small"  # one short side is enough
    assert decode_image(save(noise(MIN_SIDE, MIN_SIDE), "PNG"), MAX).shape == (MIN_SIDE, MIN_SIDE, 3)


# --- conversions ---------------------------------------------------------------------------------------------------


def test_rgb_png_is_exact():
    image = noise(40, 56)
    out = decode_image(save(image, "PNG"), MAX)
    assert out.dtype == np.uint8 and out.shape == (40, 56, 3)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, np.asarray(image))


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # no cyan/black, full magenta+yellow = red
    data = save(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data, MAX)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    red, green, blue = (int(v) for v in out[12, 16])
    assert red > 230 and green < 30 and blue < 30


def test_16_bit_greyscale_is_scaled_to_8_bit():
    gradient = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (20, 1))  # 20 rows, 256 columns
    data = save(Image.fromarray(gradient), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data, MAX)
    assert out.shape == (20, 256, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    row = out[0, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0)  # monotone
    assert np.abs(row - np.arange(256)).max() <= 1  # linear 0..65535 -> 0..255
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_palette_transparency_is_white():
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([200, 30, 40] + [0, 0, 255] + [0] * (254 * 3))
    palette.paste(1, (0, 0, 16, 32))  # left half uses index 1, which is declared transparent
    data = save(palette, "PNG", transparency=1)
    out = decode_image(data, MAX)
    assert out.shape == (32, 32, 3)
    assert np.all(out[:, :16] == 255)
    assert np.all(out[:, 16:] == (200, 30, 40))


def test_rgba_transparent_region_is_white():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = (10, 200, 60)
    rgba[..., 3] = 255
    rgba[:, :16, 3] = 0
    rgba[:, 16:20, 3] = 128  # half transparent blends towards white
    out = decode_image(save(Image.fromarray(rgba, "RGBA"), "PNG"), MAX)
    assert np.all(out[:, :16] == 255)
    assert np.all(out[:, 20:] == (10, 200, 60))
    blend = out[0, 17].astype(int)
    assert np.all(np.abs(blend - (np.array([10, 200, 60]) + 255) / 2) <= 2)


def test_la_transparent_region_is_white():
    la = np.zeros((32, 32, 2), np.uint8)
    la[..., 0] = 50
    la[..., 1] = 255
    la[:16, :, 1] = 0  # top half transparent
    data = save(Image.fromarray(la, "LA"), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "LA"
    out = decode_image(data, MAX)
    assert np.all(out[:16] == 255)
    assert np.all(out[16:] == 50)


def test_animated_gif_gives_first_frame():
    first, second = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    data = save(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = decode_image(data, MAX)
    assert out.shape == (32, 32, 3)
    assert np.all(out == (255, 0, 0))


def exif_jpeg(orientation: int) -> bytes:
    """20 high x 40 wide: left half red, right half blue, with an EXIF Orientation tag."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)


def is_red(pixel) -> bool:
    return pixel[0] > 200 and pixel[2] < 60


def is_blue(pixel) -> bool:
    return pixel[2] > 200 and pixel[0] < 60


def test_exif_orientation_6_rotates_clockwise():
    out = decode_image(exif_jpeg(6), MAX)
    assert out.shape == (40, 20, 3)
    # Turning clockwise puts the stored left (red) half on top.
    assert is_red(out[5, 10]) and is_blue(out[34, 10])


def test_exif_orientation_8_rotates_counter_clockwise():
    out = decode_image(exif_jpeg(8), MAX)
    assert out.shape == (40, 20, 3)
    assert is_blue(out[5, 10]) and is_red(out[34, 10])


def test_exif_orientation_1_is_untouched():
    out = decode_image(exif_jpeg(1), MAX)
    assert out.shape == (20, 40, 3)
    assert is_red(out[10, 5]) and is_blue(out[10, 34])


def test_greyscale_gives_three_equal_channels():
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (24, 1))  # 24 x 32
    out = decode_image(save(Image.fromarray(grey, "L"), "PNG"), MAX)
    assert out.shape == (24, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], grey)


def test_bilevel_png_gives_black_and_white():
    pixels = np.zeros((20, 20), bool)
    pixels[:, 10:] = True
    out = decode_image(save(Image.fromarray(pixels).convert("1"), "PNG"), MAX)
    assert np.all(out[:, :10] == 0) and np.all(out[:, 10:] == 255)


# --- fit_square ----------------------------------------------------------------------------------------------------


def test_fit_square_downscales_short_side_and_centre_crops():
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, 100:200] = 255  # centre third white, the sides black
    out = fit_square(wide, 50)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    assert np.all(out[:, 2:-2] == 255)  # the crop keeps the centre third only


def test_fit_square_tall_image_keeps_the_middle():
    tall = np.zeros((300, 100), np.uint8)
    tall[:100] = 10
    tall[100:200] = 20
    tall[200:] = 30
    out = fit_square(tall, 100)
    assert out.shape == (100, 100)
    assert np.all(out == 20)


def test_fit_square_upscales_small_images():
    small = np.full((20, 30, 3), 77, np.uint8)
    out = fit_square(small, 64)
    assert out.shape == (64, 64, 3)
    assert np.all(out == 77)


def test_fit_square_same_size_is_a_copy_not_resized():
    square = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fit_square(square, 32), square)


def test_fit_square_nearest_keeps_masks_binary():
    mask = np.zeros((90, 130), np.uint8)
    mask[20:70, 30:100] = 255
    for size in (32, 64, 200):
        out = fit_square(mask, size, nearest=True)
        assert out.shape == (size, size)
        assert set(np.unique(out).tolist()) == {0, 255}
    smooth = fit_square(mask, 200)  # cubic upscaling would invent in-between values at the edges
    assert len(np.unique(smooth)) > 2


# --- encode / decode_member ----------------------------------------------------------------------------------------


def test_png_round_trip_is_exact_for_rgb_and_masks():
    rgb = np.random.default_rng(5).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)  # channel order must survive (OpenCV is BGR inside)
    back = decode_member(encode(rgb, "png"))
    np.testing.assert_array_equal(back, rgb)
    assert tuple(back[0, 0]) == (255, 0, 0)

    mask = (np.random.default_rng(6).random((24, 40)) > 0.5).astype(np.uint8) * 255
    back = decode_member(encode(mask, "png"))
    assert back.shape == (24, 40)
    np.testing.assert_array_equal(back, mask)


def test_png_is_readable_by_pillow_with_the_same_colours():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 250
    rgb[..., 2] = 5
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode(rgb, "png")))), rgb)


def test_jpg_round_trip_is_close():
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2, np.full_like(x, 30), y * 3], axis=2).astype(np.uint8)  # smooth, so JPEG does well
    data = encode(rgb, "jpg", quality=95)
    assert data[:2] == b"\xff\xd8"
    back = decode_member(data)
    assert back.shape == rgb.shape and back.dtype == np.uint8
    error = np.abs(back.astype(int) - rgb.astype(int))
    assert error.mean() < 2.0 and error.max() <= 12
    assert back[0, 95, 0] > 170 and back[63, 0, 2] > 170 and abs(int(back[32, 48, 1]) - 30) <= 4  # RGB, not BGR


def test_quality_changes_jpg_size():
    rgb = np.asarray(noise(64, 64, seed=9))
    assert len(encode(rgb, "jpg", quality=30)) < len(encode(rgb, "jpg", quality=95))


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_encoding_is_deterministic(fmt):
    rgb = np.asarray(noise(48, 48, seed=11))
    first, second = encode(rgb, fmt), encode(rgb.copy(), fmt)
    assert first == second
    assert decode_member(first).shape == (48, 48, 3)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown image format"):
        encode(np.zeros((4, 4, 3), np.uint8), "gif")


def test_undecodable_member_is_corrupt():
    with pytest.raises(BadImage) as info:
        decode_member(b"not an image at all")
    assert info.value.reason == "image_corrupt"
