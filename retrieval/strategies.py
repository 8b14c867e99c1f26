"""The strategy registry (name -> class), ``get_strategy`` and stratified selection with quotas."""

from __future__ import annotations

import math

import numpy as np

from radloop.core.config import did_you_mean
from radloop.retrieval.badge import BadgeSelection
from radloop.retrieval.base import SelectionInput, SelectionStrategy
from radloop.retrieval.diversity import ClusterMarginSelection, KCenterSelection, TypiClustSelection
from radloop.retrieval.uncertainty import (
    EntropySelection, LeastConfidenceSelection, MarginSelection, RandomSelection, ReportDisagreementSelection,
)

__all__ = ["STRATEGIES", "UNKNOWN_STRATUM", "StratifiedSelection", "get_strategy"]


#: The stratum of samples whose group is missing (None, NaN, empty), as ``app/rounds.py`` names missing regions.
UNKNOWN_STRATUM = "unknown"


def _is_missing(value) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(value != value)  # NaN, NaT
    except (TypeError, ValueError):  # pandas.NA compares to NA, which has no truth value
        return type(value).__name__ == "NAType"


class StratifiedSelection(SelectionStrategy):
    """Split the budget over strata (``groups``: body region, finding, ...) and run a base strategy in each.

    Samples whose group is missing (None, NaN, an empty string) form one stratum, ``"unknown"``.  The picks
    come back interleaved across strata in proportion to their shares, each stratum's in its base strategy's
    order, so that any prefix of them is (about) as stratified as the whole.  ``scores_`` are the base
    strategy's scores within each stratum (see its documentation; not comparable across strata).

    Args:
        base: registry name of the strategy used inside each stratum (any but ``stratified``).
        quotas: stratum -> share of the budget (fractions >= 0, normalised) or None for equal shares over
            the strata present in the pool.  Strata without a quota get nothing; budget a stratum cannot use
            (too few samples) goes to the others.  A quota stratum with no unlabelled sample (labelled in full,
            or absent) and a budget the quota strata cannot fill are told in ``notes_`` (and as a
            ``UserWarning``); quotas none of whose strata is in the pool are refused.
        base_params: keyword parameters of the base strategy.
    """

    name = "stratified"
    needs = ("groups",)

    def __init__(self, base: str = "random", quotas: dict | None = None, base_params: dict | None = None):
        self.base = base
        self.quotas = quotas
        self.base_params = base_params

    def _validate_params(self) -> None:
        bases = tuple(name for name in STRATEGIES if name != self.name)
        if self.base not in bases:
            raise ValueError(f"strategy 'stratified': unknown base {self.base!r}; valid: {', '.join(sorted(bases))}")
        if self.quotas is not None:
            if not isinstance(self.quotas, dict):
                raise ValueError(f"strategy 'stratified': quotas must be a dict stratum -> share or None, "
                                 f"got {self.quotas!r}")
            bad = {key: share for key, share in self.quotas.items()
                   if isinstance(share, bool) or not isinstance(share, (int, float, np.integer, np.floating))
                   or not math.isfinite(share) or share < 0}
            if bad:
                raise ValueError(f"strategy 'stratified': quotas must be >= 0 (a number), got {bad}")
            if self.quotas and sum(self.quotas.values()) <= 0:
                raise ValueError("strategy 'stratified': quotas sum to 0: no stratum would get any budget")
        if self.base_params is not None and not isinstance(self.base_params, dict):
            raise ValueError(f"strategy 'stratified': base_params must be a dict or None, got {self.base_params!r}")
        try:
            get_strategy(self.base, **(self.base_params or {}))  # checks the base strategy's parameters
        except ValueError as error:
            raise ValueError(f"strategy 'stratified': base_params: {error}") from None

    def _allocate(self, available: dict, budget: int) -> dict:
        shares = {key: 1.0 for key in available} if not self.quotas else {
            key: float(self.quotas.get(key, self.quotas.get(str(key), 0.0))) for key in available}
        counts = {key: 0 for key in available}
        left = min(budget, sum(available[key] for key in available if shares[key] > 0))
        while left > 0:
            open_keys = [key for key in available if shares[key] > 0 and counts[key] < available[key]]
            if not open_keys:
                break
            total = sum(shares[key] for key in open_keys)
            exact = {key: left * shares[key] / total for key in open_keys}
            grant = {key: min(available[key] - counts[key], int(exact[key])) for key in open_keys}
            if sum(grant.values()) == 0:  # remainders only: one each to the largest shares
                for key in sorted(open_keys, key=lambda k: -exact[k])[:left]:
                    grant[key] = 1
            for key, extra in grant.items():
                counts[key] += extra
            left -= sum(grant.values())
        return counts

    def _note_unused_quotas(self, unused: list, labeled_groups: np.ndarray, present: list) -> None:
        """Tell (in ``notes_``) which quota strata have no unlabelled sample: their share goes
        to the other quota strata.  A stratum labelled in full is a normal late-round state, hence no error."""
        labeled = {}
        for value in labeled_groups.tolist():
            labeled[str(value)] = labeled.get(str(value), 0) + 1
        named = [f"{key!s} ({f'all {labeled[str(key)]} labelled' if labeled.get(str(key)) else 'no sample'})"
                 for key in sorted(unused, key=str)]
        note = (f"stratified: {len(unused)} of {len(self.quotas)} quota strata have nothing left to select, their "
                f"share went to the other quota strata: {', '.join(named)} (strata in the pool: "
                f"{', '.join(map(str, present))})")
        self._warn(note)

    def _warn(self, note: str) -> None:
        self.notes_.append(note)  # ``select`` issues it as a UserWarning too

    def _select(self, data: SelectionInput):
        groups = np.array([UNKNOWN_STRATUM if _is_missing(value) else value for value in data.groups.tolist()],
                          dtype=object)
        pool_groups = groups[data.pool]
        present = list(dict.fromkeys(pool_groups.tolist()))
        try:
            present.sort()
        except TypeError:  # mixed types (e.g. numbers and "unknown"): a stable order all the same
            present.sort(key=lambda key: (type(key).__name__, str(key)))
        number_of = {key: number for number, key in enumerate(present)}
        codes = np.fromiter((number_of[value] for value in pool_groups.tolist()), np.int64, len(pool_groups))
        counts = dict(zip(present, np.bincount(codes, minlength=len(present)).tolist()))
        if self.quotas:
            unknown = [key for key in self.quotas if key not in counts and str(key) not in map(str, counts)]
            if len(unknown) == len(self.quotas):
                raise ValueError(f"no quota stratum {sorted(map(str, self.quotas))} occurs in the pool "
                                 f"(strata: {sorted(map(str, present))})")
            unused = [key for key in unknown if self.quotas[key] > 0]  # a zero share asks for nothing anyway
            if unused:
                self._note_unused_quotas(unused, groups[data.labeled], present)
        allocation = self._allocate(counts, data.budget)
        granted = sum(allocation.values())
        if self.quotas and granted < min(data.budget, len(data.pool)):
            left_out = [str(key) for key, share in allocation.items() if share == 0]
            self._warn(f"stratified: budget {data.budget}, but the strata with a quota hold only {granted} "
                       f"unlabelled sample(s): {granted} selected; strata without a quota get none "
                       f"({', '.join(left_out)})")
        ranked = []  # (position within the stratum's share, stratum number, pick, score, reason)
        for number, (key, share) in enumerate(allocation.items()):
            if share <= 0:
                continue
            strategy = get_strategy(self.base, **(self.base_params or {}))
            mask = np.ones(data.n_samples, dtype=bool)
            mask[data.pool[codes == number_of[key]]] = False
            chosen = strategy.select(
                share, embeddings=data.embeddings, labeled_mask=mask, probabilities=data.probabilities,
                weak_labels=data.weak_labels, groups=groups, random_state=data.random_state)
            for position, (pick, score, reason) in enumerate(zip(chosen.tolist(), strategy.scores_.tolist(),
                                                                  strategy.reasons_)):
                ranked.append(((position + 0.5) / len(chosen), number, pick, score, f"stratum {key}: {reason}"))
        ranked.sort(key=lambda item: item[:2])  # interleaved by share, each stratum in its base order
        return (np.asarray([item[2] for item in ranked], dtype=np.int64),
                np.asarray([item[3] for item in ranked], dtype=np.float64), [item[4] for item in ranked])


