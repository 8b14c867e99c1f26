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
from sqlalchemy import func, select

from radloop.core.catalog import Catalog
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
        done = select(Embedding.image_id).where(Embedding.model_version == model_version)
        return list(session.scalars(select(Image.id).where(Image.id.not_in(done)).order_by(Image.id)))


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
    with catalog.session() as session:
        for row, image_id in enumerate(image_ids):
            session.add(Embedding(image_id=image_id, model_version=model_version, shard_path=relative, row=row,
                                  dim=int(vectors.shape[1]), dtype=str(vectors.dtype), normalized=normalized))
    return target


def load_embeddings(catalog: Catalog, model_version: str, image_ids: list[str] | None = None) -> EmbeddingSet:
    """Load all (or the given) embeddings of ``model_version`` as float32, in catalog-id order.

    Raises:
        LookupError: no embeddings for that model version.
    """
    with catalog.session() as session:
        query = select(Embedding.image_id, Embedding.shard_path, Embedding.row).where(
            Embedding.model_version == model_version)
        if image_ids is not None:
            query = query.where(Embedding.image_id.in_(image_ids))
        rows = session.execute(query.order_by(Embedding.image_id)).all()
    if not rows:
        raise LookupError(f"no embeddings for model version {model_version!r}: run "
                          f"`radloop embed --encoder {model_version}` first")
    shards: dict[str, np.ndarray] = {}
    ids, vectors = [], []
    for image_id, shard_path, row in rows:
        if shard_path not in shards:
            shards[shard_path] = np.load(catalog.workspace.absolute(shard_path), mmap_mode="r")
        ids.append(image_id)
        vectors.append(np.asarray(shards[shard_path][row], dtype=np.float32))
    return EmbeddingSet(model_version=model_version, image_ids=ids, vectors=np.stack(vectors))


def embedded_versions(catalog: Catalog) -> dict[str, int]:
    """Model versions with embeddings and their counts."""
    with catalog.session() as session:
        return dict(session.execute(select(Embedding.model_version, func.count()).group_by(Embedding.model_version)).all())
