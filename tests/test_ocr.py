"""The ocr role with real weights (PP-OCRv4 from the rapidocr-onnxruntime wheel) on real photos (scikit-image's),
and the glyph geometry the text task draws with: what is read, where, and how well."""

from __future__ import annotations

import numpy as np
import pytest

from datagen import glyphs
from datagen.models.ocr import RapidOCRReader, TextLine, as_printed, edit_distance, ned_similarity, normalise
from datagen.models.tesseract import installed
from datagen.text_photos import text_photos


@pytest.fixture(scope="module")
def reader() -> RapidOCRReader:
    reader = RapidOCRReader(None)
    reader.load()
    return reader


@pytest.fixture(scope="module")
def photos():
    return text_photos(28, seed=0)


@pytest.fixture(scope="module")
def reads(reader, photos):
    return reader.read_batch([p.image for p in photos])


def _coverage(line: TextLine, quad, shape) -> float:
    found, drawn = glyphs.quad_mask(shape, line.quad) > 0, glyphs.quad_mask(shape, quad) > 0
    return float((found & drawn).sum() / drawn.sum())


def test_strings_are_compared_as_ocr_benchmarks_compare_them():
    assert normalise(" Open\tDaily ") == "opendaily"
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    assert ned_similarity("OPENDAILY", "OPEN DAILY") == 1.0, "spaces are not counted (detectors drop them)"
    assert ned_similarity("useum", "Museum") == pytest.approx(1 - 1 / 6)
    assert ned_similarity("", "") == 1.0 and ned_similarity("abc", "") == 0.0


def test_the_real_ocr_reads_the_photographed_page(reader):
    import skimage.data

    page = np.stack([skimage.data.page()] * 3, axis=-1)
    lines = reader.read(page)
    assert lines[0].text == "Region-basedsegmentation" and lines[0].confidence > 0.9
    assert len(lines) >= 4 and all(line.height > 10 for line in lines)
    assert [line.quad[0][1] for line in lines] == sorted(line.quad[0][1] for line in lines), "top to bottom"
    assert reader.calls == 1 and reader.items == 1


def test_lines_drawn_on_real_photos_are_found_where_they_were_drawn(reads, photos):
    found = []
    for photo, lines in zip(photos, reads, strict=True):
        best = max(lines, key=lambda line: _coverage(line, photo.line.quad, photo.image.shape), default=None)
        hit = best is not None and _coverage(best, photo.line.quad, photo.image.shape) > 0.5
        found.append((photo.line.height, hit, ned_similarity(best.text, photo.line.text) if hit else 0.0))
    tall = [hit for height, hit, _ in found if height >= 16]
    assert sum(tall) / len(tall) >= 0.9, found
    read_right = [ned for _, hit, ned in found if hit]
    assert np.mean(read_right) >= 0.85 and sum(ned == 1.0 for ned in read_right) >= len(found) // 2, found


def test_a_line_round_trips_through_its_dict():
    line = TextLine.of([[1, 2], [30, 2], [30, 14], [1, 14]], "SALE", 0.987654)
    assert TextLine.from_dict(line.as_dict()) == line and line.height == 12.0


def test_the_glyphs_colour_and_font_are_recovered_from_the_pixels(photos):
    """On most lines (a white line on scikit-image's colour wheel is the hard case) the colour comes back within
    40/255 and the best font's rendering covers the ink; the font found always overlaps at least as well as the
    font the line was drawn in."""
    results = []
    for photo in photos:
        if photo.line.height < 24:
            continue
        seen = glyphs.read_glyphs(photo.image, photo.line.quad, photo.line.text)
        drawn = glyphs.read_glyphs(photo.image, photo.line.quad, photo.line.text, (photo.line.font,))
        assert seen.overlap >= drawn.overlap, (photo.name, seen, drawn)
        close = np.abs(np.subtract(seen.colour, photo.line.colour)).max() <= 40
        results.append((photo.name, close, seen.overlap > 0.4))
    assert len(results) >= 10
    assert sum(close for _, close, _ in results) >= 0.8 * len(results), results
    assert sum(covers for _, _, covers in results) >= 0.8 * len(results), results


