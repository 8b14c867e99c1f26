"""Embedding storage: sharded ``.npy`` files under ``<workspace>/embeddings/<model_version>/`` with one
catalog row per (image, model version) pointing at ``(shard_path, row)``.

Writers append whole shards (written to a temporary name, then renamed, then recorded), so an
interrupted run leaves either a complete shard with its rows or nothing; rerunning embeds only what is
missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select

from radloop.core.catalog import IN_CHUNK, Catalog
from radloop.core.schema import Embedding, Image


def _safe_version(model_version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_version)


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


def missing_image_ids(catalog: Catalog, model_version: str) -> list[str]:
    """Catalog images with no embedding for ``model_version`` (sorted, deterministic)."""
    with catalog.session() as session:
        # NOT EXISTS, not NOT IN (subquery): PostgreSQL runs NOT IN row by row over the subquery once its hash
        # would exceed work_mem (a few hundred thousand ids), quadratic on a large archive
        done = select(Embedding.id).where(Embedding.image_id == Image.id, Embedding.model_version == model_version)
        return list(session.scalars(select(Image.id).where(~done.exists()).order_by(Image.id)))


def write_shard(catalog: Catalog, model_version: str, image_ids: list[str], vectors: np.ndarray,
                *, normalized: bool) -> Path:
    """Write one shard (vectors (N, D), float16 or float32) and record its rows atomically-enough.

    Raises:
        ValueError: length mismatch or a non-2-D array.
    """
    if vectors.ndim != 2 or vectors.shape[0] != len(image_ids):
        raise ValueError(f"vectors shape {vectors.shape} does not match {len(image_ids)} image ids")
    folder = catalog.workspace.embeddings_dir / _safe_version(model_version)
    folder.mkdir(parents=True, exist_ok=True)
    with catalog.session() as session:
        count = session.scalar(select(func.count(func.distinct(Embedding.shard_path)))
                               .where(Embedding.model_version == model_version)) or 0
    index = count
    while (folder / f"shard-{index:05d}.npy").exists():
        index += 1
    target = folder / f"shard-{index:05d}.npy"
    temporary = folder / f".shard-{index:05d}.npy.tmp"
    with open(temporary, "wb") as handle:
        np.save(handle, vectors)
    os.replace(temporary, target)
    relative = catalog.workspace.relative(target)
    with catalog.session() as session:  # one executemany, not one ORM object per row
        session.execute(insert(Embedding), [
            {"image_id": image_id, "model_version": model_version, "shard_path": relative, "row": row,
             "dim": int(vectors.shape[1]), "dtype": str(vectors.dtype), "normalized": normalized}
            for row, image_id in enumerate(image_ids)])
    return target


def load_embeddings(catalog: Catalog, model_version: str, image_ids: list[str] | None = None) -> EmbeddingSet:
    """Load all (or the given) embeddings of ``model_version`` as float32, in catalog-id order.

    Vectors are gathered shard by shard into one preallocated array (no per-row copies).  More than
    :data:`IN_CHUNK` ids are not sent as bound parameters (PostgreSQL takes 65535 at most): the version's rows
    are read in order and filtered here.

    Raises:
        LookupError: no embeddings for that model version.
    """
    query = select(Embedding.image_id, Embedding.shard_path, Embedding.row).where(
        Embedding.model_version == model_version).order_by(Embedding.image_id)
    with catalog.session() as session:
        if image_ids is not None and len(image_ids) <= IN_CHUNK:
            rows = session.execute(query.where(Embedding.image_id.in_(image_ids))).all()
        else:  # every row, in the database's order; a long id list filters here, not as bound parameters
            wanted = None if image_ids is None else set(image_ids)
            rows = [row for row in session.execute(query) if wanted is None or row[0] in wanted]
    if not rows:
        raise LookupError(f"no embeddings for model version {model_version!r}: run "
                          f"`radloop embed --encoder {model_version}` first")
    ids = [image_id for image_id, _, _ in rows]
    by_shard: dict[str, tuple[list[int], list[int]]] = {}
    for position, (_, shard_path, row) in enumerate(rows):
        positions, shard_rows = by_shard.setdefault(shard_path, ([], []))
        positions.append(position)
        shard_rows.append(row)
    vectors: np.ndarray | None = None
    for shard_path, (positions, shard_rows) in by_shard.items():
        shard = np.load(catalog.workspace.absolute(shard_path), mmap_mode="r")
        if vectors is None:
            vectors = np.empty((len(rows), *shard.shape[1:]), dtype=np.float32)
        vectors[np.asarray(positions)] = shard[np.asarray(shard_rows)]  # float16 shards: converted here
        del shard
    return EmbeddingSet(model_version=model_version, image_ids=ids, vectors=vectors)


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
