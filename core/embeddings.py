"""Embedding storage: sharded ``.npy`` files under ``<workspace>/embeddings/<model_version>/`` with one
catalog row per (image, model version) pointing at ``(shard_path, row)``; this module reads and checks them.

Writers append whole shards (:mod:`radloop.core.embedding_writer`: written to a temporary name, then linked to a
free ``shard-NNNNN.npy`` name, then recorded), so an interrupted run leaves either a complete shard with its rows
or nothing; rerunning embeds only what is missing.  A shard file lost from disk (deleted, truncated, of the wrong
width) leaves rows that point nowhere: :func:`forget_lost_shards` removes them so that ``radloop embed`` embeds
those images again (unless every shard of the version is lost: a moved or unmounted folder is restored, not
re-embedded), and :func:`load_embeddings` names such a shard instead of failing inside numpy.  Writers that check
the catalog before they write (``radloop embed``) do so under :func:`embedding_write_lock`.  The writer's names
(:func:`write_shard`, :func:`next_shard_index`, :func:`shard_number`, :func:`embedding_write_lock`) are
importable from here too.
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select

from radloop.core.catalog import IN_CHUNK, Catalog, chunked
from radloop.core.embedding_writer import (STALE_TEMPORARY_S, embedding_write_lock, next_shard_index,
                                           retire_shard_numbers, shard_number, write_shard)
from radloop.core.schema import Embedding, Image

__all__ = [
    "STALE_TEMPORARY_S", "EmbeddingSet", "EmbeddingShardError", "LostShard", "embedded_image_ids",
    "embedded_versions", "embedding_mark", "embedding_write_lock", "forget_lost_shards", "load_embeddings",
    "lost_shards", "missing_image_ids", "next_shard_index", "shard_number", "stored_setting", "stored_settings",
    "write_shard",
]

logger = logging.getLogger(__name__)


def _fix_hint(model_version: str) -> str:
    return (f"run `radloop embed --encoder {model_version}`: it embeds the images of missing or unreadable shard "
            "files again and writes new shards (when every shard file of the version is missing, restore its folder "
            "or add --reembed-lost)")


class EmbeddingShardError(FileNotFoundError, ValueError):
    """A shard file the catalog points at is missing, unreadable or shorter than its rows say.

    Both a ``FileNotFoundError`` and a ``ValueError``, so that commands report it where they report a missing
    file or a bad value; not a ``LookupError``, which callers read as "not embedded yet" (embedding those images
    again would then collide with the rows that are still there).
    """


@dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings of one model version.

    Attributes:
        model_version: the encoder's registry version.
        image_ids: ids in row order, length N.
        vectors: float32 array of shape (N, D).
    """

    model_version: str
    image_ids: list[str]
    vectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0


@dataclass(frozen=True)
class LostShard:
    """A shard file that cannot serve the catalog rows pointing at it.

    Attributes:
        shard_path: workspace-relative path the rows point at.
        images: how many rows (images) point at it.
        reason: what is wrong (``is missing``, ``is unreadable (...)``, ``is truncated (...)``,
            ``has the wrong width (...)``).
    """

    shard_path: str
    images: int
    reason: str


def _majority_dim(dims: Iterable[tuple[int, int]]) -> int | None:
    """The vector width most of the ``(dim, rows)`` pairs record (None for none)."""
    counts: Counter[int] = Counter()
    for dim, rows in dims:
        counts[int(dim)] += int(rows)
    return counts.most_common(1)[0][0] if counts else None


def _read_shard(path: Path, rows: int, dim: int | None) -> tuple[np.ndarray | None, str | None]:
    """``(memory-mapped (R, D) array, None)``, or ``(None, what is wrong)`` when the file cannot serve ``rows`` rows
    of ``dim`` values.

    Raises:
        OSError: any other failure to read (permissions, an I/O error, a stale NFS handle, no memory to map): not
            a lost shard, since the same file may read next time, so its rows must not be forgotten.
    """
    try:
        shard = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return None, "is missing" if path.parent.is_dir() else f"is missing (so is its folder {path.parent})"
    except (ValueError, EOFError, pickle.UnpicklingError) as error:  # cut inside the header or data, not an .npy
        return None, f"is unreadable ({error})"
    if not isinstance(shard, np.ndarray):  # an .npz archive: np.load opened it
        shard.close()
        return None, "is unreadable (not an .npy array)"
    if shard.ndim != 2:
        return None, "is unreadable (not a 2-D array)"
    if shard.shape[0] < rows:
        return None, f"is truncated (it holds {shard.shape[0]} rows, the catalog points at row {rows - 1})"
    if dim is not None and shard.shape[1] != dim:
        return None, f"has the wrong width (vectors of {shard.shape[1]} values, the catalog's of {dim})"
    return shard, None


