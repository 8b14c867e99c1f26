"""The selection-strategy contract: a scikit-learn-style estimator whose ``select`` is a pure function of
arrays (embeddings, a labelled mask, probabilities, weak labels, groups, a budget and a seed).

Strategies never read the catalog or the clock.  Every input is validated here once, so that a bad array
fails with a message naming the problem (wrong shape, NaN, empty pool, budget 0) before any work.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state as _sklearn_check_random_state

from radloop.retrieval.arrays import _check_finite, as_float32  # noqa: F401 (re-exported)

__all__ = ["PROBABILITY_SUM_TOLERANCE", "WEAK_LABEL_STATUSES", "Interval", "Options", "SelectionInput",
           "SelectionStrategy", "check_random_state", "top_scores", "validate_selection_input"]

#: Report statuses (``radloop.core.vocabulary.STATUSES``, what the labeller's report level gives) as the
#: class index of a binary finding's weak label: NaN = the report says nothing definite.
WEAK_LABEL_STATUSES = {"positive": 1.0, "negative": 0.0, "uncertain": np.nan}
#: Largest relative deviation of a probability row's sum from 1.
PROBABILITY_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SelectionInput:
    """Validated inputs of one selection.

    Attributes:
        budget: number of samples wanted (>= 1).
        pool: indices (P,) of the unlabelled samples, ascending.
        labeled: indices (L,) of the labelled samples, ascending.
        embeddings: float32 (N, D) or None.
        probabilities: float64 (N, C) rows summing to ~1 (C >= 2; 1-D or (N, 1) positive-class
            probabilities become (N, 2)), or None.
        weak_labels: float64 (N,) class indices (NaN or negative = unknown), or None.
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


def check_random_state(seed) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``, also taking a ``numpy.random.Generator``.

    A Generator seeds a new ``RandomState`` with one draw from it: deterministic for a given Generator state
    (and, as with a ``RandomState`` passed in, it advances the caller's generator).
    """
    if isinstance(seed, np.random.Generator):
        return np.random.RandomState(int(seed.integers(0, 2**32, dtype=np.uint64)))
    return _sklearn_check_random_state(seed)


def _check_probabilities(probabilities) -> np.ndarray:
    """(N, C) float64 probabilities whose rows sum to ~1; 1-D and (N, 1) inputs are positive-class."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 2 and probabilities.shape[1] == 1:
        probabilities = probabilities[:, 0]  # one column: the positive class, as 1-D input
    if probabilities.ndim not in (1, 2):
        raise ValueError(f"probabilities must be (N, C) or (N,) positive-class, got shape {probabilities.shape}")
    _check_finite("probabilities", probabilities)
    if (probabilities < -1e-6).any() or (probabilities > 1 + 1e-6).any():
        raise ValueError(f"probabilities must lie in [0, 1] (found {probabilities.min():.3g} .. "
                         f"{probabilities.max():.3g}): pass softmax/sigmoid outputs, not logits or scores")
    if probabilities.ndim == 1:
        return np.stack([1.0 - probabilities, probabilities], axis=1)
    sums = probabilities.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE)
    if len(off):
        raise ValueError(f"probabilities rows must sum to 1 (within {PROBABILITY_SUM_TOLERANCE:g}): "
                         f"{len(off)} row(s) do not, e.g. row {off[0]} sums to {sums[off[0]]:.4g}; pass one "
                         "distribution per sample (N, C), or positive-class probabilities as (N,) or (N, 1)")
    return probabilities


def _check_weak_labels(weak_labels, probabilities: np.ndarray | None) -> np.ndarray:
    """Weak labels as float64 class indices (N,), NaN = unknown; report statuses mapped for binary tasks."""
    accepted = ("weak_labels must be a 1-D array (N,) of class indices (0, 1, ...; NaN or -1 = unknown) "
                f"or of report statuses {', '.join(map(repr, WEAK_LABEL_STATUSES))} (binary findings)")
    array = np.asarray(weak_labels)
    if array.ndim != 1:
        raise ValueError(f"{accepted}; got {'a scalar' if array.ndim == 0 else f'shape {array.shape}'}")
    if array.dtype.kind in "biuf":
        values = array.astype(np.float64)
    elif array.dtype.kind in "OUS":
        values, statuses = np.empty(len(array)), False
        for row, value in enumerate(array.tolist()):
            if isinstance(value, bytes):
                value = value.decode()
            if value is None or (isinstance(value, float) and np.isnan(value)):
                values[row] = np.nan
            elif isinstance(value, str):
                if value.strip().lower() not in WEAK_LABEL_STATUSES:
                    raise ValueError(f"{accepted}; got {value!r} (row {row})")
                values[row], statuses = WEAK_LABEL_STATUSES[value.strip().lower()], True
            elif isinstance(value, (Real, np.number)) and not isinstance(value, complex):
                values[row] = float(value)
            else:
                raise ValueError(f"{accepted}; got {value!r} (row {row})")
        if statuses and probabilities is not None and probabilities.shape[1] != 2:
            raise ValueError(f"weak_labels given as report statuses need binary probabilities ((N,) or (N, 2)); "
                             f"got {probabilities.shape[1]} classes: pass class indices instead")
    else:
        raise ValueError(f"{accepted}; got dtype {array.dtype}")
    if np.isinf(values).any() or (np.isfinite(values) & (values != np.round(values))).any():
        bad = np.flatnonzero(np.isinf(values) | (np.isfinite(values) & (values != np.round(values))))
        raise ValueError(f"{accepted}; got {values[bad[0]]!r} (row {bad[0]}, {len(bad)} such row(s))")
    return values


