"""Read a DICOM radiograph into display-ready float pixels plus a metadata record without patient identifiers.

The grey-level pipeline follows DICOM PS3.3 C.11 (the order a viewer applies):

1. decode the stored values (pydicom, JPEG 2000 through pylibjpeg-openjpeg / Pillow): the BitsStored bits that
   end at HighBit, so legacy native data with the values in the top bits (BitsStored 12, HighBit 15) is read too;
2. modality LUT (``apply_modality_lut``; 10-15-bit tables in 16-bit words by ``_apply_modality_table``; a plain
   rescale slope/intercept is done in float32 for speed);
3. VOI: a VOI LUT sequence (``_apply_voi_table``), else the first window centre/width (LINEAR, LINEAR_EXACT or
   SIGMOID, C.11.2.1.2), else a percentile window (0.5-99.5 %) and finally min/max;
4. MONOCHROME1 (or MONOCHROME2 with Presentation LUT Shape INVERSE) is inverted so that 1.0 is always bright
   (bone white, air black); PALETTE COLOR goes through its palette, colour through luminance.

Step 1 lives in :mod:`radloop.core.dicom_pixels`, steps 2-4 in :mod:`radloop.core.dicom_display`; the body region
and laterality (from BodyPartExamined / ImageLaterality or a description) in :mod:`radloop.core.dicom_region`.

Inconsistent files get one clear error rather than a wrong image: pixel data whose length or codestream size
differs from what Rows/Columns/SamplesPerPixel/BitsAllocated declare, and native pixel words in the other byte
order than the transfer syntax's (both checked in :mod:`radloop.core.dicom_pixels`).  A whole data set in the other
explicit VR byte order than its file meta declares is unambiguous (the declared order parses to nonsense, the other
to an image) and is read in its own order, with a warning.

Only technical attributes reach :class:`DicomMetadata`; the StudyInstanceUID is kept solely so ingest can
derive a pseudonymous study id (it is excluded from :meth:`DicomMetadata.to_record`).
"""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian
from radloop.core.dicom_display import to_display, to_display_uint8
from radloop.core.dicom_pixels import PIXEL_TAGS, decode_stored_values
from radloop.core.dicom_region import (  # noqa: F401 - the constants are re-exported
    BODY_PART_REGIONS, DESCRIPTION_REGIONS, DESCRIPTION_SIDES, DESCRIPTION_TAGS, GENERIC_REGIONS, UNPAIRED_REGIONS,
    _named, _text, dicom_body_region, dicom_laterality,
)
from radloop.core.input_errors import EmptyFileError, NotDicomError, TruncatedFileError

__all__ = ["DicomImage", "DicomMetadata", "decode_stored_values", "dicom_body_region", "dicom_laterality",
           "display_image", "has_burned_in_annotation", "header_values_unlogged", "is_dicom_bytes", "read_dataset",
           "read_dicom"]

#: explicit VR transfer syntax -> the one in the other byte order (both UIDs are 19 characters long)
OTHER_BYTE_ORDER = {ExplicitVRLittleEndian: ExplicitVRBigEndian, ExplicitVRBigEndian: ExplicitVRLittleEndian}


@dataclass(frozen=True)
class DicomMetadata:
    """Technical attributes of one DICOM image (no patient identifiers).

    ``pixel_spacing`` is (row, column) spacing in mm; ``pixel_spacing_source`` says which attribute gave it
    (``PixelSpacing`` is calibrated at the patient, ``ImagerPixelSpacing`` at the detector).
    ``window_source`` records how the display window was chosen: voi_lut | window | percentile | minmax.
    ``orientation`` is PatientOrientation (row, column direction, e.g. ``["L", "F"]``): the pixels are
    rendered as stored, so a frontal view whose rows run to the patient's right (``"R"``) shows mirrored.
    """

    modality: str | None
    body_part: str | None
    body_region: str | None
    view_position: str | None
    laterality: str | None
    pixel_spacing: tuple[float, float] | None
    pixel_spacing_source: str | None
    rows: int
    columns: int
    bits_stored: int | None
    bits_allocated: int | None
    photometric: str | None
    transfer_syntax: str
    number_of_frames: int
    window_source: str
    orientation: list[str] | None = None
    #: the attribute the body region / laterality came from (``BodyPartExamined``, ``ImageLaterality``, or a
    #: description such as ``AcquisitionDeviceProcessingDescription`` when those are missing or generic)
    region_from: str | None = None
    laterality_from: str | None = None
    #: BurnedInAnnotation YES: text (possibly identifying) is part of the pixels; ingest warns and flags it
    burned_in_annotation: bool = False
    study_instance_uid: str | None = field(default=None, repr=False)
    #: when there is no StudyInstanceUID: patient id + study date / accession, only ever fed to the study
    #: pseudonym's HMAC (never stored), so one patient's images of one day stay one study (and one split)
    study_fallback_key: str | None = field(default=None, repr=False)

    def to_record(self) -> dict:
        """JSON-able attributes for the catalog (the StudyInstanceUID and the fallback key are left out)."""
        record = asdict(self)
        record.pop("study_instance_uid")
        record.pop("study_fallback_key")
        record["pixel_spacing"] = list(self.pixel_spacing) if self.pixel_spacing else None
        return record