#: Registry: strategy name -> class.
STRATEGIES: dict[str, type[SelectionStrategy]] = {
    cls.name: cls for cls in (
        RandomSelection, LeastConfidenceSelection, MarginSelection, EntropySelection, KCenterSelection,
        TypiClustSelection, ClusterMarginSelection, BadgeSelection, ReportDisagreementSelection,
        StratifiedSelection)
}


def get_strategy(name: str, **params) -> SelectionStrategy:
    """Instantiate a registered strategy: ``get_strategy("kcenter").select(budget, embeddings=..., labeled_mask=...)``
    returns the picked indices in priority order (``STRATEGIES`` lists the names; ``params`` are its hyperparameters).

    Raises:
        ValueError: unknown name (the message lists the valid ones), unknown parameter, or a parameter
            value outside its valid range (``select`` checks again, after ``set_params``).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {name!r}{did_you_mean(name, STRATEGIES)}; valid: "
                         f"{', '.join(sorted(STRATEGIES))}")
    accepted = STRATEGIES[name]._get_param_names()
    unknown = sorted(key for key in params if key not in accepted)
    if unknown:  # named here: the constructor's TypeError names its Python class, not the key's valid neighbours
        raise ValueError(f"bad parameters for strategy {name!r}: unknown parameter {unknown[0]!r}"
                         f"{did_you_mean(unknown[0], accepted)}; valid: "
                         f"{', '.join(accepted) if accepted else 'none (it takes no parameters)'}")
    try:
        strategy = STRATEGIES[name](**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for strategy {name!r}: {error}") from None
    strategy._validate_params()
    return strategy