def validate_selection_input(budget: int, *, embeddings=None, labeled_mask=None, probabilities=None,
                             weak_labels=None, groups=None, random_state=None,
                             needs: tuple[str, ...] = (), strategy: str = "strategy") -> SelectionInput:
    """Check shapes and values of a selection's inputs.

    Returns:
        The :class:`SelectionInput` a strategy's ``_select`` works on (pool and labelled indices, arrays converted).

    Raises:
        ValueError: budget < 1, no array to size the pool, mismatched lengths, NaNs or float32 overflow,
            probabilities outside [0, 1] or rows not summing to 1, weak labels that are not class indices or
            report statuses, a missing input the strategy needs, or an empty unlabelled pool; the message
            names the problem.
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
        embeddings = as_float32("embeddings", embeddings)
    if probabilities is not None:
        probabilities = _check_probabilities(probabilities)
    if weak_labels is not None:
        weak_labels = _check_weak_labels(weak_labels, probabilities)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.ndim != 1:
            raise ValueError(f"groups must be a 1-D array (N,) of strata, got shape {groups.shape}")
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
        probabilities=probabilities, weak_labels=weak_labels, groups=groups,
        random_state=check_random_state(random_state))


@dataclass(frozen=True)
class Interval:
    """Constraint of a numeric hyperparameter: ``low <= value <= high`` (either end open when None)."""

    low: float | None = None
    high: float | None = None
    integer: bool = True
    allow_none: bool = False

    def check(self, name: str, value, owner: str) -> None:
        if value is None and self.allow_none:
            return
        numeric = (isinstance(value, (Integral, np.integer)) if self.integer
                   else isinstance(value, (Real, np.integer, np.floating))) and not isinstance(value, bool)
        in_range = numeric and (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if not in_range:
            bounds = " and ".join(part for part in (f">= {self.low:g}" if self.low is not None else "",
                                                    f"<= {self.high:g}" if self.high is not None else "") if part)
            kind = "an integer" if self.integer else "a number"
            raise ValueError(f"strategy {owner!r}: {name} must be {bounds or kind} ({kind})"
                             f"{' or None' if self.allow_none else ''}, got {value!r}")


@dataclass(frozen=True)
class Options:
    """Constraint of a hyperparameter that takes one of a few names."""

    values: tuple[str, ...]

    def check(self, name: str, value, owner: str) -> None:
        if not isinstance(value, str) or value not in self.values:
            raise ValueError(f"strategy {owner!r}: unknown {name} {value!r}; valid: {', '.join(self.values)}")


class SelectionStrategy(BaseEstimator):
    """Base class: subclasses set ``name``/``needs``/``parameter_constraints`` and implement ``_select``.

    Hyperparameters are checked against ``parameter_constraints`` when ``select`` runs (and by
    ``get_strategy``), so values set with ``set_params`` are checked too (scikit-learn's convention).

    After ``select``: ``scores_`` (one float per picked index, same order) and ``reasons_`` (one short
    human-readable reason per picked index) describe the picks; ``notes_`` (a list of one-line strings, usually
    empty) says what the selection as a whole should tell the user (e.g. a ``stratified`` quota that had nothing
    to pick from), each also issued as a ``UserWarning``.  What a score means depends on the strategy
    (each class documents it); only for the score-ranking strategies (``least_confidence``, ``margin``,
    ``entropy``, ``report_disagreement``) and ``kcenter`` does a higher score mean picked earlier.
    """

    name: ClassVar[str] = ""
    #: inputs the strategy cannot work without ("embeddings", "probabilities", "weak_labels", "groups").
    needs: ClassVar[tuple[str, ...]] = ()
    #: inputs it uses once they exist and replaces by its own cold start until then (hybrids: probabilities).
    uses: ClassVar[tuple[str, ...]] = ()
    #: hyperparameter -> ``Interval`` / ``Options``; every ``__init__`` parameter has one.
    parameter_constraints: ClassVar[dict] = {}

    def _validate_params(self) -> None:
        """Check every hyperparameter against ``parameter_constraints``.

        Raises:
            ValueError: a value outside its valid range or options (the message names both).
        """
        for name, value in self.get_params(deep=False).items():
            constraint = self.parameter_constraints.get(name)
            if constraint is not None:
                constraint.check(name, value, self.name)

    def select(self, budget: int, *, embeddings=None, labeled_mask=None, probabilities=None,
               weak_labels=None, groups=None, random_state=None) -> np.ndarray:
        """Pick up to ``budget`` unlabelled samples.

        Args:
            budget: number of samples wanted (>= 1); fewer come back when the pool is smaller.
            embeddings: float array (N, D).
            labeled_mask: bool array (N,), True for samples that are labelled already.
            probabilities: model probabilities (N, C), rows summing to 1 (or (N,) / (N, 1) positive-class
                probabilities of a binary finding).
            weak_labels: (N,) report weak labels: class indices (NaN / negative = unknown) or, for a binary
                finding, report statuses "positive" / "negative" / "uncertain" (= unknown).
            groups: (N,) stratum of each sample (e.g. body region).
            random_state: seed, ``RandomState`` or ``numpy.random.Generator``.

        Returns:
            int64 indices into the N samples, unique, unlabelled, in priority order.

        Raises:
            ValueError: a bad hyperparameter or input (see ``validate_selection_input``).
        """
        self._validate_params()
        data = validate_selection_input(
            budget, embeddings=embeddings, labeled_mask=labeled_mask, probabilities=probabilities,
            weak_labels=weak_labels, groups=groups, random_state=random_state, needs=self.needs,
            strategy=self.name)
        self.notes_: list[str] = []  # _select appends what the caller should pass on (a round's notes)
        picks, scores, reasons = self._select(data)
        picks = np.asarray(picks, dtype=np.int64)
        for note in self.notes_:
            warnings.warn(note, UserWarning, stacklevel=2)
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
