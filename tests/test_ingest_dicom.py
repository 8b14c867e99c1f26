"""DICOM I/O and rendering on the real radiographs in ../shared/data/dicom_radiographs."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from conftest import data_path
from ingest_data import dicom_file, make_corrupt_dicoms
from radloop.core.dicom_io import read_dicom
from radloop.core.input_errors import (
    CorruptImageError, EmptyFileError, NoPixelDataError, NotDicomError, TruncatedFileError,
    UnsupportedFileError, UnsupportedTransferSyntaxError,
)
from radloop.core.render import encode_png_gray, read_raster, render_files, to_uint8


def _region_mean(pixels: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    height, width = pixels.shape
    return float(pixels[int(rows[0] * height):int(rows[1] * height), int(cols[0] * width):int(cols[1] * width)].mean())


def test_monochrome1_chest_renders_dark_lungs_and_bright_mediastinum():
    image = read_dicom(dicom_file("RG1_J2KI.dcm"))
    assert image.metadata.photometric == "MONOCHROME1"
    pixels = image.pixels
    right_lung = _region_mean(pixels, (0.25, 0.5), (0.15, 0.32))
    left_lung = _region_mean(pixels, (0.25, 0.5), (0.66, 0.83))
    mediastinum = _region_mean(pixels, (0.25, 0.6), (0.45, 0.55))
    assert mediastinum > right_lung + 0.1 and mediastinum > left_lung + 0.1
    # Without the MONOCHROME1 inversion the ordering flips: guard that the test can fail.
    assert (1 - mediastinum) < (1 - right_lung)


def test_jpeg2000_lossy_and_lossless_render_close_and_lossless_equals_uncompressed():
    lossy = to_uint8(read_dicom(dicom_file("RG3_J2KI.dcm")).pixels).astype(np.int16)
    lossless = to_uint8(read_dicom(dicom_file("RG3_J2KR.dcm")).pixels).astype(np.int16)
    native = to_uint8(read_dicom(dicom_file("RG3_UNCR.dcm")).pixels).astype(np.int16)
    assert np.array_equal(lossless, native)
    assert np.abs(lossy - lossless).mean() < 2.0
    chest_lossy = read_dicom(dicom_file("RG1_J2KI.dcm")).pixels
    chest_lossless = read_dicom(dicom_file("RG1_J2KR.dcm")).pixels
    assert np.abs(chest_lossy - chest_lossless).mean() < 0.01


@pytest.mark.parametrize("name, bits", [("RG3_J2KR.dcm", 10), ("RG1_J2KR.dcm", 15), ("siim_cr_chest_pa_1.2.276.0."
                                        "7230010.3.1.4.8323329.6904.1517875201.850819.dcm", 8)])
def test_bits_stored_images_use_the_display_range(name, bits):
    image = read_dicom(dicom_file(name))
    assert image.metadata.bits_stored == bits
    assert image.pixels.dtype == np.float32 and 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
    rendered = to_uint8(image.pixels)
    assert rendered.std() > 20  # windowed to a visible contrast, not crushed to a few grey levels
    assert len(np.unique(rendered)) > 100


def test_garbage_above_bits_stored_is_ignored(tmp_path):
    source = dicom_file("RG3_UNCR.dcm")
    dataset = pydicom.dcmread(source)
    stored = dataset.pixel_array.copy()
    stored |= 0xF000  # BitsStored is 10: the top bits must not change the image
    dataset.PixelData = stored.tobytes()
    dataset.save_as(tmp_path / "high_bits.dcm")
    assert np.array_equal(read_dicom(tmp_path / "high_bits.dcm").pixels, read_dicom(source).pixels)


def test_metadata_keeps_technical_attributes_only():
    extremity = read_dicom(dicom_file("RG3_UNCR.dcm")).metadata
    # BodyPartExamined EXTREMITY, AcquisitionDeviceProcessingDescription "LOWER LEG": the leg region
    assert (extremity.modality, extremity.body_region, extremity.view_position, extremity.laterality) == \
        ("CR", "leg", "AP", "R")
    assert (extremity.region_from, extremity.laterality_from) == ("AcquisitionDeviceProcessingDescription", "Laterality")
    assert (extremity.rows, extremity.columns) == (1760, 1760)
    chest = read_dicom(dicom_file("RG1_J2KI.dcm")).metadata
    assert chest.pixel_spacing is None  # the file's 0/0 placeholder is not a spacing
    siim = read_dicom(dicom_file(
        "siim_cr_chest_pa_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")).metadata
    assert siim.pixel_spacing == pytest.approx((0.168, 0.168)) and siim.pixel_spacing_source == "PixelSpacing"
    record = siim.to_record()
    assert "study_instance_uid" not in record and not any("patient" in key.lower() for key in record)


def test_imager_pixel_spacing_is_used_and_named_when_pixel_spacing_is_absent(tmp_path):
    dataset = pydicom.dcmread(dicom_file("RG3_UNCR.dcm"))
    dataset.ImagerPixelSpacing = [0.1, 0.125]
    dataset.save_as(tmp_path / "imager.dcm")
    metadata = read_dicom(tmp_path / "imager.dcm").metadata
    assert metadata.pixel_spacing == (0.1, 0.125) and metadata.pixel_spacing_source == "ImagerPixelSpacing"


def test_corrupt_dicoms_raise_clear_errors(tmp_path):
    variants = make_corrupt_dicoms(tmp_path)
    expected = {"empty.dcm": (EmptyFileError, "empty"), "truncated_native.dcm": (TruncatedFileError, "truncated"),
                "truncated_j2k.dcm": (TruncatedFileError, "truncated"),
                "no_pixels.dcm": (NoPixelDataError, "no pixel data"),
                "jpeg_ls.dcm": (UnsupportedTransferSyntaxError, "JPEG-LS"), "notes.dcm": (NotDicomError, "not a DICOM")}
    for name, (error_type, words) in expected.items():
        with pytest.raises(error_type, match=words):
            read_dicom(variants[name])


def test_raster_inputs_rgb_to_gray_and_broken_png(tmp_path):
    data = data_path("iu_xray_images", "CXR3_IM-1384-1001.png").read_bytes()
    raster = read_raster(data)
    assert raster.mode == "RGB" and raster.pixels.ndim == 2 and raster.pixels.dtype == np.uint8
    with pytest.raises(TruncatedFileError):
        read_raster(data[: len(data) // 2])
    with pytest.raises(CorruptImageError):
        read_raster(data[:100] + bytes(200) + data[300:])
    with pytest.raises(UnsupportedFileError):
        read_raster(b"plain text")
    sizes = render_files(raster.pixels, tmp_path / "r.png", tmp_path / "t.png")
    assert (sizes.width, sizes.height, sizes.render_width) == (512, 512, 512)
    with PILImage.open(tmp_path / "t.png") as thumb:
        assert thumb.mode == "L" and max(thumb.size) == 256


def test_render_caps_long_side_at_2048(tmp_path):
    pixels = np.tile(np.arange(3000, dtype=np.uint16) % 256, (1000, 1)).astype(np.uint8)
    sizes = render_files(pixels, tmp_path / "r.png", tmp_path / "t.png")
    assert (sizes.width, sizes.height) == (3000, 1000)
    assert (sizes.render_width, sizes.render_height) == (2048, 683)
    with PILImage.open(tmp_path / "r.png") as render:
        assert render.size == (2048, 683) and render.mode == "L"


def test_uint8_lookup_table_path_equals_float_path():
    for name in ("RG1_J2KI.dcm", "RG3_UNCR.dcm",
                 "siim_cr_chest_pa_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"):
        fast = read_dicom(dicom_file(name), as_uint8=True)
        reference = read_dicom(dicom_file(name))
        assert fast.pixels.dtype == np.uint8
        assert np.array_equal(fast.pixels, to_uint8(reference.pixels))
        assert fast.metadata == reference.metadata


def test_png_encoder_round_trips_exactly():
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, size=(37, 53), dtype=np.uint8)
    pixels[10:20] = 7  # flat runs as well as noise
    decoded = np.asarray(PILImage.open(io.BytesIO(encode_png_gray(pixels))))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, pixels)


def test_png_encoder_zlib_fallback_round_trips(monkeypatch):
    import radloop.core.render as render

    monkeypatch.setattr(render, "_fast_zlib", None)
    pixels = np.random.default_rng(1).integers(0, 256, size=(40, 30), dtype=np.uint8)
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(render.encode_png_gray(pixels)))), pixels)
