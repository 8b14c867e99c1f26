"""``stratified`` tells the user (``notes_`` and a UserWarning) when a quota stratum has nothing to pick from,
or the quota strata cannot fill the budget, instead of dropping the quota silently (walk 21a)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from radloop.retrieval import STRATEGIES, get_strategy

GROUPS = np.array(["wrist"] * 20 + ["elbow"] * 20 + ["hand"] * 5, dtype=object)
EMBEDDINGS = np.random.default_rng(0).normal(size=(len(GROUPS), 4)).astype(np.float32)


def _select(strategy, budget, labeled):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        picks = strategy.select(budget, embeddings=EMBEDDINGS, groups=GROUPS, labeled_mask=labeled, random_state=0)
    return picks, [str(warning.message) for warning in caught if issubclass(warning.category, UserWarning)]


def test_a_quota_stratum_labelled_in_full_or_absent_is_named_in_notes_and_a_warning():
    labeled = GROUPS == "hand"  # every hand image labelled already: a normal late-round state
    strategy = get_strategy("stratified", quotas={"wrist": 1, "hand": 1, "knee": 1})
    picks, caught = _select(strategy, 6, labeled)
    assert len(picks) == 6 and set(GROUPS[picks]) == {"wrist"}  # their share went to the quota stratum left
    assert len(strategy.notes_) == 1 and caught == strategy.notes_
    note = strategy.notes_[0]
    assert "2 of 3 quota strata have nothing left to select" in note
    assert "hand (all 5 labelled)" in note and "knee (no sample)" in note and "\n" not in note


def test_a_zero_quota_on_an_absent_stratum_and_a_satisfiable_selection_say_nothing():
    strategy = get_strategy("stratified", quotas={"wrist": 1, "elbow": 1, "knee": 0})
    picks, caught = _select(strategy, 6, None)
    assert len(picks) == 6 and strategy.notes_ == [] and caught == []


def test_a_budget_the_quota_strata_cannot_fill_is_told():
    strategy = get_strategy("stratified", quotas={"hand": 1})
    picks, caught = _select(strategy, 10, None)
    assert len(picks) == 5 and set(GROUPS[picks]) == {"hand"}
    assert caught == strategy.notes_ and len(caught) == 1
    assert "budget 10, but the strata with a quota hold only 5" in caught[0] and "(elbow, wrist)" in caught[0]


def test_every_quota_missing_is_still_an_error():
    with pytest.raises(ValueError, match="no quota stratum"):
        get_strategy("stratified", quotas={"knee": 1}).select(3, embeddings=EMBEDDINGS, groups=GROUPS)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_has_notes_after_select(name):
    probabilities = np.tile([0.3, 0.7], (len(GROUPS), 1))
    strategy = get_strategy(name)
    strategy.select(3, embeddings=EMBEDDINGS, groups=GROUPS, probabilities=probabilities,
                    weak_labels=np.ones(len(GROUPS)), random_state=0)
    assert strategy.notes_ == []
