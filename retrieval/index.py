"""FAISS index management: choose, train, add, remove, search, persist and memory-map.

Ids are the catalog's string image ids; FAISS sees sequential int64 labels and the manager keeps the
label -> id map (``None`` for removed entries).  Every method that takes ids (``build``, ``add``,
``remove``, ``search``'s ``allowed_ids`` / ``exclude_ids``, ``in``) converts them with ``str()``, so
``7`` and ``"7"`` name the same entry and results are always strings; a bare string where a list of ids
is expected is refused (it is not read as its characters).  Index types that cannot delete (HNSW) keep
removed entries as tombstones (saved as ``removed``, filtered at search time).  Cosine similarity is
inner product on L2-normalised vectors.  An index folder (``<workspace>/indexes/<model_version>/``) holds
the index, the id map and, when exact re-ranking is on, the vectors (memory-mapped on load), plus
``manifest.json`` (model version, dimension, metric, factory string, resolved config, and the names of
those three files).  Each save writes a new generation of those files (``index-<gen>.faiss`` ...), reads
them back and checks them as ``load`` does, and only then writes the manifest that names them (atomically,
by rename); the previous generation is deleted only after that, so an interrupted or failed save leaves the
previous index loadable and never pairs one save's index with another's id map.

Searching lives in :mod:`radloop.retrieval.index_search` (:class:`SearchResult`, re-exported here) and saving /
loading in :mod:`radloop.retrieval.index_store`, both split from this module and mixed into
:class:`IndexManager`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np

from radloop.core.workspace import write_failure
from radloop.retrieval.arrays import as_float32
from radloop.retrieval.index_config import IndexConfig, choose_factory
from radloop.retrieval.index_search import IndexSearch, SearchResult, _id_list
from radloop.retrieval.index_store import MANIFEST, IndexPersistence, _generation_files, faiss_reason
from radloop.retrieval.index_training import train_index

__all__ = ["IndexConfig", "IndexManager", "MANIFEST", "SearchResult", "choose_factory", "index_folder"]

logger = logging.getLogger(__name__)

#: Fewest vectors an NSG index is built from (see :meth:`IndexManager._create`).
NSG_MIN_VECTORS = 1_000


def _safe_name(model_version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_version)


def index_folder(workspace, model_version: str) -> Path:
    """``<workspace>/indexes/<model_version>/``."""
    return Path(workspace.indexes_dir) / _safe_name(model_version)


def _faiss_write_error(error: RuntimeError) -> bool:
    """Whether FAISS failed writing a file (``could not open ... for writing: Read-only file system``, ``write error
    in ...: 8110 != 15360 (No space left on device)``)."""
    return "for writing" in str(error) or "write error" in str(error)


def _remove_unsaved_generation(folder: Path) -> None:
    """Delete the files this process wrote in ``folder`` that the manifest does not name (a save that failed)."""
    named = set(_generation_files(folder).values())
    patterns = (f"index-*-{os.getpid()}.faiss", f"ids-*-{os.getpid()}.json", f"vectors-*-{os.getpid()}.npy")
    leftovers = [path for pattern in patterns for path in folder.glob(pattern)]
    for path in [*leftovers, folder / f".{MANIFEST}.{os.getpid()}.tmp"]:
        if path.name not in named:
            with suppress(OSError):  # a read-only folder refuses even the unlink of a missing file
                path.unlink(missing_ok=True)


class IndexManager(IndexSearch, IndexPersistence):
    """One FAISS index over the embeddings of one encoder version.

    Args:
        dim: vector dimension.
        model_version: the encoder version the vectors come from (checked on add and load).
        config: index configuration.
    """

    def __init__(self, dim: int, model_version: str, config: IndexConfig | None = None):
        if dim <= 0:
            raise ValueError(f"dimension must be positive, got {dim}")
        self.dim = int(dim)
        self.model_version = model_version
        self.config = config or IndexConfig()
        self.factory: str | None = None
        self.index = None
        self.memory_mapped = False
        self._ids: list[str | None] = []
        self._labels: dict[str, int] = {}
        self._vectors: np.ndarray | None = None  # for re-ranking, row = label
        self._removed: set[int] = set()  # tombstones for index types that cannot remove
        self._source: Path | None = None  # the file a memory-mapped index was read from
        self.calibration: dict | None = None  # nprobe calibrated at build time (see IndexConfig.target_recall)
        self.trained_count: int | None = None  # vectors the index was created (trained) with; later adds extend it
        #: the catalog's embedding rows this index holds, as :func:`radloop.core.embeddings.embedding_mark` took it
        self.catalog_mark: dict | None = None
        self._progress: Callable[[str], None] | None = None  # set by build / from_catalog while they run

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, vectors: np.ndarray, ids: list[str], model_version: str, config: IndexConfig | None = None,
              progress: Callable[[str], None] | None = None) -> "IndexManager":
        """Choose, train and fill an index from ``vectors`` (N, D) with ``ids`` (N; stored as ``str(id)``);
        ``progress`` is told each stage that takes long at scale (training, adding, calibrating)."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, D), got shape {vectors.shape}")
        manager = cls(vectors.shape[1], model_version, config)
        manager._progress = progress
        try:
            manager.add(vectors, ids, model_version=model_version)
        finally:
            manager._progress = None
        return manager

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    @classmethod
    def from_catalog(cls, catalog, model_version: str, config: IndexConfig | None = None,
                     progress: Callable[[str], None] | None = None) -> "IndexManager":
        """Build from the embeddings stored in the catalog for ``model_version`` (``progress``: see ``build``)."""
        from radloop.core.embeddings import embedding_mark, load_embeddings

        mark = embedding_mark(catalog, model_version)  # before reading: rows added meanwhile lie above it
        if progress is not None and mark["count"]:
            progress(f"reading {mark['count']:,} embeddings of {model_version}")
        embeddings = load_embeddings(catalog, model_version)
        manager = cls.build(embeddings.vectors, embeddings.image_ids, model_version, config, progress)
        manager.catalog_mark = mark
        return manager

    @classmethod
    def saved_is_current(cls, catalog, model_version: str, config: IndexConfig | None = None) -> bool:
        """Whether the saved index of ``model_version`` is what :meth:`from_catalog` with ``config`` would
        build now: built (not extended since) from exactly the catalog's embeddings of that version, with this
        config and the index type it chooses for them, nothing removed (a round start then need not rebuild
        it).  False when there is none, it does not load, or it predates the ``trained_count`` record."""
        from sqlalchemy import select

        from radloop.core.schema import Embedding

        from radloop.core.embeddings import embedding_mark

        folder = index_folder(catalog.workspace, model_version)
        try:
            saved = cls.load(folder, model_version=model_version)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError):
            return False
        config = config or IndexConfig()
        wanted, built = config.model_dump(), saved.config.model_dump()
        if wanted["rerank"] is None:  # resolved from the factory when the index was created
            wanted.pop("rerank"), built.pop("rerank")
        if wanted != built or saved._removed or saved.trained_count != len(saved):
            return False
        mark = saved.catalog_mark
        if mark and embedding_mark(catalog, model_version) == mark:
            # every row up to the mark is indexed and there is none above it: the index holds exactly the rows
            # when it holds as many ids as there are rows
            count = mark["count"]
        else:
            with catalog.session() as session:
                stored = list(session.scalars(select(Embedding.image_id)
                                              .where(Embedding.model_version == model_version)))
            if len(stored) != len(saved) or not all(image_id in saved for image_id in stored):
                return False
            count = len(stored)
        return count == len(saved) and saved.factory == choose_factory(count, saved.dim, config)

    def save(self, folder: str | os.PathLike, *, note_metric_change: bool = True) -> Path:
        """:meth:`IndexPersistence.save <radloop.retrieval.index_store.IndexPersistence.save>`, with a write the
        disk refuses (full, read-only; FAISS says so in a ``RuntimeError``) as an ``OSError`` naming the folder and
        the cause, and none of the new generation's files left (the previous generation stays the saved index)."""
        try:
            return super().save(folder, note_metric_change=note_metric_change)
        except (OSError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and not _faiss_write_error(error):
                raise
            _remove_unsaved_generation(Path(folder))
            raise write_failure(error, folder, f"the index of {self.model_version}") from None

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have shape {vectors.shape}; this index ({self.model_version}) "
                             f"holds dimension {self.dim}")
        vectors = as_float32("vectors", vectors)  # NaN / inf, and float64 values that overflow float32
        if self.config.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ValueError(f"{int((norms == 0).sum())} zero vector(s) cannot be compared by cosine")
            vectors = vectors / norms
        return vectors

    def _create(self, count: int, training: np.ndarray) -> None:
        import faiss

        self.factory = choose_factory(count, self.dim, self.config)
        if "NSG" in self.factory.upper() and count < NSG_MIN_VECTORS:
            # FAISS builds NSG's graph with NNDescent, whose assertion on a small set aborts the whole process
            # (measured: 110 vectors within 200 builds; 300 and 1,000 vectors passed 40 of 40)
            raise ValueError(f"the {self.factory} index needs at least {NSG_MIN_VECTORS:,} vectors (got {count:,}): "
                             "FAISS's NSG graph build can abort the process on small sets; use --factory Flat "
                             "(exact) or HNSW32")
        self.trained_count = int(count)
        metric = faiss.METRIC_INNER_PRODUCT if self.config.metric == "cosine" else faiss.METRIC_L2
        try:
            index = faiss.index_factory(self.dim, self.factory, metric)
        except RuntimeError as error:
            raise ValueError(f"bad FAISS factory string {self.factory!r}: {faiss_reason(error)}") from None
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.cp.max_points_per_centroid = self.config.train_points_per_cell
            ivf.cp.niter = self.config.train_iterations
            ivf.cp.seed = self.config.seed
        if not index.is_trained:
            if ivf is not None and len(training) < ivf.nlist:
                raise ValueError(f"index {self.factory!r} needs at least {ivf.nlist} vectors to train, "
                                 f"got {len(training)}")
            self._say(f"training {self.factory} on {len(training):,} vectors")
            note = train_index(index, training, self.factory)  # FAISS's raw k-means warnings: one line
            if note:
                logger.warning(note)
        if not isinstance(index, (faiss.IndexIVF, faiss.IndexIDMap)) and ivf is None:
            index = faiss.IndexIDMap2(index)
        self.index = index
        if self.config.rerank is None:
            lossless = any(code in self.factory for code in ("SQfp16", "SQbf16"))
            lossy = not lossless and any(code in self.factory for code in ("SQ", "PQ", "LSH", "RaBitQ"))
            self.config = self.config.model_copy(update={"rerank": lossy})
        self._apply_search_parameters()

    def _apply_search_parameters(self) -> None:
        import faiss

        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            calibrated = (self.calibration or {}).get("nprobe")
            ivf.nprobe = self.config.nprobe or calibrated or min(ivf.nlist, max(16, ivf.nlist // 128))
            quantizer = faiss.downcast_index(ivf.quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                quantizer.hnsw.efSearch = self._coarse_ef_search(ivf.nprobe)
        inner = faiss.downcast_index(self.index.index) if isinstance(self.index, faiss.IndexIDMap) else self.index
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.config.ef_search

    def _coarse_ef_search(self, nprobe: int) -> int:
        """Search breadth of an HNSW coarse quantiser: it must find the ``nprobe`` nearest cells."""
        return max(self.config.coarse_ef_search or 32, 2 * nprobe)

    def _writable(self) -> None:
        """Indexes loaded memory-mapped are read-only: load them into memory before changing them."""
        if self.memory_mapped:
            import faiss

            self.index = faiss.read_index(str(self._source))
            self._apply_search_parameters()
            self.memory_mapped = False
            if self._vectors is not None:
                self._vectors = np.array(self._vectors)

    def _check_version(self, model_version: str | None) -> None:
        if model_version is not None and model_version != self.model_version:
            raise ValueError(f"vectors come from model version {model_version!r}; this index holds "
                             f"{self.model_version!r} embeddings (rebuild it for the new encoder)")

    def add(self, vectors: np.ndarray, ids: list[str], *, model_version: str | None = None) -> int:
        """Add vectors (N, D) with their ids; trains first when the index is new.

        Args:
            vectors: float array (N, D).
            ids: N unique ids not yet in the index (a list; stored as ``str(id)``).
            model_version: the encoder version of ``vectors``; checked against the index's when given.

        Raises:
            ValueError: wrong model version or dimension, NaNs, length mismatch, duplicate or already
                indexed ids.  The index is unchanged when this is raised.
            TypeError: ``ids`` is a single string, not a list.
        """
        self._check_version(model_version)
        ids = _id_list(ids)
        prepared = self._prepare(np.asarray(vectors))
        if len(ids) != len(prepared):
            raise ValueError(f"{len(prepared)} vectors but {len(ids)} ids")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in one add")
        existing = [value for value in ids if value in self._labels]
        if existing:
            raise ValueError(f"{len(existing)} id(s) are indexed already, e.g. {existing[:3]}; remove them first")
        if not len(ids):
            return 0
        created = self.index is None
        if created:
            self._create(len(prepared), prepared)
        self._writable()
        start = len(self._ids)
        labels = np.arange(start, start + len(ids), dtype=np.int64)
        self._say(f"adding {len(ids):,} vectors to the {self.factory} index")
        try:
            self.index.add_with_ids(prepared, labels)
        except RuntimeError as error:  # a forced factory FAISS cannot add to with ids (RFlat), or not twice (NSG)
            if created:
                self.index = None
            raise ValueError(f"the {self.factory} index cannot take {'these' if created else 'more'} vectors: "
                             f"{faiss_reason(error)}; rebuild with another --factory (Flat, HNSW32, IVF...)") from None
        self._ids.extend(ids)
        self._labels.update(zip(ids, labels.tolist()))
        if self.config.rerank:
            self._vectors = prepared if self._vectors is None else np.concatenate([self._vectors, prepared])
        if created:
            self._calibrate(prepared)
        return len(ids)

    def _calibrate(self, vectors: np.ndarray, k: int = 10) -> None:
        """Pick the smallest power-of-two ``nprobe`` whose recall@k reaches ``config.target_recall``.

        Queries are ``config.calibration_queries`` of the (already added, labels 0..N-1) vectors; the exact
        top k comes from a brute-force pass over all of them; each query's own match is left out of both.
        Recall is measured through the whole search path (re-ranking included).  When the codes cap the
        recall below the target, the search stops at the plateau (no gain over two doublings) instead of
        visiting every cell.  Only for IVF indexes whose ``nprobe`` the config leaves open.
        """
        import faiss

        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is None or self.config.nprobe is not None or len(vectors) <= k + 1:
            return
        self._say(f"calibrating nprobe to recall@{k} >= {self.config.target_recall} on sampled vectors")
        rng = np.random.default_rng(self.config.seed)
        rows = np.sort(rng.choice(len(vectors), min(self.config.calibration_queries, len(vectors)), replace=False))
        queries = vectors[rows]
        metric = faiss.METRIC_INNER_PRODUCT if self.config.metric == "cosine" else faiss.METRIC_L2
        _, truth = faiss.knn(queries, vectors, k + 1, metric=metric)

        def without_self(found: np.ndarray) -> list[set[int]]:
            return [set([label for label in row if label != own and label >= 0][:k])
                    for row, own in zip(found.tolist(), rows)]

        expected = without_self(truth)
        tried: list[tuple[int, float]] = []
        nprobe = 1
        while True:
            self.calibration = {"nprobe": nprobe}
            self._apply_search_parameters()
            _, found = self._search_labels(queries, k + 1)
            recall = float(np.mean([len(a & b) / k for a, b in zip(without_self(found), expected)]))
            tried.append((nprobe, round(recall, 4)))
            plateau = len(tried) >= 3 and recall - tried[-3][1] < 0.002
            if recall >= self.config.target_recall or nprobe >= ivf.nlist or plateau:
                break
            nprobe = min(2 * nprobe, ivf.nlist)
        best = max(value for _, value in tried)
        nprobe, recall = next((p, r) for p, r in tried if r >= min(self.config.target_recall, best - 0.002))
        self.calibration = {"nprobe": nprobe, "recall_at_10": round(recall, 4), "queries": len(rows),
                            "target_recall": self.config.target_recall, "tried": tried}
        self._apply_search_parameters()

    def remove(self, ids: list[str]) -> int:
        """Remove ids (a list; repeats count once); returns the number removed.

        Raises:
            ValueError: ids not in the index (nothing is removed then).
            TypeError: ``ids`` is a single string, not a list (nothing is removed).
        """
        import faiss

        ids = list(dict.fromkeys(_id_list(ids)))
        unknown = [value for value in ids if value not in self._labels]
        if unknown:
            raise ValueError(f"{len(unknown)} id(s) not in the index, e.g. {unknown[:3]}; nothing removed")
        if not ids:
            return 0
        self._writable()
        labels = np.asarray([self._labels[value] for value in ids], dtype=np.int64)
        try:
            self.index.remove_ids(faiss.IDSelectorBatch(labels))
        except RuntimeError:  # e.g. HNSW: keep a tombstone and filter at search time
            self._removed.update(labels.tolist())
        for value in ids:
            self._ids[self._labels.pop(value)] = None
        return len(labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:  # what a notebook shows
        return (f"IndexManager(model_version={self.model_version!r}, entries={len(self)}, dim={self.dim}, "
                f"factory={self.factory!r}, metric={self.config.metric!r}"
                + (", memory_mapped=True" if self.memory_mapped else "") + ")")

    def __contains__(self, image_id) -> bool:
        return str(image_id) in self._labels

    def memory_bytes(self) -> int:
        """Size of the serialised FAISS index (what it occupies in memory, id map excluded)."""
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)
