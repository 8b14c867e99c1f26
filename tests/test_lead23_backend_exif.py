"""The ML backend reads an image fetched from a task's URL as Label Studio's browser shows it: a JPEG with an
EXIF orientation tag is displayed rotated / flipped, so the boxes the backend answers with (percent of the shown
image) must be computed on that view, not on the coded pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps

from radloop.app.backend_fetch import _as_displayed
from radloop.core.render import decode_upload

TO_CODED = {2: PILImage.Transpose.FLIP_LEFT_RIGHT, 3: PILImage.Transpose.ROTATE_180,
            4: PILImage.Transpose.FLIP_TOP_BOTTOM, 5: PILImage.Transpose.TRANSPOSE,
            6: PILImage.Transpose.ROTATE_90, 7: PILImage.Transpose.TRANSVERSE, 8: PILImage.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", [1, *TO_CODED])
def test_fetched_pixels_are_the_displayed_view(orientation):
    display = np.full((90, 60), 20, np.uint8)
    display[50:80, 35:55] = 230
    shown = PILImage.fromarray(display)
    coded = shown if orientation == 1 else shown.transpose(TO_CODED[orientation])
    exif = coded.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    coded.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    body = buffer.getvalue()
    browser_view = np.asarray(ImageOps.exif_transpose(PILImage.open(io.BytesIO(body))).convert("L"))

    pixels = _as_displayed(decode_upload(body), body)

    assert pixels.shape == (90, 60)
    assert np.array_equal(pixels > 128, browser_view > 128)
    assert np.array_equal(pixels > 128, display > 128)


def test_a_png_without_exif_is_left_as_decoded():
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    assert np.array_equal(_as_displayed(decode_upload(buffer.getvalue()), buffer.getvalue()), pixels)
