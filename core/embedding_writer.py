"""Writing embedding shards: ``<workspace>/embeddings/<model_version>/shard-NNNNN.npy`` files and their catalog
rows (:func:`write_shard`), the shard numbers new shards get (:func:`next_shard_index`), and the workspace's
embedding write lock.

A shard is written to a temporary name (flushed to disk), then linked to a free ``shard-NNNNN.npy`` name, then
recorded, so an interrupted run leaves either a complete shard with its rows or nothing; a write the disk refused
names the shard and the cause (:func:`radloop.core.workspace.write_failure`).  Numbers of shards found lost are never
given again (:func:`retire_shard_numbers`; see :func:`radloop.core.embeddings.forget_lost_shards`), and temporary
files a killed writer left behind are removed after :data:`STALE_TEMPORARY_S`.  Reading, checking and forgetting
shards live in :mod:`radloop.core.embeddings`, which re-exports these names.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from radloop.core.catalog import Catalog
from radloop.core.schema import Embedding
from radloop.core.workspace import catalog_write_failure, write_failure

__all__ = ["STALE_TEMPORARY_S", "embedding_write_lock", "next_shard_index", "retire_shard_numbers", "shard_folder",
           "shard_number", "write_shard"]

logger = logging.getLogger(__name__)

_SHARD_NAME = re.compile(r"shard-(\d+)\.npy")
_NEXT_SHARD = ".next-shard"  # in a version's folder: the lowest shard number never used (see retire_shard_numbers)
#: Seconds after its last write when a writer's temporary file counts as left by a killed process.
STALE_TEMPORARY_S = 3600.0


def shard_number(path: str | Path) -> int | None:
    """``N`` of a ``shard-NNNNN.npy`` path, None for any other name."""
    match = _SHARD_NAME.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


@contextmanager
def embedding_write_lock(catalog: Catalog) -> Iterator[None]:
    """Hold the workspace's embedding write lock (``flock`` on ``<embeddings_dir>/.write.lock``) for the block.

    ``radloop embed``'s writers and :func:`radloop.core.embeddings.forget_lost_shards` check the catalog and then
    change it under this lock, so that no other run changes it in between.  Not reentrant: a process that holds it
    must not ask again.
    """
    catalog.workspace.embeddings_dir.mkdir(parents=True, exist_ok=True)
    with open(catalog.workspace.embeddings_dir / ".write.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def shard_folder(catalog: Catalog, model_version: str) -> Path:
    """``<embeddings_dir>/<model_version>/`` (the version's name made safe for a folder name)."""
    return catalog.workspace.embeddings_dir / re.sub(r"[^A-Za-z0-9._-]+", "_", model_version)


def retire_shard_numbers(catalog: Catalog, model_version: str) -> None:
    """Record that no shard number below :func:`next_shard_index`'s answer is ever given again, also once the rows
    that use them are deleted (a run that listed those shards as lost could otherwise delete a new shard's rows).

    Call it under :func:`embedding_write_lock`, before deleting the rows (it counts them).
    """
    folder = shard_folder(catalog, model_version)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{_NEXT_SHARD}-{os.getpid()}.tmp"
    try:
        temporary.write_text(str(next_shard_index(catalog, model_version)))
        os.replace(temporary, folder / _NEXT_SHARD)
    except OSError as error:  # a full disk: no row is forgotten (the caller deletes them after this)
        raise write_failure(error, folder / _NEXT_SHARD, f"the shard-number mark of {model_version}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _shard_mark(folder: Path) -> int:
    """The lowest shard number never used that :func:`retire_shard_numbers` left in ``folder`` (0 when none)."""
    with suppress(FileNotFoundError, NotADirectoryError, ValueError):  # a mark cut short by a crash: files count
        return int((folder / _NEXT_SHARD).read_text())
    return 0


def _sweep_temporaries(folder: Path, listing: list[str]) -> None:
    """Remove temporary files (a shard or mark being written) that no write touched for :data:`STALE_TEMPORARY_S`:
    left by a killed process (a live writer links its file away within the same call).  Age, not the process id,
    decides: the writer may run on another host of a shared file system."""
    now = time.time()
    for name in listing:
        if not (name.endswith(".tmp") and name.startswith((".shard-", f"{_NEXT_SHARD}-"))):
            continue
        path = folder / name
        with suppress(OSError):
            if now - path.stat().st_mtime > STALE_TEMPORARY_S:
                path.unlink()
                logger.info("removed %s, left by an interrupted writer", path)


def next_shard_index(catalog: Catalog, model_version: str) -> int:
    """One past the highest shard number of ``model_version`` that a catalog row or a file in its folder uses, and
    never below the mark :func:`retire_shard_numbers` leaves in the folder.

    One query and one folder listing: a writer calls it once and counts on from there (:func:`write_shard` checks
    the mark again for each shard).  Rows count as well as files, and the mark as well as both, so the name of a
    lost shard is never given to new vectors (a run that listed it as lost could otherwise delete their rows).
    Temporary files that interrupted writers left in the folder are removed on the way (:func:`_sweep_temporaries`).
    """
    folder = shard_folder(catalog, model_version)
    with catalog.session() as session:
        names = list(session.scalars(select(Embedding.shard_path).where(Embedding.model_version == model_version)
                                     .distinct()))
    floor = 0
    if folder.is_dir():
        listing = os.listdir(folder)
        names += listing
        _sweep_temporaries(folder, listing)
        if _NEXT_SHARD in listing:
            floor = _shard_mark(folder)
    numbers = [number for number in map(shard_number, names) if number is not None]
    return max(max(numbers, default=-1) + 1, floor)


def _publish(temporary: Path, folder: Path, index: int) -> Path:
    """Give the written ``temporary`` file the first free name ``shard-NNNNN.npy`` from ``index`` on."""
    while True:
        target = folder / f"shard-{index:05d}.npy"
        try:
            os.link(temporary, target)  # fails when the name is taken, also by a process that got there first
        except FileExistsError:
            index += 1
            continue
        except OSError:  # a file system without hard links: look, then rename
            if target.exists():
                index += 1
                continue
            os.replace(temporary, target)
            return target
        os.unlink(temporary)
        return target


def write_shard(catalog: Catalog, model_version: str, image_ids: list[str], vectors: np.ndarray,
                *, normalized: bool, index: int | None = None) -> Path:
    """Write one shard (vectors (N, D), float16 or float32) and record its rows atomically-enough.

    Args:
        index: the lowest shard number to use (taken names are skipped; an existing file is never replaced).
            A writer of many shards passes one past its previous shard's number (:func:`shard_number`), starting
            from :func:`next_shard_index`; None looks that up (one query over the version's rows).  Never below
            the mark of numbers :func:`retire_shard_numbers` recorded, also when they were retired after the lookup.

    Returns:
        The shard file's path.

    Raises:
        ValueError: length mismatch or a non-2-D array.
        sqlalchemy.exc.IntegrityError: an image already has an embedding for ``model_version`` (the shard file
            is removed again).
        OSError: the shard or its catalog rows could not be written (a full disk, a read-only folder): the
            message names the file and the cause (:func:`radloop.core.workspace.write_failure`); nothing of the
            shard is left.
    """
    if vectors.ndim != 2 or vectors.shape[0] != len(image_ids):
        raise ValueError(f"vectors shape {vectors.shape} does not match {len(image_ids)} image ids")
    folder = shard_folder(catalog, model_version)
    folder.mkdir(parents=True, exist_ok=True)
    if index is None:
        index = next_shard_index(catalog, model_version)
    else:  # a writer counting on from its first lookup: numbers forgotten since then are still never reused
        index = max(index, _shard_mark(folder))
    temporary = folder / f".shard-{index:05d}-{os.getpid()}.npy.tmp"
    try:
        try:
            with open(temporary, "wb") as handle:
                np.save(handle, vectors)
                handle.flush()
                os.fsync(handle.fileno())  # whole on disk before a name and rows point at it
        except OSError as error:  # numpy's short write names neither the file nor the cause
            raise write_failure(error, folder / f"shard-{index:05d}.npy", f"an embedding shard of {model_version}"
                                ) from None
        target = _publish(temporary, folder, index)
    except BaseException:  # e.g. the disk filled up: the partial file would hold the space for an hour
        temporary.unlink(missing_ok=True)
        raise
    relative = catalog.workspace.relative(target)
    try:
        with catalog.session() as session:  # one executemany, not one ORM object per row
            session.execute(insert(Embedding), [
                {"image_id": image_id, "model_version": model_version, "shard_path": relative, "row": row,
                 "dim": int(vectors.shape[1]), "dtype": str(vectors.dtype), "normalized": normalized}
                for row, image_id in enumerate(image_ids)])
    except BaseException as error:
        target.unlink(missing_ok=True)  # rolled back: no row points at it (e.g. an image embedded meanwhile)
        full = isinstance(error, OperationalError) and catalog_write_failure(
            error, catalog.workspace, f"the rows of embedding shard {target.name} to the catalog")
        if full:
            raise full from None
        raise
    return target
