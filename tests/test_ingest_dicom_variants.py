"""DICOM encodings the real files do not cover, derived at test time from the real RG3 radiograph:
signed pixels with a rescale, a VOI LUT sequence, no Part 10 preamble, RGB."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from ingest_data import dicom_file
from radloop.core.dicom_io import read_dicom
from radloop.core.render import to_uint8


@pytest.fixture(scope="module")
def source():
    return dicom_file("RG3_UNCR.dcm")


@pytest.fixture(scope="module")
def reference(source):
    return read_dicom(source).pixels


def test_signed_pixels_with_rescale_render_like_the_original(source, reference, tmp_path):
    dataset = pydicom.dcmread(source)
    shifted = dataset.pixel_array.astype(np.int16) - 512  # same modality values after RescaleIntercept 512
    dataset.PixelRepresentation, dataset.PixelData = 1, shifted.tobytes()
    dataset.RescaleIntercept, dataset.RescaleSlope = 512, 1
    dataset.save_as(tmp_path / "signed.dcm")
    assert np.array_equal(read_dicom(tmp_path / "signed.dcm").pixels, reference)
    assert np.array_equal(read_dicom(tmp_path / "signed.dcm", as_uint8=True).pixels, to_uint8(reference))


def test_voi_lut_sequence_is_applied_before_the_window(source, tmp_path):
    dataset = pydicom.dcmread(source)
    item = Dataset()
    item.LUTDescriptor = [1024, 0, 16]
    item.LUTData = (np.arange(1024, dtype=np.uint16) * 64).tobytes()
    item["LUTData"].VR = "OW"
    dataset.VOILUTSequence = [item]
    dataset.WindowCenter, dataset.WindowWidth = 10, 5  # must be ignored: the LUT takes precedence
    dataset.save_as(tmp_path / "voi_lut.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "VOI LUT on a float input" warning: the LUT sees stored integers
        image = read_dicom(tmp_path / "voi_lut.dcm")
    stored = pydicom.dcmread(source).pixel_array.astype(np.float32)
    expected = 1.0 - stored * 64 / 65535  # linear LUT, then MONOCHROME1 inversion
    assert image.metadata.window_source == "voi_lut"
    assert np.abs(image.pixels - expected).max() < 1e-5
    assert np.array_equal(read_dicom(tmp_path / "voi_lut.dcm", as_uint8=True).pixels, to_uint8(image.pixels))


def test_dicom_without_part10_preamble_is_read(source, reference, tmp_path):
    dataset = pydicom.dcmread(source)
    dataset.preamble = None
    pydicom.dcmwrite(tmp_path / "no_preamble", dataset, enforce_file_format=False)
    assert (tmp_path / "no_preamble").read_bytes()[128:132] != b"DICM"
    assert np.array_equal(read_dicom(tmp_path / "no_preamble").pixels, reference)


def test_rgb_dicom_becomes_grayscale(source, tmp_path):
    dataset = pydicom.dcmread(source)
    gray = (dataset.pixel_array >> 2).astype(np.uint8)
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation, dataset.PlanarConfiguration = 3, "RGB", 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelData = np.stack([gray, gray, gray], axis=-1).tobytes()
    del dataset.WindowCenter, dataset.WindowWidth
    dataset.save_as(tmp_path / "rgb.dcm")
    image = read_dicom(tmp_path / "rgb.dcm", as_uint8=True)
    assert image.pixels.shape == gray.shape and image.pixels.dtype == np.uint8
    assert image.metadata.window_source == "percentile"
    assert np.corrcoef(image.pixels.ravel().astype(float), gray.ravel().astype(float))[0, 1] > 0.99
