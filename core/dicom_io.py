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

Steps 2-4 live in :mod:`radloop.core.dicom_display`.

Inconsistent files get one clear error rather than a wrong image: a JPEG 2000 codestream whose size (its SIZ
marker, read before anything is allocated) differs from Rows/Columns, and native pixel words in the other byte
order than the transfer syntax's (detected when they overflow BitsStored as declared and fit byte-swapped).  A
whole data set in the other explicit VR byte order than its file meta declares is unambiguous (the declared order
parses to nonsense, the other to an image) and is read in its own order, with a warning.

Only technical attributes reach :class:`DicomMetadata`; the StudyInstanceUID is kept solely so ingest can
derive a pseudonymous study id (it is excluded from :meth:`DicomMetadata.to_record`).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import JPEG2000TransferSyntaxes, UID, ExplicitVRBigEndian, ExplicitVRLittleEndian

from radloop.core.dicom_display import to_display, to_display_uint8
from radloop.core.input_errors import (
    CorruptImageError, EmptyFileError, NoPixelDataError, NotDicomError, TruncatedFileError,
    UnsupportedTransferSyntaxError,
)

__all__ = ["DicomImage", "DicomMetadata", "decode_stored_values", "display_image", "has_burned_in_annotation",
           "is_dicom_bytes", "read_dataset", "read_dicom"]

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: explicit VR transfer syntax -> the one in the other byte order (both UIDs are 19 characters long)
OTHER_BYTE_ORDER = {ExplicitVRLittleEndian: ExplicitVRBigEndian, ExplicitVRBigEndian: ExplicitVRLittleEndian}
#: DICOM BodyPartExamined (upper case) -> radloop body region (core.vocabulary.BODY_REGIONS).
BODY_PART_REGIONS = {
    "CHEST": "chest", "THORAX": "chest", "LUNG": "chest", "RIB": "chest", "RIBS": "chest",
    "HAND": "hand", "FINGER": "fingers", "FINGERS": "fingers", "WRIST": "wrist", "FOREARM": "forearm",
    "ELBOW": "elbow", "HUMERUS": "humerus", "ARM": "humerus", "SHOULDER": "shoulder", "CLAVICLE": "shoulder",
    "PELVIS": "pelvis", "HIP": "hip", "KNEE": "knee", "ANKLE": "ankle", "FOOT": "foot", "LEG": "leg",
    "FEMUR": "leg", "TIBIA": "leg", "LOWLEG": "leg", "UPRLEG": "leg", "SPINE": "spine", "CSPINE": "spine",
    "TSPINE": "spine", "LSPINE": "spine", "SSPINE": "spine", "SKULL": "skull", "HEAD": "skull",
    "ABDOMEN": "abdomen", "EXTREMITY": "extremity",
}


