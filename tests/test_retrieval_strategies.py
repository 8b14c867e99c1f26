"""Contract test over the whole strategy registry, plus per-strategy checks against references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radloop.retrieval import STRATEGIES, get_strategy, kcenter_greedy, kcenter_greedy_reference


def _inputs(count=240, dim=12, classes=3, labelled=30, seed=0):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(count, dim)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(classes), size=count)
    mask = np.zeros(count, dtype=bool)
    mask[rng.choice(count, labelled, replace=False)] = True
    weak = rng.integers(0, classes, count).astype(float)
    weak[::7] = np.nan
    groups = rng.choice(np.array(["wrist", "elbow", "shoulder"]), count)
    return dict(embeddings=embeddings, labeled_mask=mask, probabilities=probabilities, weak_labels=weak,
                groups=groups)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_registry_contract(name):
    inputs = _inputs()
    mask = inputs["labeled_mask"]
    first = get_strategy(name).select(20, random_state=3, **inputs)
    again = get_strategy(name).select(20, random_state=3, **inputs)
    assert first.dtype == np.int64 and len(first) == 20
    assert len(np.unique(first)) == 20, "picks must be unique"
    assert not mask[first].any(), "picks must be unlabelled"
    np.testing.assert_array_equal(first, again)  # deterministic under a seed
    strategy = get_strategy(name)
    everything = strategy.select(10_000, random_state=0, **inputs)  # budget larger than the pool
    assert sorted(everything.tolist()) == np.flatnonzero(~mask).tolist()
    assert len(strategy.scores_) == len(everything) == len(strategy.reasons_)
    assert np.isfinite(strategy.scores_).all(), "scores are stored in the catalog: finite numbers only"
    with pytest.raises(ValueError, match="budget must be >= 1"):
        get_strategy(name).select(0, random_state=0, **inputs)
    with pytest.raises(ValueError, match="empty pool"):
        get_strategy(name).select(5, random_state=0, **{**inputs, "labeled_mask": np.ones(len(mask), bool)})
    bad = inputs["embeddings"].copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        get_strategy(name).select(5, random_state=0, **{**inputs, "embeddings": bad})
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        get_strategy(name).select(5, random_state=0, **{**inputs, "groups": inputs["groups"][:-1]})


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ValueError, match="valid: .*kcenter.*typiclust"):
        get_strategy("coreset++")
    with pytest.raises(ValueError, match="bad parameters"):
        get_strategy("kcenter", nonsense=1)


def test_missing_required_input_is_named():
    inputs = _inputs()
    with pytest.raises(ValueError, match="'margin' needs probabilities"):
        get_strategy("margin").select(5, embeddings=inputs["embeddings"])
    with pytest.raises(ValueError, match="'report_disagreement' needs weak_labels"):
        get_strategy("report_disagreement").select(5, probabilities=inputs["probabilities"])


@pytest.mark.parametrize("labelled", [0, 3, 300])
def test_kcenter_equals_bruteforce_reference(labelled):
    rng = np.random.default_rng(labelled)
    vectors = rng.normal(size=(2500, 24)).astype(np.float32)
    initial = rng.choice(len(vectors), labelled, replace=False) if labelled else None
    picks, radii = kcenter_greedy(vectors, 150, initial, candidate_pool=256)  # small pool: many refreshes
    reference = kcenter_greedy_reference(vectors, 150, initial)
    np.testing.assert_array_equal(picks, reference)
    assert np.all(np.diff(radii[1:]) <= 1e-5), "greedy covering radii never increase"


def test_kcenter_strategy_matches_reference_with_labelled_set():
    inputs = _inputs(count=600, dim=8)
    picks = get_strategy("kcenter").select(40, embeddings=inputs["embeddings"],
                                           labeled_mask=inputs["labeled_mask"], random_state=0)
    reference = kcenter_greedy_reference(inputs["embeddings"], 40, np.flatnonzero(inputs["labeled_mask"]))
    np.testing.assert_array_equal(picks, reference)


def test_uncertainty_strategies_pick_the_most_uncertain():
    probabilities = np.array([[0.98, 0.02], [0.5, 0.5], [0.7, 0.3], [0.55, 0.45], [0.9, 0.1]])
    for name in ("least_confidence", "margin", "entropy"):
        picks = get_strategy(name).select(2, probabilities=probabilities, random_state=0)
        assert picks.tolist() == [1, 3], name


def test_report_disagreement_ranks_contradictions_first():
    probabilities = np.array([0.95, 0.9, 0.1, 0.5, 0.05])  # positive-class probabilities
    weak = np.array([1, 0, 1, np.nan, 0])  # report says: pos, neg, pos, unknown, neg
    strategy = get_strategy("report_disagreement")
    picks = strategy.select(5, probabilities=probabilities, weak_labels=weak, random_state=0)
    assert picks[:2].tolist() in ([1, 2], [2, 1]) and picks[-1] == 3  # unknown report label last


def test_stratified_quotas_and_overflow():
    groups = np.array(["wrist"] * 50 + ["elbow"] * 5 + ["hand"] * 45)
    strategy = get_strategy("stratified", quotas={"wrist": 0.5, "elbow": 0.5})
    picks = strategy.select(20, groups=groups, embeddings=np.zeros((100, 2)), random_state=0)
    chosen = groups[picks]
    assert (chosen == "elbow").sum() == 5 and (chosen == "wrist").sum() == 15 and (chosen == "hand").sum() == 0
    with pytest.raises(ValueError, match="no quota stratum"):
        get_strategy("stratified", quotas={"knee": 1.0}).select(5, groups=groups, embeddings=np.zeros((100, 2)))


def test_typiclust_covers_clusters_at_cold_start():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10, size=(4, 8))
    labels = np.repeat(np.arange(4), [100, 80, 60, 40])
    vectors = (centers[labels] + rng.normal(size=(280, 8))).astype(np.float32)
    picks = get_strategy("typiclust").select(4, embeddings=vectors, random_state=0)
    assert sorted(labels[picks].tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("cold_start", ["typiclust", "kcenter", "random"])
def test_cluster_margin_cold_start_follows_its_setting(cold_start):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(120, 6)).astype(np.float32)
    picks = get_strategy("cluster_margin", cold_start=cold_start).select(10, embeddings=vectors, random_state=3)
    expected = get_strategy(cold_start).select(10, embeddings=vectors, random_state=3)
    assert picks.tolist() == expected.tolist()  # no model yet: the cold-start strategy's picks, same seed


def test_cluster_margin_rejects_an_unknown_cold_start():
    with pytest.raises(ValueError, match="valid: typiclust, kcenter, random"):
        get_strategy("cluster_margin", cold_start="badge")


def test_round_start_help_lists_every_strategy_and_the_defaults():
    """`radloop round start --help` is where configs/rounds/default.yaml sends users for the registry."""
    from typer.testing import CliRunner

    from radloop.app.cli import build_app
    from radloop.app.rounds import load_round_config
    from radloop.retrieval.strategies import STRATEGIES

    shown = CliRunner().invoke(build_app(), ["round", "start", "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0
    text = " ".join(shown.output.replace("│", " ").split())
    for name in STRATEGIES:
        assert f" {name}," in text or f" {name} (" in text, name
    defaults = load_round_config(Path(__file__).resolve().parents[1] / "configs" / "rounds" / "default.yaml")
    assert f"the config's, {defaults.strategy};" in text and f"{defaults.cold_start_strategy} while" in text


@pytest.mark.parametrize("seed", range(4))
def test_typiclust_covers_every_group_when_the_budget_is_a_large_share_of_a_small_pool(seed):
    # 6 separated groups of 8; 12 picks make 12 k-means clusters of ~4, below the paper's outlier size of 5:
    # dropping them all used to leave 3 clusters picked 4 times each
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, 16)) * 3
    embeddings = np.concatenate([c + rng.normal(size=(8, 16)) for c in centers]).astype("float32")
    group = np.repeat(np.arange(6), 8)
    strategy = get_strategy("typiclust")
    picks = strategy.select(12, embeddings=embeddings, random_state=seed)
    assert len(set(group[picks])) == 6
    assert np.bincount(group[picks]).max() <= 3
    assert len(set(strategy.reasons_)) == len(picks)  # each reason names its own cluster / pick
