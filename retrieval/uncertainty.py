"""Strategies that rank single samples by a score: random, classic uncertainty sampling
(Settles, "Active Learning Literature Survey", 2009: least confidence, margin, entropy), and report
disagreement (the image model contradicts the report's weak label)."""

from __future__ import annotations

import numpy as np

from radloop.retrieval.base import Interval, SelectionInput, SelectionStrategy, top_scores


class RandomSelection(SelectionStrategy):
    """Uniform random sample of the unlabelled pool (the baseline every strategy must beat); ``scores_`` all 0."""

    name = "random"

    def _select(self, data: SelectionInput):
        count = min(data.budget, len(data.pool))
        picks = data.random_state.choice(data.pool, size=count, replace=False)
        return picks, np.zeros(count), ["random"] * count


def uncertainty_scores(probabilities: np.ndarray, measure: str) -> np.ndarray:
    """Uncertainty per row of ``probabilities`` (N, C); higher = more uncertain.

    Raises:
        ValueError: an unknown measure.
    """
    if measure == "least_confidence":
        return 1.0 - probabilities.max(axis=1)
    if measure == "margin":
        if probabilities.shape[1] < 2:
            return np.zeros(len(probabilities))
        top_two = -np.partition(-probabilities, 1, axis=1)[:, :2]
        return 1.0 - (top_two[:, 0] - top_two[:, 1])
    if measure == "entropy":
        clipped = np.clip(probabilities, 1e-12, 1.0)
        return -(clipped * np.log(clipped)).sum(axis=1)
    raise ValueError(f"unknown uncertainty measure {measure!r}; valid: least_confidence, margin, entropy")


def uncertainty_reason(measure: str, score: float) -> str:
    """Why a sample was picked, in words a reader of the queue takes the right way round: a margin score of
    1.000 is a top-two gap of 0 (the model cannot separate its two likeliest classes), not a large margin."""
    if measure == "margin":
        return f"margin uncertainty {score:.3f} (top-two gap {1.0 - score:.3f})"
    if measure == "least_confidence":
        return f"least confidence {score:.3f} (top class p {1.0 - score:.3f})"
    return f"{measure} {score:.3f}"


class _UncertaintySelection(SelectionStrategy):
    """Rank the pool by an uncertainty measure; ``scores_``: each pick's uncertainty (higher = picked earlier)."""

    needs = ("probabilities",)
    measure = ""

    def _select(self, data: SelectionInput):
        scores = uncertainty_scores(data.probabilities[data.pool], self.measure)
        picks, picked = top_scores(data.pool, scores, data.budget, data.random_state)
        return picks, picked, [uncertainty_reason(self.measure, score) for score in picked]


class LeastConfidenceSelection(_UncertaintySelection):
    """Pick the samples whose most likely class has the lowest probability."""

    name = "least_confidence"
    measure = "least_confidence"


class MarginSelection(_UncertaintySelection):
    """Pick the samples with the smallest gap between the two most likely classes."""

    name = "margin"
    measure = "margin"


class EntropySelection(_UncertaintySelection):
    """Pick the samples with the highest predictive entropy."""

    name = "entropy"
    measure = "entropy"


class ReportDisagreementSelection(SelectionStrategy):
    """Pick images where the image model contradicts the report's weak label.

    ``weak_labels`` holds the class index the report implies (binary findings: 1 positive, 0 negative);
    NaN or a negative value means the report says nothing (those come last, in random order).
    For a binary finding the weak labels may also be the report statuses "positive" / "negative" /
    "uncertain" (1 / 0 / unknown), as the labeller's report level gives them.
    Score = 1 - probability the model gives to the report's class (``scores_``: higher = picked earlier;
    samples below ``min_disagreement`` score 1 lower, samples without a report label -1).

    Args:
        min_disagreement: samples scoring below this are only taken when nothing else is left (in [0, 1]).
    """

    name = "report_disagreement"
    needs = ("probabilities", "weak_labels")
    parameter_constraints = {"min_disagreement": Interval(0, 1, integer=False)}

    def __init__(self, min_disagreement: float = 0.0):
        self.min_disagreement = min_disagreement

    def _select(self, data: SelectionInput):
        probabilities = data.probabilities[data.pool]
        raw = np.asarray(data.weak_labels[data.pool], dtype=np.float64)
        known = np.isfinite(raw) & (raw >= 0) & (raw < probabilities.shape[1])
        classes = np.where(known, raw, 0).astype(np.int64)
        if (np.isfinite(raw) & (raw >= probabilities.shape[1])).any():
            raise ValueError(f"weak_labels hold class indices >= the {probabilities.shape[1]} probability columns")
        scores = np.where(known, 1.0 - probabilities[np.arange(len(classes)), classes], -1.0)
        scores = np.where(known & (scores < self.min_disagreement), scores - 1.0, scores)
        picks, picked = top_scores(data.pool, scores, data.budget, data.random_state)
        reasons = [f"report disagreement {score:.2f}" if score > -1.0 else "no report label" for score in picked]
        return picks, picked, reasons