def test_a_string_drawn_into_a_quad_stays_inside_it_at_its_angle():
    image = np.full((120, 200, 3), 200, np.uint8)
    quad = glyphs.line_quad((100, 60), 120, 30, 10.0)
    out, ink = glyphs.draw(image, quad, "HELLO", "dejavu-sans-bold", (10, 10, 10))
    inside = glyphs.quad_mask(image.shape, quad, dilate=2) > 0
    assert ink.any() and not (ink & ~inside).any()
    assert (out[~inside] == 200).all(), "nothing outside the box changes"
    assert abs(glyphs.geometry(quad).angle - 10.0) < 1e-3 and round(glyphs.geometry(quad).height) == 30


def test_a_line_as_printed_takes_the_second_readings_gaps_and_where_the_letters_agree_its_case():
    assert as_printed("BusStop", "Bus Stop") == "Bus Stop"
    assert as_printed("Post office", "Post Office") == "Post Office", "the same letters: the reread's case"
    assert as_printed("GardenCafe", "| Garden Cafe |") == "Garden Cafe"
    # letters that differ: the OCR's letters, with the gaps where the two line up, and its own spaces kept
    assert as_printed("Open24h", "0pen 24h") == "Open 24h"
    assert as_printed("No Entry", "NoEntrv") == "No Entry"
    assert as_printed("HOTEL", "") == "HOTEL" and as_printed("HOTEL", "hotel") == "hotel"


@pytest.mark.skipif(installed() is None, reason="Tesseract (the reader role) is not installed: `make install-ocr`")
def test_lines_keep_their_word_gaps_in_several_fonts():
    """PP-OCRv4 drops the gaps between Latin words; the look takes them from the independent reader, so the writer
    quotes the line as printed. Multi-word signs in four fonts (three shipped, one held out where installed)."""
    from datagen import models
    from datagen.config import RoleSpec
    from datagen.generators.text import TextRender
    from datagen.text_photos import sign_photos

    reader = models.build("reader", RoleSpec(backend="tesseract"))
    signs = [p for p in sign_photos(24, seed=3, square=512) if " " in p.line.text]
    images = [p.image for p in signs]
    for photo, font in zip(text_photos(8, seed=5, square=512, heights=(40,)), glyphs.FONTS[:4], strict=False):
        quad = glyphs.line_quad((256, 256), glyphs.text_width("Fresh Coffee", font, 40), 40 / 0.84, 0)
        images.append(glyphs.draw(photo.clean, quad, "Fresh Coffee", font, (255, 255, 255), fit="keep")[0])
    args = TextRender.Args.parse({}, "task file")
    looked = TextRender.look(args, {"ocr": RapidOCRReader(None), "reader": reader}, images)
    spaced = [
        line["text"] for seen in looked if isinstance(seen, dict) for line in seen["text_lines"] if " " in line["text"]
    ]
    assert len(spaced) >= 0.8 * len(images), spaced
    assert all(line["ocr_text"] for seen in looked if isinstance(seen, dict) for line in seen["text_lines"])


def test_a_recolouring_the_template_writer_asks_for_reads_on_the_sign_and_is_another_colour():
    """Cream letters on a dark green plate: a recolour in black (2.5:1 on the plate, which a reader reads as nothing)
    or in white (the letters' own colour, no edit) is never asked for; the colours that read on it are."""
    from datagen.config import RoleSpec
    from datagen.resolve import load_run
    from datagen.scenes import COLORS
    from datagen.sources import SourceItem
    from datagen.template_writer import TemplateWriter

    plate = np.zeros((256, 256, 3), np.uint8) + np.array([20, 90, 50], np.uint8)
    quad = glyphs.line_quad((128, 128), 200, 48, 0)
    image = glyphs.draw(plate, quad, "Bus Stop", glyphs.FONTS[0], (255, 240, 200), fit="keep")[0]
    assert glyphs.line_colours(image, quad)[0] == (20, 90, 50)
    prompt = load_run(
        "text", "local", out="/nonexistent-never-written", n=1,
        overrides=["prompt.templates.choices.line_modes=[restyle]"],
    ).prompt  # fmt: skip
    line = {"quad": [list(map(float, p)) for p in quad], "text": "Bus Stop", "confidence": 0.99, "height": 48}
    item = SourceItem(ref={}, caption="a sign", objects=[], image=image, text_lines=[line])
    writes = TemplateWriter(RoleSpec(backend="template"), prompt).write_batch([item] * 60, list(range(60)))
    asked = {w["text_color"] for w in writes if w.get("text_color")}
    # of the nine offered, red, green, blue, purple and black contrast under 3:1 with the plate; white is the ink
    assert set(prompt.templates.choices["text_colors"]) <= set(COLORS)
    assert asked == {"yellow", "orange", "pink"}, asked
