"""Is a query file a catalogued image?  By its bytes, else by its decoded pixels (a re-saved / re-encoded copy).

Case search (``radloop search --image``, the app's upload) searches such a file as that case, its own study left
out, instead of embedding it and finding the original as its own nearest neighbour at distance 0.  Also the
checks of a query given as pixels (an array, a PIL image) and the wording of a query file's decode error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from typing import Any

import numpy as np
from sqlalchemy import select

__all__ = ["CatalogMatch", "check_query_array", "decode_failure", "match_catalog_file", "pil_pixels"]


@dataclass(frozen=True)
class CatalogMatch:
    """A query file that is a catalogued image.

    Attributes:
        image_id: the catalog image.
        matched_by: ``file`` (the same bytes as the catalogued file or a recorded duplicate of it) or ``pixels``
            (another file with the same decoded pixels: re-saved, re-encoded losslessly, new UIDs).
    """

    image_id: str
    matched_by: str

    @property
    def message(self) -> str:
        if self.matched_by == "pixels":
            return f"same pixels as catalogued image {self.image_id}"
        return f"this file is catalogued image {self.image_id}"


def match_catalog_file(catalog, data: bytes | str | os.PathLike) -> CatalogMatch | None:
    """The catalogued image a file is: by the SHA-256 of its bytes, else by its pixel hash, or None.

    ``data``: the file's bytes, or its path (read here).

    The pixel hash is computed as ingest computes ``images.pixel_hash``
    (:func:`radloop.core.ingest_worker.file_pixel_hash`); rows catalogued before pixel hashes existed have none and
    match by bytes only.  A file that cannot be decoded matches nothing (embedding it says why it is unreadable).

    Raises:
        TypeError: ``data`` is neither bytes nor a path.
        FileNotFoundError: the path names no file.
    """
    from radloop.core.deid import content_hash
    from radloop.core.ingest_worker import file_pixel_hash
    from radloop.core.schema import DuplicateSource, Image

    data = _file_bytes(data)
    digest = content_hash(data)
    with catalog.session() as session:
        image_id = (session.scalar(select(Image.id).where(Image.content_hash == digest).limit(1))
                    or session.scalar(select(DuplicateSource.image_id)
                                      .where(DuplicateSource.content_hash == digest).limit(1)))
    if image_id is not None:
        return CatalogMatch(image_id, "file")
    try:
        pixels_key = file_pixel_hash(data)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 (PIL, pydicom and radloop's own decode errors alike)
        return None
    with catalog.session() as session:
        image_id = session.scalar(select(Image.id).where(Image.pixel_hash == pixels_key).order_by(Image.id).limit(1))
    return None if image_id is None else CatalogMatch(image_id, "pixels")


def _file_bytes(data) -> bytes:
    """``data`` as bytes: bytes as they are, a path read (a notebook passes the path it has at hand)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
            raise FileNotFoundError(f"no such file: {path}{where}")
        return path.read_bytes()
    raise TypeError(f"match_catalog_file needs the file's bytes or its path, got {type(data).__name__}")


def pil_pixels(image: Any) -> Any:
    """A PIL image's pixels as an array (palette, bilevel and alpha images as grey); anything else as given."""
    if not type(image).__module__.startswith("PIL."):  # PIL itself is not imported for a path or an array
        return image
    from PIL import Image as PILImage

    if not isinstance(image, PILImage.Image):
        return image
    return np.asarray(image.convert("L") if image.mode in ("1", "P", "PA", "LA", "RGBA", "CMYK") else image)


def check_query_array(image: np.ndarray) -> None:
    """Refuse a query array the encoder cannot take, naming it by its shape (not its values).

    Raises:
        ValueError: an empty array, or one with NaN or infinite pixels.
    """
    named = f"(an array of shape {image.shape}, dtype {image.dtype})"
    if image.size == 0:
        raise ValueError(f"cannot read the query image {named}: it has no pixels")
    if image.dtype.kind in "fc" and not np.isfinite(image).all():
        raise ValueError(f"cannot read the query image {named}: {int((~np.isfinite(image)).sum()):,} pixel(s) are "
                         "NaN or infinite")


def decode_failure(detail: str) -> str:
    """A decoder's message as the app's upload check words it (``radloop.core.render.decode_upload``): what is
    wrong with the file, without the exception's class name and the file named once more."""
    kind, _, message = detail.partition(": ")
    if kind == "UnidentifiedImageError":
        return "unrecognised content, not an image"
    if kind == "DecompressionBombError":
        return f"image too large to decode safely ({message})"
    return detail
