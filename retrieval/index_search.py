"""Searching an index manager: k nearest neighbours with id filters, tombstones and exact re-ranking.

Split from :mod:`radloop.retrieval.index`: :class:`IndexSearch` is mixed into
:class:`~radloop.retrieval.index.IndexManager` (which holds the FAISS index, the label -> id map, the
tombstones and the vectors kept for re-ranking), and ``radloop.retrieval.index`` re-exports
:class:`SearchResult`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["IndexSearch", "SearchResult"]


@dataclass(frozen=True)
class SearchResult:
    """Neighbours of Q queries.

    Attributes:
        ids: Q lists of up to k image ids, nearest first.
        distances: float32 (Q, min(k, entries)): 1 - cosine similarity (cosine) or Euclidean distance (l2); inf pads.
    """

    ids: list[list[str]]
    distances: np.ndarray


def _id_list(ids, name: str = "ids") -> list[str]:
    """Ids as a list of strings (``str()`` of each); a bare string is refused, not split into characters.

    Also what :class:`~radloop.retrieval.index.IndexManager` reads ids of ``add`` / ``remove`` with.
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a list of ids, not a single string: pass [{ids!r}]")
    try:
        return [str(value) for value in ids]
    except TypeError:
        raise TypeError(f"{name} must be a list of ids, got {type(ids).__name__}") from None


class IndexSearch:
    """``search`` of an index manager (mixed into :class:`~radloop.retrieval.index.IndexManager`)."""

    def search(self, queries: np.ndarray, k: int = 10, *, allowed_ids: list[str] | None = None,
               exclude_ids: list[str] | None = None, model_version: str | None = None) -> SearchResult:
        """Nearest neighbours of queries (Q, D) (or one (D,) query).

        Args:
            queries: float array (Q, D) or (D,).
            k: neighbours per query (at most the number of entries: ``distances`` has min(k, len) columns).
            allowed_ids: restrict results to these ids (a list; FAISS id selector: exact filtering).
            exclude_ids: drop these ids from the results (a list; e.g. the query image itself).
            model_version: the encoder version of the queries; checked against the index's when given.

        Ids are compared as ``str(id)``; unknown ids in either list are ignored.
        """
        import faiss

        self._check_version(model_version)
        if self.index is None or not len(self):
            raise ValueError("the index is empty")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        # never more neighbours than entries: a huge k would allocate a (Q, k) padding array (MemoryError)
        k = min(int(k), len(self))
        queries = np.asarray(queries)
        prepared = self._prepare(queries[None, :] if queries.ndim == 1 else queries)
        exclude_ids = _id_list(exclude_ids or (), "exclude_ids")
        excluded = {self._labels[value] for value in exclude_ids if value in self._labels} | self._removed
        fetch = min(k + len(excluded), self.index.ntotal)
        parameters = None
        if allowed_ids is not None:
            allowed_ids = dict.fromkeys(_id_list(allowed_ids, "allowed_ids"))  # a repeat is one hit, not two
            allowed = np.asarray([self._labels[value] for value in allowed_ids if value in self._labels],
                                 dtype=np.int64)
            if not len(allowed):
                return SearchResult([[] for _ in prepared], np.zeros((len(prepared), 0), dtype=np.float32))
            if faiss.try_extract_index_ivf(self.index) is None and len(allowed) <= 50_000:
                # graph indexes miss small allowed sets: score them exactly from stored/reconstructed vectors
                return self._to_result(*self._score_subset(prepared, allowed), k, excluded)
            selector = faiss.IDSelectorBatch(allowed)
            # a small allowed set may sit in cells a normal query does not visit: visit them all
            parameters = self._search_parameters(selector, exhaustive=len(allowed) <= self.index.ntotal // 10)
        return self._to_result(*self._search_labels(prepared, fetch, parameters), k, excluded)

    def _search_labels(self, prepared: np.ndarray, fetch: int, parameters=None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search of prepared queries for ``fetch`` labels each, re-ranked when configured."""
        wanted = fetch
        if self.config.rerank and self._vectors is not None:
            wanted = min(fetch * self._rerank_factor(), self.index.ntotal)
        scores, labels = (self.index.search(prepared, wanted, params=parameters) if parameters is not None
                          else self.index.search(prepared, wanted))
        if self.config.rerank and self._vectors is not None:
            scores, labels = self._rerank(prepared, labels)
        return scores, labels

    def _search_parameters(self, selector, exhaustive: bool = False):
        import faiss

        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nlist if exhaustive else ivf.nprobe)
        return faiss.SearchParameters(sel=selector)

    def _score_subset(self, queries: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the given labels (L,) for every query, sorted best first."""
        if self._vectors is not None:
            vectors = np.asarray(self._vectors[labels])
        else:
            vectors = np.stack([self.index.reconstruct(int(label)) for label in labels])
        return self._rerank(queries, np.broadcast_to(labels, (len(queries), len(labels))).copy(), vectors)

    def _rerank(self, queries: np.ndarray, labels: np.ndarray,
                subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for candidate labels (Q, M) (padded with -1), re-sorted best first.

        ``subset`` (M, D) gives the vectors when every row holds the same labels.
        """
        if subset is not None:
            candidates = np.broadcast_to(subset, (len(queries), *subset.shape))
        else:
            safe = np.where(labels < 0, 0, labels)
            candidates = np.asarray(self._vectors[safe.ravel()]).reshape(*labels.shape, self.dim)
        if self.config.metric == "cosine":
            scores = np.einsum("qkd,qd->qk", candidates, queries)
            scores[labels < 0] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")
        else:
            scores = ((candidates - queries[:, None, :]) ** 2).sum(axis=2)
            scores[labels < 0] = np.inf
            order = np.argsort(scores, axis=1, kind="stable")
        return np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)

    def _to_result(self, scores: np.ndarray, labels: np.ndarray, k: int, excluded: set[int]) -> SearchResult:
        cosine = self.config.metric == "cosine"
        all_ids, all_distances = [], np.full((len(labels), k), np.inf, dtype=np.float32)
        for row, (row_scores, row_labels) in enumerate(zip(scores, labels)):
            kept = []
            for score, label in zip(row_scores, row_labels):
                if label < 0 or label in excluded or self._ids[label] is None:
                    continue
                distance = 1.0 - float(score) if cosine else math.sqrt(max(float(score), 0.0))
                all_distances[row, len(kept)] = distance
                kept.append(self._ids[label])
                if len(kept) == k:
                    break
            all_ids.append(kept)
        return SearchResult(all_ids, all_distances)

    def _rerank_factor(self) -> int:
        if self.config.rerank_factor:
            return self.config.rerank_factor
        return 8 if any(code in (self.factory or "") for code in ("PQ", "LSH", "RaBitQ")) else 2
