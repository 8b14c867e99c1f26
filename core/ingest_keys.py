"""The duplicate keys a batch of an ingest is checked against: catalogued images by pixel hash and SOP pseudonym.

A new file whose pixel hash (:func:`radloop.core.deid.pixel_hash`) is a catalogued image's is its duplicate; one
with a catalogued image's SOPInstanceUID pseudonym but other pixels is a conflict (see :mod:`radloop.core.ingest`).
:class:`CataloguedKeys` loads the rows a batch can collide with and is kept up to date while the batch is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from radloop.core.schema import Image

__all__ = ["Catalogued", "CataloguedKeys"]


@dataclass(frozen=True)
class Catalogued:
    """A catalogued image as the duplicate check sees it: its id, file and duplicate keys."""

    image_id: str
    source_path: str
    pixel_hash: str | None = None
    sop_pseudonym: str | None = None


class CataloguedKeys:
    """The catalogued images with the pixel hashes or SOP pseudonyms a batch carries (one query per kind and 500
    keys), kept up to date while the batch is written.  Of rows sharing a key the oldest is the original."""

    def __init__(self, session, keys: list[tuple[str | None, str | None]]):
        self.by_pixels: dict[str, Catalogued] = {}
        self.by_sop: dict[str, Catalogued] = {}
        #: every row loaded, by image id (the originals' twins among them)
        self.rows: dict[str, Catalogued] = {}
        found = {}
        for column, wanted in ((Image.pixel_hash, {pixels for pixels, _ in keys if pixels}),
                               (Image.sop_pseudonym, {sop for _, sop in keys if sop})):
            wanted = sorted(wanted)
            for start in range(0, len(wanted), 500):
                for row in session.execute(
                        select(Image.id, Image.pixel_hash, Image.sop_pseudonym, Image.source_path, Image.created_at)
                        .where(column.in_(wanted[start:start + 500]))):
                    found[row.id] = row
        # oldest first over both queries: a row found by its pixel hash may share a SOP pseudonym with an older one
        for row in sorted(found.values(), key=lambda row: (row.created_at is None, row.created_at or 0, row.id)):
            self.add(row.id, row.pixel_hash, row.sop_pseudonym, row.source_path)

    def add(self, image_id: str, pixel_hash: str | None, sop_pseudonym: str | None, source_path: str) -> None:
        entry = Catalogued(image_id=image_id, source_path=source_path, pixel_hash=pixel_hash,
                            sop_pseudonym=sop_pseudonym)
        self.rows.setdefault(image_id, entry)
        if pixel_hash:
            self.by_pixels.setdefault(pixel_hash, entry)
        if sop_pseudonym:
            self.by_sop.setdefault(sop_pseudonym, entry)

    def sharing_keys(self, image_id: str, pixel_hash: str | None, sop_pseudonym: str | None) -> list[Catalogued]:
        """The other loaded rows with this pixel hash or SOP pseudonym."""
        return [row for row in self.rows.values() if row.image_id != image_id and (
            (pixel_hash and row.pixel_hash == pixel_hash) or (sop_pseudonym and row.sop_pseudonym == sop_pseudonym))]
