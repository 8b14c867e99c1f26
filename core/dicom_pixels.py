"""Decode a DICOM data set's stored pixel values (step 1 of :mod:`radloop.core.dicom_io`'s pipeline), checked
against its image header.

A header that does not describe its pixel data gets one clear error rather than a wrong image or a numpy
traceback:

- native data shorter than Rows x Columns x SamplesPerPixel x BitsAllocated x frames (pydicom's own error says
  neither which attribute nor which file); longer data (beyond an odd length's padding byte) is warned about and
  only the first frame's bytes are used (pydicom took a whole extra frame's worth for a second frame);
- a JPEG 2000 (SIZ marker), JPEG or JPEG-LS (SOF marker) codestream whose size or component count differs from
  Rows/Columns/SamplesPerPixel, read before anything is allocated (pydicom fails with a broadcast error);
- RLE Lossless segments that decode to more or fewer bytes than Rows x Columns (pydicom cut the longer ones
  silently to the declared size, so 32 x 32 read the rows of a 32 x 64 image wrapped);
- native pixel words in the other byte order than the transfer syntax's (they overflow BitsStored as declared and
  fit byte-swapped).  This cannot be seen in 8-bit words (one byte has no order) nor when BitsStored fills the
  word (every value fits either way); those are read as declared.

Rows and Columns swapped (or any other shape of the same size) cannot be told from the data in any syntax.
"""

from __future__ import annotations

import io
import re
import struct
import warnings

import numpy as np
import pydicom
from pydicom.pixels import get_decoder, pixel_array
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes, RLELossless

from radloop.core.input_errors import (
    CorruptImageError, NoPixelDataError, NotAnImageObjectError, TruncatedFileError, UnsupportedTransferSyntaxError,
)

__all__ = ["PIXEL_TAGS", "decode_stored_values"]

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: SOP Class UID of a DICOMDIR (Media Storage Directory Storage, PS3.4 Annex B)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: JPEG start-of-frame markers (ITU T.81 B.1.1.3: SOF0-3, 5-7, 9-11, 13-15) and JPEG-LS SOF55 (T.87 C.2.2)
SOF_MARKERS = frozenset([*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7])
#: pydicom's RLE decoder, on a segment longer (a warning) or shorter (an error) than Rows x Columns
RLE_SEGMENT_SIZE = re.compile(r"RLE segment[^(\d]*\(?(\d+) vs\. (\d+) bytes")


def _check_declared_size(dataset: pydicom.Dataset) -> None:
    """Refuse a frame declaring more pixels than Pillow decodes (twice its decompression-bomb limit, as ingest
    and uploads apply to PNG / JPEG), before decoding: a few kilobytes of RLE or JPEG data may declare 65535 x 65535
    pixels, which the decoder allocates (gigabytes) before it finds out.  Radiographs stay far below (a stitched
    long-leg CR: ~30 megapixels)."""
    from PIL import Image as PILImage

    limit = 2 * (PILImage.MAX_IMAGE_PIXELS or 0)
    try:
        rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
        samples = int(dataset.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError):
        return  # decoding reports a header that makes no sense
    if limit and rows * columns * samples > limit:
        raise CorruptImageError(f"image too large to decode safely ({columns} x {rows} pixels declared; at most "
                                f"{limit / 1e6:.0f} megapixels)")


