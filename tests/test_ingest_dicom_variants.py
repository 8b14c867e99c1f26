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


def _synthetic(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12, **attributes) -> Dataset:
    """A small DX data set around ``pixels`` (uint16 unless 8-bit), explicit VR little endian."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID, dataset.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    dataset.Modality, dataset.Rows, dataset.Columns = "DX", *pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation, dataset.PixelRepresentation = 1, photometric, 0
    allocated = 8 if bits <= 8 else 16
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = allocated, bits, bits - 1
    dataset.PixelData = pixels.astype(np.uint8 if allocated == 8 else np.uint16).tobytes()
    for key, value in attributes.items():
        setattr(dataset, key, value)
    return dataset


def _ramp(levels: int = 4096, shape=(8, 64)) -> np.ndarray:
    return np.tile(np.linspace(0, levels - 1, shape[1]).astype(np.uint16), (shape[0], 1))


def _voi_item(descriptor, table, vr="US") -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.LUTData = [int(value) for value in table]
    item["LUTData"].VR = vr
    return item


def test_voi_luts_of_many_8_bit_entries_and_12_bit_values_in_16_bit_words(tmp_path):
    """pydicom's apply_voi indexed an 8-bit LUT of 4,096 entries through uint8 (near-white render), and a
    16-bit LUT holding 12-bit values came out near black: both must give the full ramp."""
    inverting = _synthetic(_ramp(), VOILUTSequence=[_voi_item([4096, 0, 8], 255 - np.arange(4096) * 255 // 4095)])
    inverting.save_as(tmp_path / "lut8.dcm")
    image = read_dicom(tmp_path / "lut8.dcm", as_uint8=True).pixels
    assert image[0, 0] == 255 and image[0, -1] == 0 and np.all(np.diff(image[0].astype(int)) <= 0)
    twelve = _synthetic(_ramp(), VOILUTSequence=[_voi_item([4096, 0, 16], np.arange(4096))])
    twelve.save_as(tmp_path / "lut12in16.dcm")
    image = read_dicom(tmp_path / "lut12in16.dcm", as_uint8=True).pixels
    assert image[0, 0] == 0 and image[0, -1] == 255


def test_palette_presentation_lut_raw_data_sets_and_odd_attributes(tmp_path):
    from pydicom.uid import ImplicitVRLittleEndian

    from radloop.core.input_errors import UnsupportedTransferSyntaxError

    # PALETTE COLOR: the palette maps index i to 255 - i: the render is bright on the left
    indices = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    palette = _synthetic(indices, "PALETTE COLOR", bits=8)
    for colour in ("Red", "Green", "Blue"):
        setattr(palette, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(palette, f"{colour}PaletteColorLookupTableData",
                ((255 - np.arange(256, dtype=np.uint16)) * 257).astype("<u2").tobytes())
    palette.save_as(tmp_path / "palette.dcm")
    image = read_dicom(tmp_path / "palette.dcm", as_uint8=True).pixels
    assert int(image[0, 0]) > 200 > 50 > int(image[0, -1])
    # MONOCHROME2 with Presentation LUT Shape INVERSE is shown inverted; MONOCHROME1 + INVERSE only once
    plain = _synthetic(_ramp(), WindowCenter=2048, WindowWidth=4096)
    plain.save_as(tmp_path / "plain.dcm")
    inverse = _synthetic(_ramp(), WindowCenter=2048, WindowWidth=4096, PresentationLUTShape="INVERSE")
    inverse.save_as(tmp_path / "inverse.dcm")
    mono1 = _synthetic(_ramp(), "MONOCHROME1", WindowCenter=2048, WindowWidth=4096, PresentationLUTShape="INVERSE")
    mono1.save_as(tmp_path / "mono1.dcm")
    left = {name: int(read_dicom(tmp_path / f"{name}.dcm", as_uint8=True).pixels[0, 0])
            for name in ("plain", "inverse", "mono1")}
    assert left["plain"] < 10 and left["inverse"] > 245 and left["mono1"] > 245
    # a raw data set (no preamble, no file meta) is read with the encoding it was parsed with
    raw = _synthetic(_ramp(), WindowCenter=2048, WindowWidth=4096, ImageLaterality=["L", "R"],
                     BodyPartExamined="C-SPINE")
    raw.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    pydicom.dcmwrite(tmp_path / "raw", raw, implicit_vr=True, little_endian=True, enforce_file_format=False)
    data = (tmp_path / "raw").read_bytes()
    (tmp_path / "raw").write_bytes(data[data.index(b"\x08\x00\x16\x00"):])  # from the first data element on
    image = read_dicom(tmp_path / "raw", as_uint8=True)
    assert image.pixels[0, 0] < 10 and image.pixels[0, -1] > 245
    assert image.metadata.laterality == "L" and image.metadata.body_region == "spine"
    unknown = _synthetic(_ramp())
    unknown.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    unknown.save_as(tmp_path / "unknown.dcm", implicit_vr=False, little_endian=True)
    with pytest.raises(UnsupportedTransferSyntaxError, match="unknown transfer syntax UID 1.2.3.4.5.6.7"):
        read_dicom(tmp_path / "unknown.dcm")


def test_images_without_a_study_uid_group_by_patient_and_day(tmp_path, catalog):
    """No StudyInstanceUID: the patient id + study date key the (pseudonymous) study, so one patient's images
    of one day share a study and a split; the id itself is never stored."""
    import sqlite3

    from radloop.core.ingest import ingest_paths
    from radloop.core.schema import Image
    from sqlalchemy import select

    folder = tmp_path / "no-study-uid"
    folder.mkdir()
    for index, patient in enumerate(["PAT-NOSTUDY-1", "PAT-NOSTUDY-1", "PAT-OTHER-2"]):
        _synthetic(_ramp() + index, PatientID=patient, StudyDate="20240102", WindowCenter=2048,
                   WindowWidth=4096).save_as(folder / f"{index}.dcm")
    summary = ingest_paths(catalog, [folder], workers=1, progress=False)
    assert summary.images_added == 3 and summary.errors == 0
    with catalog.session() as session:
        studies = {row.external_id: row.study_id for row in session.scalars(select(Image))}
    assert studies["0"] == studies["1"] != studies["2"]
    if catalog.workspace.database_url.startswith("sqlite"):
        dump = "\n".join(sqlite3.connect(catalog.workspace.root / "catalog.sqlite").iterdump())
        assert "PAT-NOSTUDY" not in dump and "PAT-OTHER" not in dump
