"""The selection-strategy contract: a scikit-learn-style estimator whose ``select`` is a pure function of
arrays (embeddings, a labelled mask, probabilities, weak labels, groups, a budget and a seed).

Strategies never read the catalog or the clock.  Every input is validated here once, so that a bad array
fails with a message naming the problem (wrong shape, NaN, empty pool, budget 0) before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state


@dataclass(frozen=True)
class SelectionInput:
    """Validated inputs of one selection.

    Attributes:
        budget: number of samples wanted (>= 1).
        pool: indices (P,) of the unlabelled samples, ascending.
        labeled: indices (L,) of the labelled samples, ascending.
        embeddings: float32 (N, D) or None.
        probabilities: float (N, C) rows summing to ~1, or None.
        weak_labels: (N,) or None.
        groups: (N,) or None.
        random_state: a ``numpy.random.RandomState``.
    """

    budget: int
    pool: np.ndarray
    labeled: np.ndarray
    embeddings: np.ndarray | None
    probabilities: np.ndarray | None
    weak_labels: np.ndarray | None
    groups: np.ndarray | None
    random_state: np.random.RandomState

    @property
    def n_samples(self) -> int:
        return len(self.pool) + len(self.labeled)


def _check_finite(name: str, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{name} contain NaN or infinite values in {len(rows)} row(s), "
                         f"e.g. rows {rows[:5].tolist()}")


def validate_selection_input(budget: int, *, embeddings=None, labeled_mask=None, probabilities=None,
                             weak_labels=None, groups=None, random_state=None,
                             needs: tuple[str, ...] = (), strategy: str = "strategy") -> SelectionInput:
    """Check shapes and values of a selection's inputs.

    Raises:
        ValueError: budget < 1, no array to size the pool, mismatched lengths, NaNs, a missing input the
            strategy needs, or an empty unlabelled pool; the message names the problem.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    arrays = {"embeddings": embeddings, "probabilities": probabilities, "weak_labels": weak_labels,
              "groups": groups, "labeled_mask": labeled_mask}
    for name in needs:
        if arrays[name] is None:
            raise ValueError(f"strategy {strategy!r} needs {name}; none given")
    if embeddings is not None:
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] == 0:
            raise ValueError(f"embeddings must be a 2-D array (N, D), got shape {embeddings.shape}")
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        _check_finite("embeddings", embeddings)
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim == 1:
            probabilities = np.stack([1.0 - probabilities, probabilities], axis=1)
        if probabilities.ndim != 2:
            raise ValueError(f"probabilities must be (N, C), got shape {probabilities.shape}")
        _check_finite("probabilities", probabilities)
        if (probabilities < -1e-6).any() or (probabilities > 1 + 1e-6).any():
            raise ValueError("probabilities must lie in [0, 1]")
    sizes = {name: len(value) for name, value in
             (("embeddings", embeddings), ("probabilities", probabilities), ("weak_labels", weak_labels),
              ("groups", groups), ("labeled_mask", labeled_mask)) if value is not None}
    if not sizes:
        raise ValueError("selection needs at least embeddings or probabilities to know the pool size")
    if len(set(sizes.values())) > 1:
        raise ValueError("inputs disagree on the number of samples: "
                         + ", ".join(f"{name}={size}" for name, size in sizes.items()))
    count = next(iter(sizes.values()))
    if labeled_mask is None:
        labeled_mask = np.zeros(count, dtype=bool)
    labeled_mask = np.asarray(labeled_mask)
    if labeled_mask.dtype != bool:
        raise ValueError(f"labeled_mask must be a boolean array, got dtype {labeled_mask.dtype}")
    pool = np.flatnonzero(~labeled_mask)
    if len(pool) == 0:
        raise ValueError(f"empty pool: all {count} samples are labelled (or none were given); "
                         "nothing left to select")
    return SelectionInput(
        budget=int(budget), pool=pool, labeled=np.flatnonzero(labeled_mask), embeddings=embeddings,
        probabilities=probabilities,
        weak_labels=None if weak_labels is None else np.asarray(weak_labels),
        groups=None if groups is None else np.asarray(groups),
        random_state=check_random_state(random_state))


class SelectionStrategy(BaseEstimator):
    """Base class: subclasses set ``name``/``needs`` and implement ``_select``.

    After ``select``: ``scores_`` (one score per picked index, higher = picked earlier) and ``reasons_``
    (one short human-readable reason per picked index) describe the picks.
    """

    name: ClassVar[str] = ""
    #: inputs the strategy cannot work without ("embeddings", "probabilities", "weak_labels", "groups").
    needs: ClassVar[tuple[str, ...]] = ()
    #: inputs it uses once they exist and replaces by its own cold start until then (hybrids: probabilities).
    uses: ClassVar[tuple[str, ...]] = ()

    def select(self, budget: int, *, embeddings=None, labeled_mask=None, probabilities=None,
               weak_labels=None, groups=None, random_state=None) -> np.ndarray:
        """Pick up to ``budget`` unlabelled samples.

        Args:
            budget: number of samples wanted (>= 1); fewer come back when the pool is smaller.
            embeddings: float array (N, D).
            labeled_mask: bool array (N,), True for samples that are labelled already.
            probabilities: model probabilities (N, C) (or (N,) positive-class probabilities).
            weak_labels: (N,) report weak labels (class index, NaN / negative = unknown).
            groups: (N,) stratum of each sample (e.g. body region).
            random_state: seed or ``RandomState``.

        Returns:
            int64 indices into the N samples, unique, unlabelled, in priority order.
        """
        data = validate_selection_input(
            budget, embeddings=embeddings, labeled_mask=labeled_mask, probabilities=probabilities,
            weak_labels=weak_labels, groups=groups, random_state=random_state, needs=self.needs,
            strategy=self.name)
        picks, scores, reasons = self._select(data)
        picks = np.asarray(picks, dtype=np.int64)
        self.scores_ = np.asarray(scores, dtype=np.float64)
        self.reasons_ = list(reasons)
        return picks

    def _select(self, data: SelectionInput) -> tuple[np.ndarray, np.ndarray, list[str]]:
        raise NotImplementedError


def top_scores(pool: np.ndarray, scores: np.ndarray, budget: int, random_state: np.random.RandomState,
               ) -> tuple[np.ndarray, np.ndarray]:
    """The ``budget`` pool indices with the highest scores (random tie-break); (indices, their scores)."""
    jitter = random_state.random_sample(len(pool))
    order = np.lexsort((jitter, -scores))[:budget]
    return pool[order], scores[order]