@dataclass(frozen=True)
class DicomImage:
    """Display-ready pixels (H, W) float32 in [0, 1] (1 = bright) and their metadata."""

    pixels: np.ndarray
    metadata: DicomMetadata


def is_dicom_bytes(data: bytes) -> bool:
    """True when ``data`` carries the DICOM Part 10 preamble marker ``DICM`` at offset 128."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def read_dicom(source: str | os.PathLike | bytes, *, as_uint8: bool = False) -> DicomImage:
    """Read and window a DICOM image.

    Args:
        source: a path or the file's bytes (ingest reads once and hashes the same bytes).
        as_uint8: return 8-bit display pixels (H, W) uint8 instead of float32 in [0, 1].  For integer data
            the whole grey-level pipeline is then evaluated once per distinct stored value (a lookup table
            over min..max) and applied with one ``np.take``: same result as ``to_uint8`` of the float
            pixels, several times less memory traffic.

    Raises:
        EmptyFileError, NotDicomError, TruncatedFileError, NoPixelDataError,
        UnsupportedTransferSyntaxError, CorruptImageError: with a reason that names the problem.
    """
    with header_values_unlogged():
        dataset = read_dataset(source)
        return display_image(dataset, decode_stored_values(dataset), as_uint8=as_uint8)


@contextmanager
def header_values_unlogged() -> Iterator[None]:
    """A context in which pydicom reads header values without validating them.

    pydicom's validation warns *and logs* an invalid value with the value itself ("Invalid value for VR DA:
    '2023-04-17 Doe'", "... VR UI: '1.2.3.x'"): a malformed date, UID or id of the header would reach the
    console and the log.  The values read are the same either way.  pydicom's own
    ``config.disable_value_validation`` saves and restores a process-wide setting, which threads reading at once
    (pretraining's image cache) would restore out of order; here the first entry saves it and the last exit
    restores it.
    """
    global _unlogged_depth, _saved_modes
    settings = pydicom.config.settings
    with _unlogged_lock:
        if _unlogged_depth == 0:
            _saved_modes = (settings._reading_validation_mode, settings._writing_validation_mode)
            settings.reading_validation_mode = settings.writing_validation_mode = pydicom.config.IGNORE
        _unlogged_depth += 1
    try:
        yield
    finally:
        with _unlogged_lock:
            _unlogged_depth -= 1
            if _unlogged_depth == 0:
                settings._reading_validation_mode, settings._writing_validation_mode = _saved_modes


_unlogged_lock = threading.Lock()
_unlogged_depth = 0
_saved_modes: tuple = (None, None)


def display_image(dataset: pydicom.Dataset, stored: np.ndarray, *, as_uint8: bool = False) -> DicomImage:
    """The windowed image and metadata record of a data set whose stored values are already decoded
    (:func:`read_dicom` in steps, for a caller that also needs the stored values, e.g. ingest's pixel hash)."""
    with header_values_unlogged():
        if as_uint8:
            values, voi_source = to_display_uint8(stored, dataset)
        else:
            values, voi_source = to_display(stored, dataset)
        return DicomImage(pixels=values, metadata=_metadata(dataset, stored.shape, voi_source))


def read_dataset(source: str | os.PathLike | bytes) -> pydicom.Dataset:
    """The data set of a DICOM file (a path or its bytes), pixels not decoded yet.  Read from a path, it keeps
    the path as ``filename`` (as pydicom's ``dcmread`` would), and the pixel decoding errors name it."""
    if isinstance(source, bytes):
        return _parse_dataset(source)
    dataset = _parse_dataset(Path(source).read_bytes())
    dataset.filename = os.fspath(source)
    return dataset


def _parse_dataset(data: bytes) -> pydicom.Dataset:
    if not data:
        raise EmptyFileError("file is empty (0 bytes)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = pydicom.dcmread(io.BytesIO(data), force=not is_dicom_bytes(data))
        except InvalidDicomError as error:
            raise NotDicomError(f"not a DICOM file: {error}") from error
        except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as error:
            if is_dicom_bytes(data):
                reread = _read_in_other_byte_order(data)
                if reread is not None:
                    return reread
                raise TruncatedFileError(f"DICOM header is truncated or damaged: {error}") from error
            raise NotDicomError("not a DICOM file (no DICM preamble and no parsable data set)") from error
    if not is_dicom_bytes(data) and ("SOPClassUID" not in dataset and "Rows" not in dataset):
        raise NotDicomError("not a DICOM file (no DICM preamble, no SOP Class UID or image attributes)")
    if not any(tag in dataset for tag in PIXEL_TAGS):
        reread = _read_in_other_byte_order(data)
        if reread is not None:
            return reread
    truncation = _truncation_warnings(caught)
    if truncation:
        raise TruncatedFileError(f"DICOM file is truncated: {truncation[0]}")
    return dataset


def _truncation_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(item.message) for item in caught
            if "End of file" in str(item.message) or "truncat" in str(item.message).lower()]


def _read_in_other_byte_order(data: bytes) -> pydicom.Dataset | None:
    """The data set of a file whose file meta declares an explicit VR byte order its body is not written in.

    Read in the declared order such a body parses to nonsense (no image); it is read in the other order when that
    gives an image cleanly, else None (then the declared reading and its diagnosis stand).
    """
    position = data.find(b"\x02\x00\x10\x00UI", 0, 2048)  # the file meta's Transfer Syntax UID, little endian
    if position < 0:
        return None
    length = int.from_bytes(data[position + 6:position + 8], "little")
    declared = UID(data[position + 8:position + 8 + length].rstrip(b"\0 ").decode("ascii", "replace"))
    other = OTHER_BYTE_ORDER.get(declared)
    if other is None:
        return None
    patched = data[:position + 8] + str(other).encode().ljust(length, b"\0") + data[position + 8 + length:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = pydicom.dcmread(io.BytesIO(patched))
        except Exception:  # noqa: BLE001 - not an image in the other order either
            return None
    if _truncation_warnings(caught) or "Rows" not in dataset or not any(tag in dataset for tag in PIXEL_TAGS):
        return None
    warnings.warn(f"transfer syntax mismatch: the file meta declares {declared.name} but the data set is "
                  f"encoded {other.name}; read as {other.name}", stacklevel=5)  # at read_dicom's caller
    return dataset


def _spacing(dataset: pydicom.Dataset) -> tuple[tuple[float, float] | None, str | None]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = dataset.get(keyword)
        try:
            row, column = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if row > 0 and column > 0:  # 0/0 is a placeholder some modalities write
            return (row, column), keyword
    return None, None


def has_burned_in_annotation(dataset: pydicom.Dataset) -> bool:
    """BurnedInAnnotation YES: text (possibly identifying) is part of the pixels."""
    return (_text(dataset, "BurnedInAnnotation") or "").upper() == "YES"


def _metadata(dataset: pydicom.Dataset, shape: tuple[int, ...], window_source: str) -> DicomMetadata:
    body_part = _text(dataset, "BodyPartExamined")
    region, region_from = dicom_body_region(dataset)
    side, side_from = dicom_laterality(dataset, region)
    spacing, spacing_source = _spacing(dataset)
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    return DicomMetadata(
        modality=_text(dataset, "Modality"),
        body_part=body_part,
        body_region=region,
        region_from=region_from,
        view_position=_text(dataset, "ViewPosition"),
        laterality=side,
        laterality_from=side_from,
        pixel_spacing=spacing,
        pixel_spacing_source=spacing_source,
        rows=int(shape[0]),
        columns=int(shape[1]),
        bits_stored=int(dataset.BitsStored) if "BitsStored" in dataset else None,
        bits_allocated=int(dataset.BitsAllocated) if "BitsAllocated" in dataset else None,
        photometric=_text(dataset, "PhotometricInterpretation"),
        transfer_syntax=str(syntax) if syntax else "",
        number_of_frames=int(dataset.get("NumberOfFrames", 1) or 1),
        window_source=window_source,
        orientation=_orientation(dataset),
        burned_in_annotation=has_burned_in_annotation(dataset),
        study_instance_uid=_text(dataset, "StudyInstanceUID"),
        study_fallback_key=_study_fallback_key(dataset),
    )


def _orientation(dataset: pydicom.Dataset) -> list[str] | None:
    """PatientOrientation as its two direction codes (``["R", "F"]``), None when absent or malformed."""
    value = dataset.get("PatientOrientation")
    values = [str(part).strip().upper() for part in (value if isinstance(value, (list, tuple,
              pydicom.multival.MultiValue)) else str(value or "").split("\\"))]
    return values if len(values) == 2 and all(part and set(part) <= set("LRAPHF") for part in values) else None


def _study_fallback_key(dataset: pydicom.Dataset) -> str | None:
    patient = _text(dataset, "PatientID")
    when = _text(dataset, "AccessionNumber") or _text(dataset, "StudyDate")
    return f"{patient}|{when}" if patient and when else None
