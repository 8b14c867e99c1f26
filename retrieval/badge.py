"""BADGE (Ash et al., "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020):
the hybrid of uncertainty and diversity that k-means++-seeds the gradient embeddings of a linear head."""

from __future__ import annotations

import numpy as np

from radloop.retrieval.base import Interval, Options, SelectionInput, SelectionStrategy
from radloop.retrieval.diversity import ClusterMarginSelection


def gradient_factors(embeddings: np.ndarray, probabilities: np.ndarray, rows: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The two factors of BADGE's gradient embeddings, never multiplied out.

    The gradient of the cross-entropy of a linear softmax head at its own prediction ``argmax p`` with respect
    to the head's weights is the outer product ``(p - onehot(argmax p)) x^T`` of a residual ``r`` (C values)
    and the input ``x``.  The input here is the embedding standardised over all N samples (the probe's input)
    with a bias column.  For two classes the head has one logit, so ``r`` is the positive class's residual
    alone.  Distances between gradient embeddings follow from the factors:
    ``<g_i, g_j> = <r_i, r_j> <x_i, x_j>``.

    Args:
        rows: the rows wanted (default: all); the standardisation still uses all N.

    Returns:
        ``r`` float64 (R, C or 1) and ``x`` float32 (R, D + 1) for the R wanted rows.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows)
    mean, std = embeddings.mean(axis=0), embeddings.std(axis=0) + 1e-6
    x = np.hstack([(embeddings[rows] - mean) / std, np.ones((len(rows), 1), dtype=np.float32)])
    residual = np.array(np.asarray(probabilities)[rows], dtype=np.float64)
    residual[np.arange(len(residual)), residual.argmax(axis=1)] -= 1.0
    if residual.shape[1] == 2:
        residual = residual[:, 1:]
    return residual, x


class BadgeSelection(SelectionStrategy):
    """BADGE: k-means++ seeding over gradient embeddings, so a batch is both uncertain (long gradients) and
    diverse (gradients pointing different ways).

    The first pick is the sample with the longest gradient embedding; each next one is drawn with probability
    proportional to its squared distance to the nearest pick so far (D² sampling, seeded).  Distances come
    from the factored gradients (see ``gradient_factors``): one pass over the candidates per pick,
    O(N (D + C)), without the N x C·D matrix.  Without probabilities (cold start, no model yet) it picks the
    first batch with the ``cold_start`` strategy.

    ``scores_``: the first pick's squared gradient length, then each pick's squared gradient distance to the
    nearest earlier pick (the D² sampling weight; drawn at random, so not sorted); at cold start, the
    cold-start strategy's scores.

    Args:
        cold_start: "typiclust", "kcenter" or "random".
        max_candidates: pools larger than this are first subsampled uniformly (seeded) to this many
            candidates, which bounds the cost of a pick (k-means++ seeding on a uniform sample); None: the
            whole pool, whatever its size.  >= 1.
    """

    name = "badge"
    needs = ("embeddings",)
    uses = ("probabilities",)
    parameter_constraints = {"cold_start": Options(tuple(ClusterMarginSelection.COLD_STARTS)),
                             "max_candidates": Interval(1, allow_none=True)}

    def __init__(self, cold_start: str = "typiclust", max_candidates: int | None = 100_000):
        self.cold_start = cold_start
        self.max_candidates = max_candidates

    def _select(self, data: SelectionInput):
        if data.probabilities is None:
            picks, scores, reasons = ClusterMarginSelection.COLD_STARTS[self.cold_start]()._select(data)
            return picks, scores, [f"cold start (no model): {reason}" for reason in reasons]
        candidates = data.pool
        if self.max_candidates is not None and len(candidates) > max(self.max_candidates, data.budget):
            size = max(self.max_candidates, data.budget)
            candidates = np.sort(data.random_state.choice(candidates, size, replace=False))
        residual, x = gradient_factors(data.embeddings, data.probabilities, candidates)
        squared_norm = (residual ** 2).sum(axis=1) * (x.astype(np.float64) ** 2).sum(axis=1)
        count = min(data.budget, len(candidates))
        chosen = np.zeros(len(candidates), dtype=bool)
        nearest = np.full(len(candidates), np.inf)
        picks, scores = [], []
        for _ in range(count):
            if not picks:
                pick = int(np.argmax(squared_norm))
            else:
                weights = np.where(chosen, 0.0, np.maximum(nearest, 0.0))
                total = weights.sum()
                if total > 0:
                    pick = int(data.random_state.choice(len(weights), p=weights / total))
                else:  # every unpicked gradient equals a picked one: any unpicked sample will do
                    pick = int(data.random_state.choice(np.flatnonzero(~chosen)))
            scores.append(float(squared_norm[pick]) if not picks else float(nearest[pick]))
            chosen[pick] = True
            picks.append(pick)
            inner = (residual @ residual[pick]) * (x @ x[pick]).astype(np.float64)
            nearest = np.minimum(nearest, squared_norm + squared_norm[pick] - 2.0 * inner)
        reasons = [f"gradient length² {scores[0]:.3f} (longest)"] + [
            f"gradient distance² to the nearest pick {score:.3f}" for score in scores[1:]]
        return candidates[np.asarray(picks, dtype=np.int64)], np.asarray(scores), reasons
