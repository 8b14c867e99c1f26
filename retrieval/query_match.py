"""Is a query file a catalogued image?  By its bytes, else by its decoded pixels (a re-saved / re-encoded copy).

Case search (``radloop search --image``, the app's upload) searches such a file as that case, its own study left
out, instead of embedding it and finding the original as its own nearest neighbour at distance 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

__all__ = ["CatalogMatch", "match_catalog_file"]


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


def match_catalog_file(catalog, data: bytes) -> CatalogMatch | None:
    """The catalogued image a file is: by the SHA-256 of its bytes, else by its pixel hash, or None.

    The pixel hash is computed as ingest computes ``images.pixel_hash``
    (:func:`radloop.core.ingest_worker.file_pixel_hash`); rows catalogued before pixel hashes existed have none and
    match by bytes only.  A file that cannot be decoded matches nothing (embedding it says why it is unreadable).
    """
    from radloop.core.deid import content_hash
    from radloop.core.ingest_worker import file_pixel_hash
    from radloop.core.schema import DuplicateSource, Image

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