def missing_image_ids(catalog: Catalog, model_version: str) -> list[str]:
    """Catalog images with no embedding for ``model_version`` (sorted, deterministic)."""
    with catalog.session() as session:
        # NOT EXISTS, not NOT IN (subquery): PostgreSQL runs NOT IN row by row over the subquery once its hash
        # would exceed work_mem (a few hundred thousand ids), quadratic on a large archive
        done = select(Embedding.id).where(Embedding.image_id == Image.id, Embedding.model_version == model_version)
        return list(session.scalars(select(Image.id).where(~done.exists()).order_by(Image.id)))


def embedded_image_ids(catalog: Catalog, model_version: str, image_ids: list[str]) -> set[str]:
    """Those of ``image_ids`` that have an embedding for ``model_version``."""
    found: set[str] = set()
    with catalog.session() as session:
        for chunk in chunked(image_ids, IN_CHUNK):
            found.update(session.scalars(select(Embedding.image_id).where(Embedding.model_version == model_version,
                                                                          Embedding.image_id.in_(chunk))))
    return found


def lost_shards(catalog: Catalog, model_version: str) -> list[LostShard]:
    """The shards of ``model_version`` whose file is missing, unreadable, shorter than its rows say, or holds
    vectors of another width than most of the version's rows record.

    One grouped query (a row per shard, not per image) and one header read per shard file.

    Raises:
        OSError: a shard file could not be read for another reason than those (see :func:`_read_shard`).
    """
    query = (select(Embedding.shard_path, func.count(), func.max(Embedding.row), func.max(Embedding.dim))
             .where(Embedding.model_version == model_version).group_by(Embedding.shard_path))
    with catalog.session() as session:
        shards = session.execute(query).all()
    dim = _majority_dim((shard_dim, images) for _, images, _, shard_dim in shards)
    lost = []
    for shard_path, images, last_row, _ in sorted(shards):
        shard, reason = _read_shard(catalog.workspace.absolute(shard_path), int(last_row) + 1, dim)
        del shard  # only the header was read: release the map
        if reason is not None:
            lost.append(LostShard(shard_path=shard_path, images=int(images), reason=reason))
    return lost


def _refuse_total_loss(catalog: Catalog, model_version: str, lost: list[LostShard]) -> None:
    """Raise when every shard file of ``model_version`` is missing: a folder moved or not mounted, whose rows must
    not be forgotten (copied back, its files would pair the rows re-embedded meanwhile with the wrong vectors).
    Files that are there but damaged (cut, unreadable, another width) are no moved folder: they are forgotten."""
    if not all(shard.reason.startswith("is missing") for shard in lost):
        return
    with catalog.session() as session:
        shards = session.scalar(select(func.count(func.distinct(Embedding.shard_path)))
                                .where(Embedding.model_version == model_version)) or 0
    if len(lost) < shards:
        return
    folder = catalog.workspace.absolute(lost[0].shard_path).parent
    where = (f"its folder {folder} is missing" if not folder.is_dir() else
             f"its only shard file, {Path(lost[0].shard_path).name}, is missing from {folder}" if len(lost) == 1 else
             f"none of its {len(lost)} shard files is in {folder}")
    raise EmbeddingShardError(
        f"every embedding shard file of {model_version} is missing ({sum(shard.images for shard in lost)} images): "
        f"{where}. If the folder was moved or is not mounted, restore it; to embed those images again instead, run "
        f"`radloop embed --encoder {model_version} --reembed-lost`")


def forget_lost_shards(catalog: Catalog, model_version: str, *, allow_total_loss: bool = False) -> list[LostShard]:
    """Delete the catalog rows of ``model_version`` that point at lost shards (:func:`lost_shards`), with a
    warning, so that those images count as not embedded; returns the lost shards.

    The rows are listed again and deleted under :func:`embedding_write_lock` (another run may have repaired them
    meanwhile), and the lost shards' numbers are never given to new shards (:func:`retire_shard_numbers`).

    Args:
        allow_total_loss: forget the rows even when every shard of the version is lost.

    Raises:
        EmbeddingShardError: every shard is lost and not ``allow_total_loss`` (nothing is forgotten; the message
            names the folder).
        OSError: a shard file could not be read (nothing is forgotten).
    """
    lost = lost_shards(catalog, model_version)  # the usual answer (none), without the lock
    if not lost:
        return []
    if not allow_total_loss:  # before the lock, whose file would re-create a moved embeddings folder
        _refuse_total_loss(catalog, model_version, lost)
    with embedding_write_lock(catalog):
        lost = lost_shards(catalog, model_version)
        if not lost:
            return []
        if not allow_total_loss:
            _refuse_total_loss(catalog, model_version, lost)
        retire_shard_numbers(catalog, model_version)  # counts the rows about to go
        with catalog.session() as session:
            for paths in chunked([shard.shard_path for shard in lost], IN_CHUNK):
                session.execute(delete(Embedding).where(Embedding.model_version == model_version,
                                                        Embedding.shard_path.in_(paths)))
    names = ", ".join(f"{Path(shard.shard_path).name} {shard.reason}" for shard in lost[:10])
    logger.warning("embeddings of %s: %d images pointed at %d lost shard file(s) (%s%s); their catalog rows are "
                   "removed and the images are embedded again", model_version, sum(shard.images for shard in lost),
                   len(lost), names, ", ..." if len(lost) > 10 else "")
    return lost


