"""Pixel data that the image header does not describe, written by pydicom at test time: each gets the right
image, a warning and the declared part, or one clear error naming the sizes (core.dicom_pixels).

Native data shorter or longer than Rows x Columns x SamplesPerPixel x BitsAllocated x frames; RLE, JPEG and
JPEG-LS codestreams of another size than Rows/Columns; native words in the other byte order for signed data with
negative values and for values of 8 bits or fewer.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSLossless, RLELossless,
)

from dicom_synthetic import synthetic_dataset

from radloop.core.dicom_io import decode_stored_values, read_dataset, read_dicom
from radloop.core.ingest_sources import ImageTask
from radloop.core.ingest_worker import WorkerContext, process_task
from radloop.core.input_errors import CorruptImageError, TruncatedFileError

#: a horizontal 12-bit ramp, 32 rows x 64 columns (4,096 bytes in 16-bit words)
RAMP = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (32, 1))


def _save(dataset: Dataset, path) -> str:
    dataset.save_as(path, enforce_file_format=True)
    return str(path)


def _stored(path) -> np.ndarray:
    return decode_stored_values(read_dataset(path))


def _window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM LINEAR window (C.11.2.1.2.1)."""
    return np.clip((values.astype(np.float64) - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _ingest_reason(path, tmp_path) -> str:
    """The reason ingest records for ``path`` (it reads bytes: the reason has no file name, the row has)."""
    outcome = process_task(0, ImageTask(path=path, dataset="sizes", external_id="x", study_namespace="test",
                                        study_key="x"), WorkerContext(tmp_path / "workspace", b"key"))
    assert outcome.status == "error" and outcome.stage == "decode"
    return outcome.reason


# 1. Native pixel data of another length than the header declares

@pytest.mark.parametrize("attributes, needed", [
    ({"Rows": 40}, "needs 5120 .Rows 40 x Columns 64 x SamplesPerPixel 1 x BitsAllocated 16 x 1 frame."),
    ({"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0},
     "needs 12288 .Rows 32 x Columns 64 x SamplesPerPixel 3 x BitsAllocated 16 x 1 frame."),
    ({"NumberOfFrames": 3}, "needs 12288 .Rows 32 x Columns 64 x SamplesPerPixel 1 x BitsAllocated 16 x 3 frames."),
], ids=["rows", "samples", "frames"])
def test_native_pixel_data_shorter_than_the_header_is_one_clear_error(tmp_path, attributes, needed):
    path = _save(synthetic_dataset(RAMP, **attributes), tmp_path / "short.dcm")
    with pytest.raises(TruncatedFileError, match=f"^{path}: pixel data is 4096 bytes but the header {needed}"):
        read_dicom(path)
    assert "pixel data is 4096 bytes but the header needs" in _ingest_reason(path, tmp_path)


def test_native_pixel_data_one_byte_short_is_the_same_error(tmp_path):
    """An odd-length pixel data element one byte short of the last word (pydicom writes even lengths: the
    element's length is cut by hand)."""
    data = open(_save(synthetic_dataset(RAMP), tmp_path / "even.dcm"), "rb").read()
    start = data.index(b"\xe0\x7f\x10\x00OW\x00\x00") + 8
    assert int.from_bytes(data[start:start + 4], "little") == 4096 and len(data) == start + 4 + 4096
    (tmp_path / "odd.dcm").write_bytes(data[:start] + (4095).to_bytes(4, "little") + data[start + 4:-1])
    with pytest.raises(TruncatedFileError, match="odd.dcm: pixel data is 4095 bytes but the header needs 4096"):
        read_dicom(tmp_path / "odd.dcm")


@pytest.mark.parametrize("extra", [4096, 100], ids=["a-second-frame", "100-bytes"])
def test_native_pixel_data_longer_than_the_header_warns_and_reads_the_declared_frame(tmp_path, extra):
    """pydicom read a whole extra frame's worth as a second frame: the (2, 32, 64) array came out as a
    (2, 32) "colour" image."""
    dataset = synthetic_dataset(RAMP, WindowCenter=2048, WindowWidth=4096)
    dataset.PixelData += bytes(range(256)) * (extra // 256) + bytes(extra % 256)
    path = _save(dataset, tmp_path / "long.dcm")
    with pytest.warns(UserWarning, match=f"long.dcm: pixel data is {4096 + extra} bytes, {extra} more than the "
                                         "header needs .Rows 32 x Columns 64"):
        image = read_dicom(path)
    assert image.pixels.shape == RAMP.shape
    assert np.abs(image.pixels - _window(RAMP, 2048, 4096)).max() < 1e-5


def test_native_pixel_data_with_the_odd_length_padding_byte_is_read_without_a_warning(tmp_path):
    values = np.arange(15, dtype=np.uint8).reshape(3, 5) * 17
    path = _save(synthetic_dataset(values, bits=8, allocated=8), tmp_path / "odd_length.dcm")  # 15 bytes + 1 padding
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(_stored(path), values)


# 2. Encapsulated codestreams of another size than Rows/Columns

@pytest.mark.parametrize("rows, columns", [(16, 64), (32, 32), (64, 64), (32, 128)])
def test_rle_rows_columns_disagreeing_with_the_segments_is_one_clear_error(tmp_path, rows, columns):
    """pydicom cut longer segments to the declared size (warning only: 32 x 32 read the 32 x 64 rows wrapped)
    and reported shorter ones as "Unable to decode as exceptions were raised by all available plugins:"."""
    dataset = synthetic_dataset(RAMP)
    dataset.compress(RLELossless)
    assert np.array_equal(_stored(_save(dataset, tmp_path / "rle.dcm")), RAMP)
    dataset.Rows, dataset.Columns = rows, columns
    path = _save(dataset, tmp_path / "rle_size.dcm")
    with pytest.raises(CorruptImageError, match=f"rle_size.dcm: RLE Lossless segments decode to 2048 bytes but the "
                                                f"DICOM header declares Rows {rows} x Columns {columns} "
                                                f".{rows * columns} bytes.: header and pixel data do not belong"):
        read_dicom(path)


def _jpeg(values: np.ndarray, syntax) -> Dataset:
    """``values`` (H, W) uint8 as a Pillow-made JPEG; for the extended process its SOF0 becomes SOF1 (8-bit
    extended sequential: the same frame, a marker pydicom's Pillow plugin also decodes)."""
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="JPEG", quality=95)
    codestream = buffer.getvalue()
    if syntax == JPEGExtended12Bit:
        codestream = codestream.replace(b"\xff\xc0", b"\xff\xc1", 1)
    dataset = synthetic_dataset(values, bits=8, allocated=8, syntax=syntax)
    dataset.PixelData = encapsulate([codestream])
    dataset["PixelData"].VR = "OB"
    return dataset


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEGExtended12Bit], ids=["baseline", "extended"])
@pytest.mark.parametrize("attributes, declared", [
    ({"Rows": 16}, "64 x 16"), ({"Columns": 32}, "32 x 32"), ({"Rows": 64, "Columns": 128}, "128 x 64"),
    ({"SamplesPerPixel": 3, "PhotometricInterpretation": "YBR_FULL_422"}, "64 x 32 with SamplesPerPixel 3"),
], ids=["rows", "columns", "both", "samples"])
def test_jpeg_size_disagreeing_with_the_header_is_one_clear_error(tmp_path, monkeypatch, syntax, attributes,
                                                                   declared):
    """pydicom failed with "could not broadcast input array from shape (2048,) into shape (1024,)"."""
    values = (RAMP >> 4).astype(np.uint8)
    dataset = _jpeg(values, syntax)
    assert np.abs(_stored(_save(dataset, tmp_path / "jpeg.dcm")).astype(int) - values).max() <= 4  # lossy
    for key, value in attributes.items():
        setattr(dataset, key, value)
    path = _save(dataset, tmp_path / "jpeg_size.dcm")
    monkeypatch.setattr("radloop.core.dicom_pixels.pixel_array", lambda *args, **kwargs: pytest.fail("decoded"))
    components = " with 1 component.s." if "SamplesPerPixel" in attributes else ""
    with pytest.raises(CorruptImageError, match=f"jpeg_size.dcm: JPEG codestream is 64 x 32 .columns x rows."
                                                f"{components} but the DICOM header declares {declared}: header"):
        read_dicom(path)


def test_jpeg_ls_size_disagreeing_with_the_header_is_reported_with_or_without_a_decoder(tmp_path):
    """A JPEG-LS frame header (SOF55, T.87 C.2.2: 12-bit, 32 rows, 64 columns, 1 component) is read like a JPEG
    one; the mismatch is the error even where no JPEG-LS decoder is installed."""
    frame = b"\xff\xf7\x00\x0b\x0c" + (32).to_bytes(2, "big") + (64).to_bytes(2, "big") + b"\x01\x01\x11\x00"
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x00" + bytes(16)
    dataset = synthetic_dataset(RAMP, syntax=JPEGLSLossless, Rows=48)
    dataset.PixelData = encapsulate([b"\xff\xd8" + frame + scan + b"\xff\xd9"])
    dataset["PixelData"].VR = "OB"
    path = _save(dataset, tmp_path / "jpeg_ls.dcm")
    with pytest.raises(CorruptImageError, match="JPEG-LS codestream is 64 x 32 .columns x rows. but the DICOM "
                                                "header declares 64 x 48"):
        read_dicom(path)


# 3. Native words in the other byte order than the transfer syntax's

SIGNED = np.tile(np.linspace(-2048, 2047, 64).astype(np.int16), (32, 1))  # 12-bit signed, half negative


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian], ids=["little", "big"])
def test_signed_words_with_negative_values_in_either_byte_order(tmp_path, syntax):
    """Negative values byte-swapped (e.g. -5 = 0xfffb as 0xfbff) were taken for overlay bits and masked away:
    the wrong image, no error."""
    declared = "<" if syntax == ExplicitVRLittleEndian else ">"
    right = synthetic_dataset(SIGNED, signed=True, syntax=syntax, WindowCenter=0, WindowWidth=4096)
    image = read_dicom(_save(right, tmp_path / "right.dcm"))
    assert np.abs(image.pixels - _window(SIGNED, 0, 4096)).max() < 1e-5
    wrong = synthetic_dataset(SIGNED, signed=True, syntax=syntax, pixel_order="><"[declared == ">"])
    with pytest.raises(CorruptImageError, match=f"wrong.dcm: pixel data byte order does not match the transfer "
                                                f"syntax {syntax.name}: the 16-bit words overflow BitsStored 12"):
        read_dicom(_save(wrong, tmp_path / "wrong.dcm"))
    # BitsStored 16: every word is a value in either order, nothing to tell them apart by: read as declared
    full = synthetic_dataset(SIGNED * 16, bits=16, signed=True, syntax=syntax, WindowCenter=0, WindowWidth=65536)
    image = read_dicom(_save(full, tmp_path / "full.dcm"))
    assert np.abs(image.pixels - _window(SIGNED * 16, 0, 65536)).max() < 1e-5


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian], ids=["little", "big"])
def test_values_of_8_bits_or_fewer_in_either_byte_order(tmp_path, syntax):
    """8-bit values in 16-bit words byte-swapped all have a zero low byte: that was taken for "no evidence" and
    the image came out black."""
    values = (RAMP >> 4).astype(np.uint16)  # 0..255
    declared = "<" if syntax == ExplicitVRLittleEndian else ">"
    right = synthetic_dataset(values, bits=8, syntax=syntax)
    assert np.array_equal(_stored(_save(right, tmp_path / "right.dcm")), values)
    overlay = synthetic_dataset(values | 0x8000, bits=8, syntax=syntax)  # an overlay plane in bit 15: cleared, no alarm
    assert np.array_equal(_stored(_save(overlay, tmp_path / "overlay.dcm")), values)
    wrong = synthetic_dataset(values, bits=8, syntax=syntax, pixel_order="><"[declared == ">"])
    with pytest.raises(CorruptImageError, match="byte order does not match the transfer syntax"):
        read_dicom(_save(wrong, tmp_path / "wrong.dcm"))
    # 8-bit words have no byte order: values with a bit above BitsStored 7 set are masked, never an alarm
    eight = synthetic_dataset((values | 0x80).astype(np.uint8), bits=7, allocated=8, syntax=syntax)
    assert np.array_equal(_stored(_save(eight, tmp_path / "eight.dcm")), values & 0x7F)


def test_overlay_bits_over_a_blank_12_bit_image_are_no_byte_order_evidence(tmp_path):
    words = np.zeros_like(RAMP)
    words[8:24, 16:48] = 0x8000  # bit 15 only: byte-swapped these would be 12-bit values (0x0080)
    assert not _stored(_save(synthetic_dataset(words), tmp_path / "blank.dcm")).any()