@dataclass(frozen=True)
class DicomMetadata:
    """Technical attributes of one DICOM image (no patient identifiers).

    ``pixel_spacing`` is (row, column) spacing in mm; ``pixel_spacing_source`` says which attribute gave it
    (``PixelSpacing`` is calibrated at the patient, ``ImagerPixelSpacing`` at the detector).
    ``window_source`` records how the display window was chosen: voi_lut | window | percentile | minmax.
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
    dataset = read_dataset(source)
    return display_image(dataset, decode_stored_values(dataset), as_uint8=as_uint8)


def display_image(dataset: pydicom.Dataset, stored: np.ndarray, *, as_uint8: bool = False) -> DicomImage:
    """The windowed image and metadata record of a data set whose stored values are already decoded
    (:func:`read_dicom` in steps, for a caller that also needs the stored values, e.g. ingest's pixel hash)."""
    if as_uint8:
        values, voi_source = to_display_uint8(stored, dataset)
    else:
        values, voi_source = to_display(stored, dataset)
    return DicomImage(pixels=values, metadata=_metadata(dataset, stored.shape, voi_source))


def decode_stored_values(dataset: pydicom.Dataset) -> np.ndarray:
    """Decode the first frame's stored values (H, W), or (H, W, 3) for colour, with unused high bits cleared.

    Raises:
        NoPixelDataError, UnsupportedTransferSyntaxError, TruncatedFileError, CorruptImageError.
    """
    if not any(tag in dataset for tag in PIXEL_TAGS):
        hint = (" although the image module (Rows/Columns) is present: the pixel data was removed or the file "
                "is truncated") if "Rows" in dataset else ""
        raise NoPixelDataError(f"DICOM object has no pixel data element{hint}")
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        syntax = _syntax_from_encoding(dataset)
    try:
        compressed = syntax.is_compressed
    except ValueError:
        raise UnsupportedTransferSyntaxError(f"unknown transfer syntax UID {syntax}") from None
    if compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) if decoder is not None else "no pydicom decoder"
            raise UnsupportedTransferSyntaxError(
                f"transfer syntax {syntax.name} ({syntax}) has no installed decoder ({missing})")
        if syntax in JPEG2000TransferSyntaxes:
            _check_codestream_size(dataset)
    # native words with unused bits come raw (pydicom would keep the low BitsStored bits whatever HighBit says)
    raw_words = (not compressed and "PixelData" in dataset
                 and 0 < int(dataset.get("BitsStored") or 0) < int(dataset.get("BitsAllocated") or 0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = pixel_array(dataset, index=0 if int(dataset.get("NumberOfFrames", 1) or 1) > 1 else None,
                                **({"correct_unused_bits": False} if raw_words else {}))
    except Exception as error:  # decoders raise ValueError, RuntimeError, OSError, ... on bad data
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "less than expected" in message or "truncated" in message.lower():
            raise TruncatedFileError(f"pixel data is truncated: {message}") from error
        raise CorruptImageError(f"cannot decode pixel data ({syntax.name}): {message}") from error
    if raw_words:
        array = _stored_field(array, dataset, syntax)
    if str(dataset.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:  # the stored values are palette indices: apply the palette, the colour path makes it grey
            return np.asarray(apply_color_lut(array, dataset))
        except Exception as error:  # noqa: BLE001
            raise CorruptImageError(f"PALETTE COLOR image whose palette cannot be applied: {error}") from error
    return _respect_bits_stored(array, dataset)


def _check_codestream_size(dataset: pydicom.Dataset) -> None:
    """Compare the first JPEG 2000 codestream's size (SIZ marker) with Rows/Columns before decoding.

    pydicom allocates the declared size and then fails with a numpy broadcast error; the image is not decoded at
    the codestream's size either: header and pixel data that disagree may not belong to the same image.
    """
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    if "PixelData" not in dataset:
        return
    buffer = io.BytesIO(dataset.PixelData)
    try:
        parse_basic_offsets(buffer)
        fragment = next(generate_fragments(buffer))
    except Exception:  # noqa: BLE001 - a broken encapsulation is reported by the decoder
        return
    start = fragment.find(b"\xff\x4f\xff\x51", 0, 4096)  # SOC then SIZ: also found inside a JP2 wrapper
    if start < 0 or len(fragment) < start + 24:
        return
    width_end, height_end, width_offset, height_offset = struct.unpack(">4I", fragment[start + 8:start + 24])
    width, height = width_end - width_offset, height_end - height_offset
    rows, columns = dataset.get("Rows"), dataset.get("Columns")
    if (rows, columns) != (height, width):
        raise CorruptImageError(
            f"JPEG 2000 codestream is {width} x {height} (columns x rows) but the DICOM header declares "
            f"{columns} x {rows}: header and pixel data do not belong together")


def _syntax_from_encoding(dataset: pydicom.Dataset):
    """The transfer syntax of a data set read without file meta (a raw data set): its parsed encoding."""
    from pydicom import uid

    encoding = getattr(dataset, "original_encoding", None)
    if not encoding or encoding[0] is None:
        raise TruncatedFileError("DICOM file meta has no Transfer Syntax UID and the encoding cannot be told "
                                 "(header truncated or damaged)")
    implicit, little = encoding
    syntax = (uid.ImplicitVRLittleEndian if implicit else
              uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
    if not hasattr(dataset, "file_meta") or dataset.file_meta is None:
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    return syntax


def read_dataset(source: str | os.PathLike | bytes) -> pydicom.Dataset:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
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
                  f"encoded {other.name}; read as {other.name}", stacklevel=4)  # at read_dicom's caller
    return dataset


def _stored_field(words: np.ndarray, dataset: pydicom.Dataset, syntax) -> np.ndarray:
    """The stored values in raw native ``words``: the BitsStored bits ending at HighBit, sign-extended when signed.

    The field is normally the low bits (HighBit = BitsStored - 1).  Legacy files put it in the top bits (BitsStored
    12, HighBit 15), which pydicom ignores (keeping the low 12 bits of such words gives a sawtooth); a HighBit above
    the field whose words use the bits below it and none above BitsStored is taken for a mis-declared one.

    Raises:
        CorruptImageError: the words are in the other byte order than ``syntax`` says (they overflow the field
            but fit in it byte-swapped).
    """
    words = words.astype(words.dtype.newbyteorder("="), copy=False)  # pydicom gives big endian data as ">u2"
    allocated, stored = words.dtype.itemsize * 8, int(dataset.BitsStored)
    high_bit = int(dataset.get("HighBit", stored - 1) or 0)
    unsigned = words.view(f"u{words.dtype.itemsize}")
    shift = high_bit + 1 - stored if stored - 1 <= high_bit < allocated else 0
    if shift and unsigned.max() >> stored == 0 and (unsigned & ((1 << shift) - 1)).any():
        shift = 0
    if not shift:
        signed = words.dtype.kind == "i"
        low, high = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
        if low <= words.min() and words.max() <= high:  # the usual case: the words are the values
            return words
        swapped_max = int(unsigned.byteswap().max()) if allocated > 8 else high + 1
        if 255 < swapped_max <= (1 << stored) - 1:  # not overlays or garbage: the other byte order
            raise CorruptImageError(
                f"pixel data byte order does not match the transfer syntax {syntax.name}: the {allocated}-bit "
                f"words overflow BitsStored {stored} as declared but fit byte-swapped")
    field = unsigned << (allocated - stored - shift)  # the field's top bit (HighBit) to the word's top bit
    return (field.view(words.dtype) if words.dtype.kind == "i" else field) >> (allocated - stored)


def _respect_bits_stored(array: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """Clear bits above BitsStored (overlay bits or garbage in the high bits of unsigned data)."""
    bits_stored = dataset.get("BitsStored")
    if bits_stored and array.dtype.kind == "u" and bits_stored < array.dtype.itemsize * 8:
        limit = (1 << int(bits_stored)) - 1
        if int(array.max()) > limit:
            array = np.bitwise_and(array, limit)
    return array


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


def _text(dataset: pydicom.Dataset, keyword: str) -> str | None:
    """An attribute as text; of a multi-valued one the first value (not the list's repr)."""
    value = dataset.get(keyword)
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    text = str(value).strip() if value is not None else ""
    return text or None


def _metadata(dataset: pydicom.Dataset, shape: tuple[int, ...], window_source: str) -> DicomMetadata:
    body_part = _text(dataset, "BodyPartExamined")
    spacing, spacing_source = _spacing(dataset)
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    return DicomMetadata(
        modality=_text(dataset, "Modality"),
        body_part=body_part,
        body_region=BODY_PART_REGIONS.get(body_part.upper().replace(" ", "").replace("-", "").replace("_", ""))
        if body_part else None,
        view_position=_text(dataset, "ViewPosition"),
        laterality=_text(dataset, "ImageLaterality") or _text(dataset, "Laterality"),
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
        burned_in_annotation=has_burned_in_annotation(dataset),
        study_instance_uid=_text(dataset, "StudyInstanceUID"),
        study_fallback_key=_study_fallback_key(dataset),
    )


def _study_fallback_key(dataset: pydicom.Dataset) -> str | None:
    patient = _text(dataset, "PatientID")
    when = _text(dataset, "AccessionNumber") or _text(dataset, "StudyDate")
    return f"{patient}|{when}" if patient and when else None
