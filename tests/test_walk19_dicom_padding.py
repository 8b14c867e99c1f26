"""Walk 19: Pixel Padding Value (PS3.3 C.7.5.1.1.2) is no image.

A CR padded outside its collimation with Pixel Padding Value 0 in MONOCHROME1 rendered the padding as the
brightest thing in the image, and the padding took part in the automatic window (the anatomy lost contrast).
Now the padding is shown black and left out of the window's percentiles, in the float and in the uint8 path.
"""

from __future__ import annotations

import numpy as np
import pytest

from dicom_synthetic import synthetic_dataset

from radloop.core.dicom_io import read_dicom
from radloop.core.render import to_uint8

ROWS, COLUMNS, PADDED = 48, 64, 24  # the first PADDED columns are padding
_y, _x = np.mgrid[0:ROWS, 0:COLUMNS]
#: 12-bit MONOCHROME2 anatomy: a bright disc on a darker ramp, 300..3060
ANATOMY = (300 + 2500 * (((_x - 40) ** 2 + (_y - 24) ** 2) < 15 ** 2) + 4 * _x).astype(np.uint16)


def _read(path, words, **attributes):
    synthetic_dataset(words, **attributes).save_as(path, enforce_file_format=True)
    return read_dicom(path).pixels, read_dicom(path, as_uint8=True).pixels


@pytest.mark.parametrize("photometric, stored, padding_value, extra", [
    ("MONOCHROME1", 4095 - ANATOMY, 0, {}),  # padding 0 would be white in MONOCHROME1
    ("MONOCHROME2", ANATOMY, 4095, {}),  # padding 4095 would be white in MONOCHROME2
    ("MONOCHROME2", ANATOMY, 4095, {"PixelPaddingRangeLimit": 4090}),
])
def test_padding_is_black_and_left_out_of_the_automatic_window(tmp_path, photometric, stored, padding_value,
                                                               extra):
    reference, _ = _read(tmp_path / "reference.dcm", ANATOMY[:, PADDED:].copy())
    padded = stored.copy()
    padded[:, :PADDED] = padding_value
    if extra:
        padded[::2, :PADDED] = extra["PixelPaddingRangeLimit"]  # inside the padding range too
    pixels, pixels_uint8 = _read(tmp_path / "padded.dcm", padded, PhotometricInterpretation=photometric,
                                 PixelPaddingValue=padding_value, **extra)
    assert pixels[:, :PADDED].max() == 0.0 and pixels_uint8[:, :PADDED].max() == 0
    # the anatomy is windowed as if the padding were not there
    assert np.abs(pixels[:, PADDED:] - reference).max() < 0.02
    assert np.array_equal(pixels_uint8, to_uint8(pixels))


def test_padding_value_absent_from_the_image_changes_nothing(tmp_path):
    plain, plain_uint8 = _read(tmp_path / "plain.dcm", ANATOMY)
    declared, declared_uint8 = _read(tmp_path / "declared.dcm", ANATOMY, PixelPaddingValue=4095)
    assert np.array_equal(plain, declared) and np.array_equal(plain_uint8, declared_uint8)


def test_signed_padding_with_a_rescale(tmp_path):
    stored = ANATOMY.astype(np.int16) - 2048
    stored[:, :PADDED] = -2048 - 1000
    reference, _ = _read(tmp_path / "reference.dcm", (ANATOMY[:, PADDED:].astype(np.int16) - 2048), signed=True,
                         RescaleSlope=2, RescaleIntercept=100)
    pixels, pixels_uint8 = _read(tmp_path / "padded.dcm", stored, bits=16, signed=True, RescaleSlope=2,
                                 RescaleIntercept=100, PixelPaddingValue=-3048)
    assert pixels[:, :PADDED].max() == 0.0 and pixels_uint8[:, :PADDED].max() == 0
    assert np.abs(pixels[:, PADDED:] - reference).max() < 0.02
    assert np.array_equal(pixels_uint8, to_uint8(pixels))


def test_an_image_that_is_all_padding_still_renders(tmp_path):
    pixels, pixels_uint8 = _read(tmp_path / "blank.dcm", np.zeros((16, 16), np.uint16), PixelPaddingValue=0)
    assert pixels.max() == 0.0 and pixels_uint8.max() == 0
