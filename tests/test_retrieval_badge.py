"""BADGE against a reference that materialises the gradient embeddings, plus its cold start and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from radloop.retrieval import get_strategy
from radloop.retrieval.badge import gradient_factors


def _reference_badge(embeddings, probabilities, labelled, budget, seed):
    """Textbook BADGE: explicit gradient embeddings (N, C*(D+1)), k-means++ seeding from the longest one."""
    x = (embeddings - embeddings.mean(0)) / (embeddings.std(0) + 1e-6)
    x = np.hstack([x, np.ones((len(x), 1))])
    residual = probabilities.copy()
    residual[np.arange(len(residual)), residual.argmax(1)] -= 1.0
    if residual.shape[1] == 2:
        residual = residual[:, 1:]
    gradients = (residual[:, :, None] * x[:, None, :]).reshape(len(x), -1)
    pool = np.flatnonzero(~labelled)
    gradients = gradients[pool]
    rng = np.random.RandomState(seed)
    picks = [int(np.argmax((gradients ** 2).sum(1)))]
    while len(picks) < budget:
        centers = gradients[picks]
        nearest = ((gradients[:, None, :] - centers[None]) ** 2).sum(-1).min(1)
        nearest[picks] = 0.0
        picks.append(int(rng.choice(len(gradients), p=nearest / nearest.sum())))
    return pool[picks]


@pytest.mark.parametrize("classes", [2, 4])
def test_badge_equals_the_explicit_gradient_reference(classes):
    rng = np.random.default_rng(classes)
    embeddings = rng.normal(size=(150, 7)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(classes), size=150)
    labelled = np.zeros(150, dtype=bool)
    labelled[rng.choice(150, 20, replace=False)] = True
    picks = get_strategy("badge").select(12, embeddings=embeddings, probabilities=probabilities,
                                         labeled_mask=labelled, random_state=5)
    expected = _reference_badge(embeddings.astype(np.float64), probabilities, labelled, 12, 5)
    assert picks.tolist() == expected.tolist()


def test_binary_gradients_use_one_logit():
    residual, x = gradient_factors(np.eye(3, dtype=np.float32), np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]]))
    assert residual.shape == (3, 1) and x.shape == (3, 4)
    np.testing.assert_allclose(residual[:, 0], [0.1, -0.4, 0.5])  # p(positive) - [predicted positive]


def test_badge_starts_at_the_longest_gradient_and_spreads_over_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    embeddings = (10 * np.eye(3)[labels] + rng.normal(scale=0.5, size=(300, 3))).astype(np.float32)
    probabilities = np.tile([0.6, 0.4], (300, 1))
    probabilities[150] = [0.5, 0.5]  # the most uncertain sample: the longest gradient
    picks = get_strategy("badge").select(3, embeddings=embeddings, probabilities=probabilities, random_state=0)
    assert picks[0] == 150
    # equal uncertainty elsewhere: D² sampling lands in the two other, far away clusters (between-cluster
    # distances dwarf within-cluster ones: 187 of seeds 0-199 cover all three)
    assert sorted(labels[picks].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("cold_start", ["typiclust", "kcenter", "random"])
def test_badge_cold_start_follows_its_setting(cold_start):
    vectors = np.random.default_rng(1).normal(size=(120, 6)).astype(np.float32)
    picks = get_strategy("badge", cold_start=cold_start).select(10, embeddings=vectors, random_state=3)
    assert picks.tolist() == get_strategy(cold_start).select(10, embeddings=vectors, random_state=3).tolist()


def test_badge_with_identical_gradients_still_fills_the_budget():
    embeddings = np.ones((30, 4), dtype=np.float32)
    probabilities = np.tile([0.5, 0.5], (30, 1))
    picks = get_strategy("badge").select(30, embeddings=embeddings, probabilities=probabilities, random_state=0)
    assert sorted(picks.tolist()) == list(range(30))


def test_badge_rejects_an_unknown_cold_start():
    with pytest.raises(ValueError, match="valid: typiclust, kcenter, random"):
        get_strategy("badge", cold_start="margin")


def test_badge_subsamples_large_pools_to_max_candidates():
    rng = np.random.default_rng(2)
    embeddings = rng.normal(size=(400, 5)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(3), size=400)
    strategy = get_strategy("badge", max_candidates=50)
    picks = strategy.select(20, embeddings=embeddings, probabilities=probabilities, random_state=7)
    again = get_strategy("badge", max_candidates=50).select(20, embeddings=embeddings,
                                                            probabilities=probabilities, random_state=7)
    assert picks.tolist() == again.tolist() and len(set(picks.tolist())) == 20
    # the candidates are the seeded uniform sample that select draws first
    candidates = np.random.RandomState(7).choice(np.arange(400), 50, replace=False)
    assert set(picks.tolist()) <= set(candidates.tolist())
    # a budget above max_candidates still gets filled
    assert len(get_strategy("badge", max_candidates=50).select(
        80, embeddings=embeddings, probabilities=probabilities, random_state=7)) == 80
    with pytest.raises(ValueError, match="max_candidates must be >= 1"):
        get_strategy("badge", max_candidates=0)
