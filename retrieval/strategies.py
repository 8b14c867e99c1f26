"""The strategy registry (name -> class), ``get_strategy`` and stratified selection with quotas."""

from __future__ import annotations

import numpy as np

from radloop.retrieval.badge import BadgeSelection
from radloop.retrieval.base import SelectionInput, SelectionStrategy
from radloop.retrieval.diversity import ClusterMarginSelection, KCenterSelection, TypiClustSelection
from radloop.retrieval.uncertainty import (
    EntropySelection, LeastConfidenceSelection, MarginSelection, RandomSelection, ReportDisagreementSelection,
)


class StratifiedSelection(SelectionStrategy):
    """Split the budget over strata (``groups``: body region, finding, ...) and run a base strategy in each.

    Args:
        base: registry name of the strategy used inside each stratum.
        quotas: stratum -> share of the budget (fractions, normalised) or None for equal shares over the
            strata present in the pool.  Strata without a quota get nothing; budget a stratum cannot use
            (too few samples) goes to the others.
        base_params: keyword parameters of the base strategy.
    """

    name = "stratified"
    needs = ("groups",)

    def __init__(self, base: str = "random", quotas: dict | None = None, base_params: dict | None = None):
        self.base = base
        self.quotas = quotas
        self.base_params = base_params

    def _allocate(self, available: dict, budget: int) -> dict:
        shares = {key: 1.0 for key in available} if not self.quotas else {
            key: float(self.quotas.get(key, self.quotas.get(str(key), 0.0))) for key in available}
        if any(share < 0 for share in shares.values()):
            raise ValueError(f"quotas must be >= 0, got {self.quotas}")
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

    def _select(self, data: SelectionInput):
        if self.quotas is not None and self.quotas and sum(self.quotas.values()) <= 0:
            raise ValueError("quotas sum to 0: no stratum would get any budget")
        pool_groups = data.groups[data.pool]
        keys, counts = np.unique(pool_groups, return_counts=True)
        if self.quotas:
            unknown = [key for key in self.quotas if key not in set(keys.tolist())]
            if len(unknown) == len(self.quotas):
                raise ValueError(f"no quota stratum {sorted(map(str, self.quotas))} occurs in the pool "
                                 f"(strata: {sorted(map(str, keys.tolist()))})")
        allocation = self._allocate(dict(zip(keys.tolist(), counts.tolist())), data.budget)
        picks, scores, reasons = [], [], []
        for key, share in allocation.items():
            if share <= 0:
                continue
            strategy = get_strategy(self.base, **(self.base_params or {}))
            mask = np.ones(data.n_samples, dtype=bool)
            mask[data.pool[pool_groups == key]] = False
            chosen = strategy.select(
                share, embeddings=data.embeddings, labeled_mask=mask, probabilities=data.probabilities,
                weak_labels=data.weak_labels, groups=data.groups, random_state=data.random_state)
            picks.extend(chosen.tolist())
            scores.extend(strategy.scores_.tolist())
            reasons.extend(f"stratum {key}: {reason}" for reason in strategy.reasons_)
        return np.asarray(picks), np.asarray(scores), reasons


#: Registry: strategy name -> class.
STRATEGIES: dict[str, type[SelectionStrategy]] = {
    cls.name: cls for cls in (
        RandomSelection, LeastConfidenceSelection, MarginSelection, EntropySelection, KCenterSelection,
        TypiClustSelection, ClusterMarginSelection, BadgeSelection, ReportDisagreementSelection,
        StratifiedSelection)
}


def get_strategy(name: str, **params) -> SelectionStrategy:
    """Instantiate a registered strategy.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or unknown parameter.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {name!r}; valid: {', '.join(sorted(STRATEGIES))}")
    try:
        return STRATEGIES[name](**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for strategy {name!r}: {error}") from None
