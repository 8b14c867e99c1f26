"""Rare DICOM layouts, written by pydicom at test time: each gets a correct render or one clear decode error.

JPEG 2000 whose Rows/Columns disagree with the codestream, Modality LUTs with 12-bit entries, LUT words in a big
endian file, values in the top bits of the word (HighBit 15, BitsStored 12), and byte orders: genuine Explicit VR
Big Endian, a whole data set in the other byte order than its file meta declares, and pixel data alone in the other
byte order.  Sizes and byte orders of pixel data the header does not describe: test_dicom_pixels.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless,
)

from dicom_synthetic import synthetic_dataset

from radloop.core.dicom_io import read_dicom
from radloop.core.ingest_sources import ImageTask
from radloop.core.ingest_worker import WorkerContext, process_task
from radloop.core.input_errors import CorruptImageError, NoPixelDataError
from radloop.core.render import to_uint8

#: a horizontal 12-bit ramp (64 x 64: the smallest size openjpeg encodes with its default 6 resolutions)
RAMP = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))
LITTLE_UID, BIG_UID = str(ExplicitVRLittleEndian).encode() + b"\0", str(ExplicitVRBigEndian).encode() + b"\0"


def _save(dataset: Dataset, path) -> str:
    dataset.save_as(path, enforce_file_format=True)  # pydicom writes the header in the file meta's byte order
    return str(path)


def _window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM LINEAR window (C.11.2.1.2.1), the reference the renders are compared with."""
    return np.clip((values.astype(np.float64) - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _assert_render(path, expected: np.ndarray) -> None:
    image = read_dicom(path)
    assert np.abs(image.pixels - expected).max() < 1e-5
    assert np.array_equal(read_dicom(path, as_uint8=True).pixels, to_uint8(image.pixels))


# 1. JPEG 2000 whose Rows/Columns disagree with the codestream

@pytest.fixture(scope="module")
def jpeg2000(tmp_path_factory) -> Dataset:
    dataset = synthetic_dataset(RAMP, WindowCenter=2048, WindowWidth=4096)
    try:
        dataset.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    except (RuntimeError, ValueError) as error:
        pytest.skip(f"no JPEG 2000 encoder installed: {error}")
    return dataset


def test_jpeg2000_with_the_codestream_size_decodes(jpeg2000, tmp_path):
    _assert_render(_save(jpeg2000, tmp_path / "j2k.dcm"), _window(RAMP, 2048, 4096))


@pytest.mark.parametrize("rows, columns", [(32, 64), (64, 128), (16, 32)])
def test_jpeg2000_rows_columns_disagreeing_with_the_codestream_is_one_clear_error(jpeg2000, tmp_path, monkeypatch,
                                                                                   rows, columns):
    jpeg2000.Rows, jpeg2000.Columns = rows, columns
    path = _save(jpeg2000, tmp_path / "j2k_size.dcm")

    def no_decode(*args, **kwargs):
        raise AssertionError("the codestream size is checked before pydicom allocates and decodes")

    monkeypatch.setattr("radloop.core.dicom_pixels.pixel_array", no_decode)
    expected = (f"JPEG 2000 codestream is 64 x 64 .columns x rows. but the DICOM header declares {columns} x {rows}")
    with pytest.raises(CorruptImageError, match=expected):
        read_dicom(path)
    monkeypatch.undo()
    # ingest records it as a decode error with the same reason (an IngestError row), and carries on
    outcome = process_task(0, ImageTask(path=path, dataset="rare", external_id="j2k", study_namespace="test",
                                        study_key="j2k"), WorkerContext(tmp_path / "workspace", b"key"))
    assert outcome.status == "error" and outcome.stage == "decode"
    assert "codestream is 64 x 64" in outcome.reason and f"declares {columns} x {rows}" in outcome.reason


# 2. Modality LUT Sequence with 12-bit entries

def _modality_item(table: np.ndarray, first: int, vr: str, order: str = "<", bits: int = 12) -> Dataset:
    item = Dataset()
    item.LUTDescriptor, item.ModalityLUTType = [len(table), first, bits], "US"
    item.LUTData = table.astype(f"{order}u2").tobytes() if vr == "OW" else [int(value) for value in table]
    item["LUTData"].VR = vr
    return item


@pytest.mark.parametrize("vr, syntax", [("US", ExplicitVRLittleEndian), ("OW", ExplicitVRLittleEndian),
                                        ("OW", ExplicitVRBigEndian)], ids=["US", "OW", "OW-big-endian"])
def test_modality_lut_with_12_bit_entries_is_applied(tmp_path, vr, syntax):
    """pydicom's apply_modality_lut raised TypeError "data type 'uint12' not understood"."""
    first = 100  # stored values below the first mapped value take the first entry, above the last the last
    table = (4095 - np.arange(3000) * 4095 // 2999).astype(np.uint16)  # an inverting LUT over 100..3099
    item = _modality_item(table, first, vr, "<" if syntax == ExplicitVRLittleEndian else ">")
    dataset = synthetic_dataset(RAMP, syntax=syntax, ModalityLUTSequence=[item], WindowCenter=2048, WindowWidth=4096)
    path = _save(dataset, tmp_path / "modality_lut12.dcm")
    expected = _window(table[np.clip(RAMP.astype(int) - first, 0, len(table) - 1)], 2048, 4096)
    _assert_render(path, expected)
    assert read_dicom(path, as_uint8=True).pixels[0, 0] == 255  # the LUT inverts: the left edge is white


SYNTAXES = [ExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian]


@pytest.mark.parametrize("syntax", SYNTAXES, ids=["little", "big", "implicit"])
def test_voi_and_modality_lut_words_are_read_in_the_files_byte_order(tmp_path, syntax):
    """OW LUT data stays raw bytes in pydicom (so does every LUTData of an implicit VR file, whose VR is
    ambiguous): the VOI LUT's were read little endian in a big endian file (a byte-swapped, noisy table)."""
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    voi = Dataset()
    voi.LUTDescriptor, voi.LUTData = [4096, 0, 16], (65535 - np.arange(4096) * 16).astype(f"{order}u2").tobytes()
    voi["LUTData"].VR = "OW"
    path = _save(synthetic_dataset(RAMP, syntax=syntax, VOILUTSequence=[voi]), tmp_path / "voi_ow.dcm")
    image = read_dicom(path)
    assert image.metadata.window_source == "voi_lut"
    _assert_render(path, (65535 - RAMP.astype(np.float64) * 16) / 65535)
    # a 16-bit Modality LUT goes through pydicom's apply_modality_lut, which reads the words in the same order
    table = (np.arange(4096) * 16).astype(np.uint16)
    modality = _modality_item(table, 0, "OW", order, bits=16)
    path = _save(synthetic_dataset(RAMP, syntax=syntax, ModalityLUTSequence=[modality], WindowCenter=32768,
                            WindowWidth=65536), tmp_path / "modality_ow16.dcm")
    _assert_render(path, _window(table[RAMP], 32768, 65536))


# 3. Values in the top bits of the word: HighBit 15 with BitsStored 12

def test_high_bit_15_with_bits_stored_12_takes_the_top_bits(tmp_path):
    """pydicom keeps the low 12 bits of such words (HighBit ignored): the ramp came out as a sawtooth."""
    reference = _save(synthetic_dataset(RAMP, WindowCenter=2048, WindowWidth=4096), tmp_path / "standard.dcm")
    expected = read_dicom(reference).pixels
    _assert_render(reference, _window(RAMP, 2048, 4096))
    top = synthetic_dataset(RAMP << 4, high_bit=15, WindowCenter=2048, WindowWidth=4096)
    _assert_render(_save(top, tmp_path / "top_bits.dcm"), expected)
    overlay = synthetic_dataset((RAMP << 4) | 0b1010, high_bit=15, WindowCenter=2048, WindowWidth=4096)
    _assert_render(_save(overlay, tmp_path / "top_bits_overlay.dcm"), expected)  # bits below the field ignored
    # a writer that declares HighBit 15 but keeps the values in the low bits (low bits in use, none above 12)
    misdeclared = synthetic_dataset(RAMP, high_bit=15, WindowCenter=2048, WindowWidth=4096)
    _assert_render(_save(misdeclared, tmp_path / "misdeclared.dcm"), expected)


def test_signed_values_in_the_top_bits_keep_their_sign(tmp_path):
    values = RAMP.astype(np.int16) - 2048  # -2048 .. 2047 (12-bit signed)
    expected = _window(values, 0, 4096)
    _assert_render(_save(synthetic_dataset(values, signed=True, WindowCenter=0, WindowWidth=4096),
                         tmp_path / "signed.dcm"), expected)
    top = synthetic_dataset(values << 4, high_bit=15, signed=True, WindowCenter=0, WindowWidth=4096)
    _assert_render(_save(top, tmp_path / "signed_top_bits.dcm"), expected)
    middle = synthetic_dataset((values << 2) | 0b1, bits=12, high_bit=13, signed=True, WindowCenter=0, WindowWidth=4096)
    _assert_render(_save(middle, tmp_path / "signed_bits_2_to_13.dcm"), expected)


# 4. Byte order: Explicit VR Big Endian, and declarations that do not match the body

def test_genuine_explicit_vr_big_endian_decodes_like_little_endian(tmp_path):
    big = synthetic_dataset(RAMP, syntax=ExplicitVRBigEndian, WindowCenter=2048, WindowWidth=4096)
    path = _save(big, tmp_path / "big_endian.dcm")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    _assert_render(path, _window(RAMP, 2048, 4096))
    assert read_dicom(path).metadata.transfer_syntax == str(ExplicitVRBigEndian)


@pytest.mark.parametrize("written, declared", [(ExplicitVRLittleEndian, BIG_UID), (ExplicitVRBigEndian, LITTLE_UID)],
                         ids=["little-declared-big", "big-declared-little"])
def test_data_set_in_the_other_byte_order_than_declared_is_read_in_its_own(tmp_path, written, declared):
    """The declared order parses the body to nonsense, which used to be reported as "no pixel data"; the other
    order gives the whole image, so the file is read that way (with a warning naming the mismatch)."""
    path = _save(synthetic_dataset(RAMP, syntax=written, WindowCenter=2048, WindowWidth=4096), tmp_path / "written.dcm")
    data = open(path, "rb").read()
    swapped = data.replace(LITTLE_UID if declared == BIG_UID else BIG_UID, declared, 1)
    assert swapped != data
    (tmp_path / "mismatch.dcm").write_bytes(swapped)
    with pytest.warns(UserWarning, match="transfer syntax mismatch: the file meta declares Explicit VR "
                                         f"{'Big' if declared == BIG_UID else 'Little'} Endian"):
        image = read_dicom(tmp_path / "mismatch.dcm")
    assert image.metadata.transfer_syntax == str(written)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_render(tmp_path / "mismatch.dcm", _window(RAMP, 2048, 4096))
    # without pixel data in either byte order it stays "no pixel data"
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    data = open(_save(dataset, tmp_path / "no_pixels.dcm"), "rb").read()
    (tmp_path / "no_pixels.dcm").write_bytes(data.replace(LITTLE_UID if declared == BIG_UID else BIG_UID,
                                                          declared, 1))
    with pytest.raises(NoPixelDataError):
        read_dicom(tmp_path / "no_pixels.dcm")


@pytest.mark.parametrize("syntax, pixel_order", [(ExplicitVRBigEndian, "<"), (ExplicitVRLittleEndian, ">")],
                         ids=["big-header-little-pixels", "little-header-big-pixels"])
def test_pixel_data_alone_in_the_other_byte_order_is_one_clear_error(tmp_path, syntax, pixel_order):
    """A header in one byte order over pixel words in the other (what pydicom writes when a little endian data set
    is saved as big endian) rendered as noise; the words overflow BitsStored unless byte-swapped."""
    dataset = synthetic_dataset(RAMP, syntax=syntax, WindowCenter=2048, WindowWidth=4096)
    dataset.PixelData = RAMP.astype(f"{pixel_order}u2").tobytes()
    path = _save(dataset, tmp_path / "pixel_order.dcm")
    name = "Big" if syntax == ExplicitVRBigEndian else "Little"
    with pytest.raises(CorruptImageError, match=f"byte order does not match the transfer syntax Explicit VR {name}"):
        read_dicom(path)


def test_encoders_read_a_dicom_as_ingest_renders_it(tmp_path):
    """`radloop pretrain --images FOLDER` / search by image file read DICOMs through ``read_image``: the same
    display pixels as the catalog's render (a 12-bit modality LUT once broke only pydicom's own path), also for
    an archive export without a suffix; an unreadable one is one ``UnreadableImage`` naming the file."""
    from radloop.ssl.pixels import UnreadableImage, read_image

    lut = np.linspace(4095, 0, 4096).astype(np.uint16)  # an inverting 12-bit modality LUT
    sequence = Dataset()
    sequence.LUTDescriptor, sequence.LUTData, sequence.ModalityLUTType = [4096, 0, 12], lut.tolist(), "US"
    sequence["LUTData"].VR = "US"
    dataset = synthetic_dataset(RAMP, ModalityLUTSequence=[sequence], WindowCenter=2048, WindowWidth=4096)
    with_suffix = _save(dataset, tmp_path / "ramp.dcm")
    without = _save(dataset, tmp_path / "1.2.840.99999.1")
    expected = read_dicom(with_suffix).pixels
    assert expected[0, 0] > expected[0, -1]  # the LUT inverted the ramp
    assert np.array_equal(read_image(with_suffix), expected)
    assert np.array_equal(read_image(without), expected)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(open(with_suffix, "rb").read()[:-2000])
    with pytest.raises(UnreadableImage, match="broken.dcm"):
        read_image(broken)


def test_encoders_read_the_real_dicoms_as_ingest_renders_them():
    from conftest import data_path

    from radloop.ssl.pixels import read_image

    files = sorted(data_path("dicom_radiographs").glob("*.dcm"))
    assert files
    for file in files:
        assert np.array_equal(read_image(file), read_dicom(file).pixels), file.name