def load_embeddings(catalog: Catalog, model_version: str, image_ids: list[str] | None = None) -> EmbeddingSet:
    """Load all (or the given) embeddings of ``model_version`` as float32, in catalog-id order.

    Vectors are gathered shard by shard into one preallocated array (no per-row copies).  Ids are sent in chunks
    of :data:`IN_CHUNK` (PostgreSQL takes 65535 bound parameters at most); for a third of the version or more, the
    version's rows are read in order and filtered here instead (one read beats many chunks there).

    Raises:
        LookupError: no embeddings for that model version.
        EmbeddingShardError: a shard file the rows point at is missing, unreadable, truncated or of another width
            than most of the rows asked for record (the message names it and the command that re-creates it).
        OSError: a shard file could not be read for another reason (see :func:`_read_shard`).
    """
    query = select(Embedding.image_id, Embedding.shard_path, Embedding.row, Embedding.dim).where(
        Embedding.model_version == model_version).order_by(Embedding.image_id)
    with catalog.session() as session:
        wanted = None if image_ids is None else sorted(set(image_ids))
        if wanted is not None and len(wanted) > IN_CHUNK and len(wanted) * 3 > (session.scalar(
                select(func.count()).select_from(Embedding).where(Embedding.model_version == model_version)) or 0):
            # a third of the version or more: one ordered read of every row, filtered here (at 300k rows and a 120k
            # list 1.05 s vs 1.11 s in chunks; no id list is sent as bound parameters: PostgreSQL takes 65535)
            keep = set(wanted)
            rows = [row for row in session.execute(query) if row[0] in keep]
        elif wanted is not None:  # sorted ids in chunks: the chunks' ordered rows concatenate in catalog-id order
            rows = [row for chunk in chunked(wanted, IN_CHUNK) for row in session.execute(query.where(
                Embedding.image_id.in_(chunk)))]
        else:
            rows = session.execute(query).all()
    if not rows:
        raise LookupError(f"no embeddings for model version {model_version!r}: run "
                          f"`radloop embed --encoder {model_version}` first")
    ids = [image_id for image_id, _, _, _ in rows]
    dim = _majority_dim(Counter(row_dim for _, _, _, row_dim in rows).items())
    by_shard: dict[str, tuple[list[int], list[int]]] = {}
    for position, (_, shard_path, row, _) in enumerate(rows):
        positions, shard_rows = by_shard.setdefault(shard_path, ([], []))
        positions.append(position)
        shard_rows.append(row)
    vectors = np.empty((len(rows), dim), dtype=np.float32)
    for shard_path, (positions, shard_rows) in by_shard.items():
        path = catalog.workspace.absolute(shard_path)
        shard, reason = _read_shard(path, max(shard_rows) + 1, dim)
        if shard is None:
            raise EmbeddingShardError(f"the embedding shard file {path} of {model_version} {reason} ({len(positions)} "
                                      f"of the embeddings asked for lie in it); {_fix_hint(model_version)}")
        vectors[np.asarray(positions)] = shard[np.asarray(shard_rows)]  # float16 shards: converted here
        del shard
    return EmbeddingSet(model_version=model_version, image_ids=ids, vectors=vectors)


def stored_settings(catalog: Catalog, model_version: str) -> tuple[set[bool], set[str]]:
    """How ``model_version``'s vectors are stored: its ``normalized`` settings and ``dtype`` s (empty sets when
    nothing is stored; more than one only where an earlier radloop mixed them)."""
    with catalog.session() as session:
        rows = session.execute(select(Embedding.normalized, Embedding.dtype)
                               .where(Embedding.model_version == model_version).distinct()).all()
    return {row[0] for row in rows}, {row[1] for row in rows}


def stored_setting(values: set, default: Any) -> Any:
    """The one value of a :func:`stored_settings` set, ``default`` when it is empty, ``"mixed"`` for several."""
    return next(iter(values)) if len(values) == 1 else ("mixed" if values else default)


def embedded_versions(catalog: Catalog) -> dict[str, int]:
    """Model versions with embeddings and their counts."""
    with catalog.session() as session:
        return dict(session.execute(select(Embedding.model_version, func.count()).group_by(Embedding.model_version)).all())


def embedding_mark(catalog: Catalog, model_version: str, upto: int | None = None) -> dict[str, int]:
    """``{"max_id": M, "count": C}``: the largest embedding row id of ``model_version`` (or ``upto``) and how many
    of its rows have an id up to it.  An index records the mark taken before it read the embeddings; while the
    version still has ``C`` rows up to ``M``, the rows it may lack are those above ``M`` (one indexed query
    instead of reading every id)."""
    with catalog.session() as session:
        if upto is None:
            upto = session.scalar(select(func.max(Embedding.id)).where(Embedding.model_version == model_version)) or 0
        count = session.scalar(select(func.count()).select_from(Embedding).where(
            Embedding.model_version == model_version, Embedding.id <= upto)) or 0
    return {"max_id": int(upto), "count": int(count)}