def decode_stored_values(dataset: pydicom.Dataset) -> np.ndarray:
    """Decode the first frame's stored values (H, W), or (H, W, 3) for colour, with unused high bits cleared.

    Raises:
        NoPixelDataError, UnsupportedTransferSyntaxError, TruncatedFileError, CorruptImageError.
    """
    if not any(tag in dataset for tag in PIXEL_TAGS):
        hint = _no_pixels_hint(dataset)
        error = NotAnImageObjectError if hint.endswith(NOT_AN_IMAGE) else NoPixelDataError
        raise error(f"DICOM object has no pixel data element{hint}")
    _check_declared_size(dataset)
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        syntax = _syntax_from_encoding(dataset)
    try:
        compressed = syntax.is_compressed
    except ValueError:
        raise UnsupportedTransferSyntaxError(f"unknown transfer syntax UID {syntax}") from None
    if compressed:
        _check_codestream_size(dataset, syntax)  # a mismatch is reported even where no decoder is installed
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) if decoder is not None else "no pydicom decoder"
            raise UnsupportedTransferSyntaxError(
                f"transfer syntax {syntax.name} ({syntax}) has no installed decoder ({missing})")
    else:
        _check_native_length(dataset)
    # native words with unused bits come raw (pydicom would keep the low BitsStored bits whatever HighBit says)
    raw_words = (not compressed and "PixelData" in dataset
                 and 0 < int(dataset.get("BitsStored") or 0) < int(dataset.get("BitsAllocated") or 0))
    # native data always by frame: data longer than one frame must not come back as several
    first_frame = not compressed or int(dataset.get("NumberOfFrames", 1) or 1) > 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            array = pixel_array(dataset, index=0 if first_frame else None,
                                **({"correct_unused_bits": False} if raw_words else {}))
        except Exception as error:  # decoders raise ValueError, RuntimeError, OSError, ... on bad data
            if syntax == RLELossless:
                _check_rle_segment_size(str(error), dataset, error)
            # pydicom's "exceptions were raised by all available plugins:" names the reasons on the next lines
            message = " ".join(line.strip() for line in str(error).splitlines()) or type(error).__name__
            if "less than expected" in message or "truncated" in message.lower():
                raise TruncatedFileError(f"pixel data is truncated: {message}") from error
            raise CorruptImageError(f"cannot decode pixel data ({syntax.name}): {message}") from error
    if syntax == RLELossless:
        for warning in caught:
            _check_rle_segment_size(str(warning.message), dataset)
    if raw_words:
        array = _stored_field(array, dataset, syntax)
    if str(dataset.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:  # the stored values are palette indices: apply the palette, the colour path makes it grey
            return np.asarray(apply_color_lut(array, dataset))
        except Exception as error:  # noqa: BLE001
            raise CorruptImageError(f"PALETTE COLOR image whose palette cannot be applied: {error}") from error
    return _respect_bits_stored(array, dataset)


#: The end of the message of a data set of a known class that is no image (a structured report, a presentation
#: state, an encapsulated PDF): :class:`NotAnImageObjectError`, skipped by ingest with a warning.
NOT_AN_IMAGE = ": not an image object"


def _no_pixels_hint(dataset: pydicom.Dataset) -> str:
    """Why a data set has no pixel data, as far as its header tells: a DICOMDIR, another kind of object (its SOP
    class named), or an image whose pixels were removed or cut off."""
    file_meta = getattr(dataset, "file_meta", None)
    sop_class = str(dataset.get("SOPClassUID", "") or (file_meta.get("MediaStorageSOPClassUID", "")
                                                        if file_meta is not None else "") or "").strip()
    if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in dataset:
        return (": it is a DICOMDIR (the index of a DICOM disc or folder), not an image; ingest the folder, "
                "whose image files are ingested themselves")
    if "Rows" in dataset:
        return (" although the image module (Rows/Columns) is present: the pixel data was removed or the file "
                "is truncated")
    if not sop_class:
        return " nor a SOP Class UID: the header is cut short or damaged"
    name = pydicom.uid.UID(sop_class).name
    if "Image Storage" in name:  # an image class without Rows either: the header stops early
        return f" nor Rows/Columns although its SOP Class is {name}: the file is truncated or damaged"
    return f" (SOP Class {name}){NOT_AN_IMAGE}" if name != sop_class else f" (SOP Class {sop_class})"


def _file(dataset: pydicom.Dataset) -> str:
    """``"<path>: "`` for a data set read from a path (its ``filename``), else nothing (bytes: the caller knows)."""
    name = getattr(dataset, "filename", None)
    return f"{name}: " if isinstance(name, str) and name else ""


def _header_size(dataset: pydicom.Dataset) -> str:
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    return (f"Rows {dataset.Rows} x Columns {dataset.Columns} x SamplesPerPixel {dataset.SamplesPerPixel} x "
            f"BitsAllocated {dataset.BitsAllocated} x {frames} frame{'s' if frames > 1 else ''}")


def _check_native_length(dataset: pydicom.Dataset) -> None:
    """Compare native pixel data's length with what the header declares (see the module docstring).

    Raises:
        TruncatedFileError: the pixel data is shorter.
    """
    tag = next(tag for tag in PIXEL_TAGS if tag in dataset)
    try:
        expected = get_expected_length(dataset, "bytes")
    except (AttributeError, TypeError, ValueError):  # attributes missing: pydicom's decoder names them
        return
    actual = len(dataset[tag].value or b"")
    if actual < expected:
        raise TruncatedFileError(
            f"{_file(dataset)}pixel data is {actual} bytes but the header needs {expected} "
            f"({_header_size(dataset)}): the data is truncated or the header does not describe it")
    if actual > expected + 1:  # one byte pads odd lengths
        warnings.warn(f"{_file(dataset)}pixel data is {actual} bytes, {actual - expected} more than the header needs "
                      f"({_header_size(dataset)}); only the first frame's bytes are read",
                      stacklevel=4)  # at read_dicom's caller


def _check_codestream_size(dataset: pydicom.Dataset, syntax) -> None:
    """Compare the first codestream's size (JPEG 2000 SIZ, JPEG/JPEG-LS SOF marker) with Rows/Columns and
    SamplesPerPixel before decoding.

    pydicom allocates the declared size and then fails with a numpy broadcast error; the image is not decoded at
    the codestream's size either: header and pixel data that disagree may not belong to the same image.
    """
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    if "PixelData" not in dataset or syntax not in (*JPEG2000TransferSyntaxes, *JPEGTransferSyntaxes,
                                                    *JPEGLSTransferSyntaxes):
        return
    buffer = io.BytesIO(dataset.PixelData)
    try:
        parse_basic_offsets(buffer)
        fragment = next(generate_fragments(buffer))
    except Exception:  # noqa: BLE001 - a broken encapsulation is reported by the decoder
        return
    if syntax in JPEG2000TransferSyntaxes:
        kind, size = "JPEG 2000", _siz_size(fragment)
    else:
        kind, size = ("JPEG-LS" if syntax in JPEGLSTransferSyntaxes else "JPEG"), _sof_size(fragment)
    if size is None:
        return
    width, height, components = size
    rows, columns, samples = dataset.get("Rows"), dataset.get("Columns"), dataset.get("SamplesPerPixel", 1)
    if (rows, columns) != (height, width) or components != samples:
        in_components = f" with {components} component(s)" if components != samples else ""
        in_samples = f" with SamplesPerPixel {samples}" if components != samples else ""
        raise CorruptImageError(
            f"{_file(dataset)}{kind} codestream is {width} x {height} (columns x rows){in_components} but the "
            f"DICOM header declares {columns} x {rows}{in_samples}: header and pixel data do not belong together")


def _siz_size(fragment: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) of a JPEG 2000 codestream's SIZ marker (ISO 15444-1 A.5.1), or None."""
    start = fragment.find(b"\xff\x4f\xff\x51", 0, 4096)  # SOC then SIZ: also found inside a JP2 wrapper
    if start < 0 or len(fragment) < start + 42:
        return None
    width_end, height_end, width_offset, height_offset = struct.unpack(">4I", fragment[start + 8:start + 24])
    components = int.from_bytes(fragment[start + 40:start + 42], "big")
    return width_end - width_offset, height_end - height_offset, components


def _sof_size(fragment: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) of a JPEG or JPEG-LS codestream's frame header, or None where it cannot be
    read from the first fragment (or the height comes later, in a DNL marker)."""
    if not fragment.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 4 <= len(fragment):
        if fragment[position] != 0xFF:
            return None
        marker = fragment[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length follows
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        length = int.from_bytes(fragment[position + 2:position + 4], "big")
        if marker in SOF_MARKERS:
            if length < 8 or len(fragment) < position + 10:
                return None
            height, width = struct.unpack(">2H", fragment[position + 5:position + 9])
            return (width, height, fragment[position + 9]) if height and width else None
        position += 2 + length
    return None


def _check_rle_segment_size(message: str, dataset: pydicom.Dataset, error: Exception | None = None) -> None:
    """Raise the size mismatch pydicom's RLE decoder reported in ``message``: a segment (one byte of each
    sample) decoded to more than Rows x Columns bytes (plus one, padding an odd count) or to fewer."""
    match = RLE_SEGMENT_SIZE.search(message)
    if match is None:
        return
    actual, expected = int(match.group(1)), int(match.group(2))
    if expected <= actual <= expected + 1:
        return
    raise CorruptImageError(
        f"{_file(dataset)}RLE Lossless segments decode to {actual} bytes but the DICOM header declares Rows "
        f"{dataset.Rows} x Columns {dataset.Columns} ({expected} bytes): header and pixel data do not belong "
        "together") from error


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


def _fits(words: np.ndarray, bits: int) -> bool:
    """Whether every word holds a ``bits``-bit value: unsigned, or sign-extended for signed words."""
    if words.dtype.kind == "i":
        return -(1 << (bits - 1)) <= int(words.min()) and int(words.max()) <= (1 << (bits - 1)) - 1
    return int(words.max()) <= (1 << bits) - 1


def _stored_field(words: np.ndarray, dataset: pydicom.Dataset, syntax) -> np.ndarray:
    """The stored values in raw native ``words``: the BitsStored bits ending at HighBit, sign-extended when signed.

    The field is normally the low bits (HighBit = BitsStored - 1).  Legacy files put it in the top bits (BitsStored
    12, HighBit 15), which pydicom ignores (keeping the low 12 bits of such words gives a sawtooth); a HighBit above
    the field whose words use the bits below it and none above BitsStored is taken for a mis-declared one.

    Raises:
        CorruptImageError: the words are in the other byte order than ``syntax`` says: they overflow the field
            as read (unsigned, or not sign-extended when signed) but all fit in it byte-swapped.  Words whose
            field is empty and whose bits above it are set (overlay planes over a blank image) are no evidence
            when BitsStored > 8; at 8 bits or fewer, values in the other byte order always look like that.
    """
    words = words.astype(words.dtype.newbyteorder("="), copy=False)  # pydicom gives big endian data as ">u2"
    allocated, stored = words.dtype.itemsize * 8, int(dataset.BitsStored)
    high_bit = int(dataset.get("HighBit", stored - 1) or 0)
    unsigned = words.view(f"u{words.dtype.itemsize}")
    shift = high_bit + 1 - stored if stored - 1 <= high_bit < allocated else 0
    if shift and unsigned.max() >> stored == 0 and (unsigned & ((1 << shift) - 1)).any():
        shift = 0
    if not shift:
        if _fits(words, stored):  # the usual case: the words are the values
            return words
        # one byte has no byte order; an empty field is evidence only at 8 bits or fewer (see Raises)
        if (allocated > 8 and _fits(words.byteswap(), stored)
                and (stored <= 8 or (unsigned & ((1 << stored) - 1)).any())):
            raise CorruptImageError(
                f"{_file(dataset)}pixel data byte order does not match the transfer syntax {syntax.name}: the "
                f"{allocated}-bit words overflow BitsStored {stored} as declared but fit byte-swapped")
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
