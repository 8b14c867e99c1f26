"""DICOM grey-level steps 2-4 (PS3.3 C.11): modality LUT, VOI (LUT, window or automatic) and polarity.

:mod:`radloop.core.dicom_io` reads and decodes the stored values and calls :func:`to_display` /
:func:`to_display_uint8`; the order and choices are described there.

Pixel padding (PS3.3 C.7.5.1.1.2: Pixel Padding Value, up to Pixel Padding Range Limit, in stored values) is no
image: it is left out of the automatic window's percentiles and shown black, whatever the polarity (a MONOCHROME1
CR's padding of 0 would otherwise be the brightest thing in the render and squeeze the anatomy's contrast).
"""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from radloop.core.input_errors import CorruptImageError

__all__ = ["first_value", "to_display", "to_display_uint8"]


def to_display(stored: np.ndarray, dataset: pydicom.Dataset) -> tuple[np.ndarray, str]:
    """Display values in [0, 1] (1 = bright) of decoded stored values, and where the window came from."""
    if stored.ndim == 3:  # colour: luminance, then a plain percentile window
        values = stored[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return _auto_window(values)
    padding = _padding_mask(stored, dataset)
    values = _modality(stored, dataset)
    sample = None if padding is None else values[::4, ::4][~padding[::4, ::4]]
    display, source = _voi_and_polarity(values, dataset, sample=sample)
    if padding is not None:
        display[padding] = 0.0
    return display, source


def to_display_uint8(stored: np.ndarray, dataset: pydicom.Dataset) -> tuple[np.ndarray, str]:
    """:func:`to_display` as uint8, through a lookup table over the stored range when that is small (fast)."""
    if stored.ndim != 2 or stored.dtype.kind not in "iu":  # colour or float data: the direct path
        display, source = to_display(stored, dataset)
        return _uint8(display), source
    low, high = min(int(stored.min()), 0), int(stored.max())
    if high - low > 1 << 16:
        display, source = to_display(stored, dataset)
        return _uint8(display), source
    domain = np.arange(low, high + 1, dtype=np.int64).astype(stored.dtype)[np.newaxis, :]
    sample = _modality(stored[::4, ::4], dataset)  # the auto window's percentiles come from the image
    padding = _padding_mask(stored[::4, ::4], dataset)
    if padding is not None:
        sample = sample[~padding]
    display, source = _voi_and_polarity(_modality(domain, dataset), dataset, sample=sample)
    table = _uint8(display)[0]
    domain_padding = _padding_mask(domain, dataset)
    if domain_padding is not None:
        table[domain_padding[0]] = 0
    return np.take(table, stored if low == 0 else stored.astype(np.int32) - low), source


def _padding_mask(stored: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray | None:
    """Where ``stored`` holds pixel padding (Pixel Padding Value, through Pixel Padding Range Limit when given),
    or None when the data set declares none."""
    value = _stored_number(dataset.get("PixelPaddingValue"), dataset)
    if value is None:
        return None
    limit = _stored_number(dataset.get("PixelPaddingRangeLimit"), dataset)
    low, high = (value, value) if limit is None else (min(value, limit), max(value, limit))
    wide = stored.astype(np.int64, copy=False)
    return (wide >= low) & (wide <= high)


def _stored_number(value, dataset: pydicom.Dataset) -> int | None:
    """A US-or-SS attribute as an int (raw bytes where pydicom could not tell the VR, signed when the pixels are)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 2:
            return None
        signed = dataset.get("PixelRepresentation") == 1
        return int.from_bytes(value, "little" if _is_little_endian(dataset) else "big", signed=signed)
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def _uint8(display: np.ndarray) -> np.ndarray:
    scaled = np.multiply(display, 255.0, dtype=np.float32)
    scaled += 0.5
    return scaled.astype(np.uint8)


def _voi_and_polarity(values: np.ndarray, dataset: pydicom.Dataset, *,
                      sample: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    if "VOILUTSequence" in dataset:
        try:
            display, source = _apply_voi_table(values, dataset.VOILUTSequence[0], dataset), "voi_lut"
        except Exception:  # malformed LUT: fall back to the window or the data range
            display, source = _window_or_auto(values, dataset, sample)
    else:
        display, source = _window_or_auto(values, dataset, sample)
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    # MONOCHROME1 is shown inverted (its Presentation LUT Shape INVERSE says the same, not twice); a
    # MONOCHROME2 image with Presentation LUT Shape INVERSE asks for the inversion too
    if photometric == "MONOCHROME1" or str(dataset.get("PresentationLUTShape", "")).strip() == "INVERSE":
        display = 1.0 - display
    return display.astype(np.float32, copy=False), source


def _apply_voi_table(values: np.ndarray, item, dataset: pydicom.Dataset) -> np.ndarray:
    """A VOI LUT sequence item applied to ``values``, as display values in [0, 1].

    Done here rather than with pydicom's ``apply_voi_lut``, which indexes an 8-bit LUT of more than 256 entries
    through uint8 indices (wrapping around).  A LUT declared with 16-bit entries whose values use fewer bits
    (12-bit data in 16-bit words, common in CR) is scaled by the bits it uses, as DICOM viewers do.
    """
    entries, first, bits = (int(value) for value in item.LUTDescriptor)
    table = _lut_data(item, dataset, entries or 65536, bytes_when_short=True).astype(np.float32)
    if table.size == 0:
        raise ValueError("empty VOI LUT")
    indices = values if values.dtype.kind in "iu" else np.rint(values)
    indices = np.clip(indices.astype(np.int64) - first, 0, table.size - 1)
    top = float((1 << bits) - 1)
    used = float(table.max())
    if bits > 8 and 0 < used < (top + 1) / 16:  # e.g. 12-bit values in a 16-bit LUT
        top = float((1 << int(np.ceil(np.log2(used + 1)))) - 1)
    return np.clip(table[indices] / top, 0.0, 1.0)


def _apply_modality_table(stored: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """The Modality LUT Sequence's first table applied to ``stored`` (C.11.1.1), as float32.

    pydicom's ``apply_modality_lut`` makes a numpy dtype of the descriptor's bit depth, so it is used for 8 and 16;
    tables of 10-15-bit entries (in 16-bit words, e.g. 12-bit CR) are looked up here.
    """
    item = dataset.ModalityLUTSequence[0]
    entries, first, bits = (int(value) for value in item.LUTDescriptor)
    if bits in (8, 16):
        return np.asarray(apply_modality_lut(stored, dataset), dtype=np.float32)
    table = _lut_data(item, dataset, entries or 65536)
    if table.size == 0:
        raise CorruptImageError("the Modality LUT Sequence has an empty table")
    if first >= 1 << 15 and dataset.get("PixelRepresentation") == 1:  # the first mapped value is SS for signed data
        first -= 1 << 16
    return table.astype(np.float32)[np.clip(stored.astype(np.int64) - first, 0, table.size - 1)]


def _lut_data(item, dataset: pydicom.Dataset, entries: int, *, bytes_when_short: bool = False) -> np.ndarray:
    """A LUT's entries (the first ``entries``): LUTData as read when it is US (numbers), else its raw OW words
    in the data set's byte order (pydicom leaves OW undecoded: Explicit VR Big Endian ones are big endian).

    ``bytes_when_short``: fewer bytes than two per entry are one byte per entry (8-bit VOI LUTs so written).
    """
    raw = item["LUTData"].value
    if not isinstance(raw, (bytes, bytearray)):
        return np.asarray(raw if isinstance(raw, (list, tuple, pydicom.multival.MultiValue)) else [raw])
    if bytes_when_short and len(raw) < 2 * entries:
        return np.frombuffer(raw, dtype=np.uint8)[:entries]
    return np.frombuffer(raw, dtype=f"{'<' if _is_little_endian(dataset) else '>'}u2")[:entries]


def _is_little_endian(dataset: pydicom.Dataset) -> bool:
    """The data set's byte order, as pydicom's own LUT functions tell it: the file meta's transfer syntax, else
    the encoding it was read with; little endian when neither says."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_transfer_syntax and not syntax.is_private:
        return syntax.is_little_endian
    return getattr(dataset, "original_encoding", (None, None))[1] is not False


def _modality(stored: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    if "ModalityLUTSequence" in dataset:
        return _apply_modality_table(stored, dataset)
    # Same arithmetic as apply_modality_lut's rescale, in float32 instead of float64 (half the memory traffic);
    # without a rescale the stored integers go on unchanged (a VOI LUT indexes them).
    slope, intercept = float(dataset.get("RescaleSlope", 1) or 1), float(dataset.get("RescaleIntercept", 0) or 0)
    if slope == 1.0 and intercept == 0.0:
        return stored
    values = stored.astype(np.float32)
    if slope != 1.0:
        values *= slope
    if intercept != 0.0:
        values += intercept
    return values


def _window_or_auto(values: np.ndarray, dataset: pydicom.Dataset,
                    sample: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    center, width = first_value(dataset.get("WindowCenter")), first_value(dataset.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return _auto_window(values, sample)
    values = values.astype(np.float32, copy=False)
    function = str(dataset.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width)), "window"
    if function == "LINEAR_EXACT":
        display = (values - center) / width + 0.5
    else:  # LINEAR (C.11.2.1.2.1): (x - (c - 0.5)) / (w - 1) + 0.5
        display = (values - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5
    return np.clip(display, 0.0, 1.0, out=display), "window"


def _auto_window(values: np.ndarray, sample: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Percentile window (0.5-99.5 %) from a strided sample of the image; min/max when that range is flat."""
    values = values.astype(np.float32, copy=False)
    sample = values[::4, ::4] if sample is None or sample.size == 0 else sample  # all padding: the whole image
    low, high = np.percentile(sample, [0.5, 99.5])
    source = "percentile"
    if high <= low:
        low, high, source = float(sample.min()), float(sample.max()), "minmax"
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32), source
    display = (values - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(display, 0.0, 1.0, out=display), source


def first_value(value) -> float | None:
    """The first value of a (possibly multi-valued) numeric attribute, or None."""
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue) or isinstance(value, (list, tuple)):
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None
