"""Reading radiographs into one-channel float pixels, and the encoders' shared preprocessing.

Every path into an encoder goes through :func:`to_unit_float` (any bit depth -> float32 in [0, 1]) and
:func:`resize_square` (the long and short side both to ``size``: renders are squashed, never cropped, so
that an embedding sees the whole radiograph).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["UnreadableImage", "read_image", "resize_square", "to_unit_float"]

_DICOM_SUFFIXES = {".dcm", ".dicom"}


class UnreadableImage(OSError):
    """An image file that cannot be decoded; the message says which file and why."""


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """Map a 2-D grayscale array of any dtype to float32 in [0, 1].

    uint8 is divided by 255; other integer types (12/16-bit radiographs) and floats outside [0, 1] are
    min-max scaled per image, keeping their full precision.  A 3-D array (H, W, C) is averaged over C.

    Raises:
        ValueError: not a 2-D (or H x W x C) array.
    """
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        channels = array[..., :3].astype(np.float32).mean(axis=-1)
        array = channels / 255.0 if array.dtype == np.uint8 else channels
        pixels = array
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if np.issubdtype(np.asarray(pixels).dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return array
    if high <= low:
        return np.zeros_like(array)
    return (array - low) / (high - low)


def _read_dicom(path: Path) -> np.ndarray:
    """The same display pixels ingest renders (modality / VOI LUT or window, MONOCHROME1 inverted, the file's
    layout checked): an encoder sees a DICOM read from a folder as it sees the catalog's render of it."""
    from radloop.core.dicom_io import read_dicom

    return read_dicom(path).pixels


def _is_dicom_file(file: Path) -> bool:
    """A DICOM Part 10 file whatever its name (archives often export them without a suffix)."""
    from radloop.core.dicom_io import is_dicom_bytes

    with open(file, "rb") as handle:
        return is_dicom_bytes(handle.read(132))


def read_image(path: str | Path) -> np.ndarray:
    """Read a PNG / JPEG (8 or 16 bit) or DICOM file (by suffix or content) as float32 (H, W) in [0, 1].

    Raises:
        UnreadableImage: missing, truncated or undecodable file (the reason is in the message).
    """
    from PIL import Image as PILImage

    file = Path(path)
    try:
        if file.suffix.lower() in _DICOM_SUFFIXES or _is_dicom_file(file):
            return _read_dicom(file)
        with PILImage.open(file) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                return to_unit_float(np.asarray(image, dtype=np.int32).astype(np.uint16))
            if image.mode != "L":
                image = image.convert("L")
            return np.asarray(image, dtype=np.uint8).astype(np.float32) / 255.0
    except Exception as error:  # noqa: BLE001 - any decoder failure means the same thing here
        raise UnreadableImage(f"{file}: {type(error).__name__}: {error}") from error


def resize_square(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (H, W), (1, H, W) or (B, 1, H, W) float pixels to ``size`` x ``size`` (antialiased bilinear)."""
    tensor = pixels
    squeeze = 0
    while tensor.ndim < 4:
        tensor = tensor.unsqueeze(0)
        squeeze += 1
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    for _ in range(squeeze):
        tensor = tensor.squeeze(0)
    return tensor
