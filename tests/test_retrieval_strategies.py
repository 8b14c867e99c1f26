"""Contract test over the whole strategy registry, plus per-strategy checks against references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

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


def _invalid_values(strategy):
    """(parameter, an invalid value) for each constrained hyperparameter of a strategy."""
    from radloop.retrieval.base import Interval, Options

    for name, constraint in strategy.parameter_constraints.items():
        if isinstance(constraint, Options):
            yield name, "bogus"
        elif isinstance(constraint, Interval) and constraint.low is not None:
            yield name, constraint.low - (1 if constraint.integer else 0.5)
            if constraint.integer:
                yield name, 2.5
        if isinstance(constraint, Interval) and constraint.high is not None:
            yield name, constraint.high + 1


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_registry_contract_validates_parameters_at_select_time(name):
    """scikit-learn style: values set with set_params are checked by select, naming the parameter."""
    inputs = _inputs()
    strategy = get_strategy(name)
    if name == "stratified":  # checks its own parameters, and its base strategy's
        invalid = [("base", "bogus"), ("base", "stratified"), ("quotas", {"wrist": -1}),
                   ("base_params", {"candidate_pool": 0})]
        strategy.set_params(base="kcenter")
    else:
        assert set(strategy.get_params()) == set(strategy.parameter_constraints), "every parameter is constrained"
        invalid = list(_invalid_values(strategy))
    for parameter, value in invalid:
        bad = clone(strategy).set_params(**{parameter: value})
        with pytest.raises(ValueError, match=f"{parameter}.*(valid|must be)"):
            bad.select(5, random_state=0, **inputs)
        with pytest.raises(ValueError, match=parameter):
            get_strategy(name, **{**strategy.get_params(), parameter: value})
    for parameter, constraint in strategy.parameter_constraints.items():
        if getattr(constraint, "integer", False) and constraint.low is not None:
            assert parameter in [item for item, _ in invalid], f"{name}.{parameter} must reject {constraint.low - 1}"


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_registry_contract_takes_a_numpy_generator_as_random_state(name):
    inputs = _inputs()
    first = get_strategy(name).select(10, random_state=np.random.default_rng(5), **inputs)
    again = get_strategy(name).select(10, random_state=np.random.default_rng(5), **inputs)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_documents_what_its_scores_mean(name):
    from radloop.retrieval.base import SelectionStrategy

    own = [cls.__doc__ or "" for cls in STRATEGIES[name].__mro__
           if issubclass(cls, SelectionStrategy) and cls is not SelectionStrategy]
    assert any("scores_" in doc for doc in own), f"{name}: say what scores_ holds"


def test_kcenter_accepts_a_boolean_mask_of_initial_centers_and_refuses_bad_ones():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 4)).astype(np.float32)
    mask = np.zeros(50, dtype=bool)
    mask[[10, 20]] = True
    picks, _ = kcenter_greedy(vectors, 3, initial_centers=mask)
    np.testing.assert_array_equal(picks, kcenter_greedy(vectors, 3, initial_centers=[10, 20])[0])
    np.testing.assert_array_equal(kcenter_greedy_reference(vectors, 3, mask), picks)
    assert not set(picks.tolist()) & {10, 20}
    with pytest.raises(ValueError, match="boolean mask must have shape \\(50,\\)"):
        kcenter_greedy(vectors, 3, initial_centers=mask[:10])
    with pytest.raises(ValueError, match="indices in \\[0, 50\\)"):
        kcenter_greedy_reference(vectors, 3, [-1])
    with pytest.raises(ValueError, match="integer indices or a boolean mask"):
        kcenter_greedy(vectors, 3, initial_centers=[1.5])
    with pytest.raises(ValueError, match="candidates must be a boolean mask"):
        kcenter_greedy(vectors, 3, candidates=np.arange(5))


def test_positive_class_probabilities_as_a_column_mean_the_same_as_1d():
    positive = np.array([0.98, 0.5, 0.7, 0.55, 0.9])
    for name in ("least_confidence", "margin", "entropy"):
        column = get_strategy(name).select(2, probabilities=positive[:, None], random_state=0)
        assert column.tolist() == get_strategy(name).select(2, probabilities=positive, random_state=0).tolist()
        assert column.tolist() == [1, 3], name


@pytest.mark.parametrize("probabilities, message", [
    (np.tile([0.3, 0.3, 0.3], (5, 1)), "probabilities rows must sum to 1"),
    (np.full((5, 3), 0.9), "probabilities rows must sum to 1"),
    (np.tile([1.5, -0.5], (5, 1)), "probabilities must lie in \\[0, 1\\]"),
])
def test_probabilities_that_are_not_distributions_are_refused(probabilities, message):
    with pytest.raises(ValueError, match=message):
        get_strategy("margin").select(2, probabilities=probabilities, random_state=0)


def test_weak_labels_errors_name_the_argument_and_statuses_map_for_binary_findings():
    positive = np.array([0.95, 0.9, 0.1, 0.5, 0.05])
    statuses = np.array(["positive", "negative", "positive", "uncertain", "negative"])
    strategy = get_strategy("report_disagreement")
    picks = strategy.select(5, probabilities=positive, weak_labels=statuses, random_state=0)
    expected = get_strategy("report_disagreement").select(
        5, probabilities=positive, weak_labels=np.array([1, 0, 1, np.nan, 0]), random_state=0)
    assert picks.tolist() == expected.tolist()
    with_none = np.array([1, None, 0, 1, 0], dtype=object)
    assert len(strategy.select(5, probabilities=positive, weak_labels=with_none, random_state=0)) == 5
    three = np.tile([0.2, 0.3, 0.5], (5, 1))
    for weak, message in ((1, "weak_labels must be a 1-D array.*a scalar"),
                          (np.full(5, 2.5), "weak_labels must be .*class indices.*2.5"),
                          (np.array(["yes"] * 5), "weak_labels must be .*report statuses.*'yes'"),
                          (statuses, "weak_labels given as report statuses need binary probabilities")):
        with pytest.raises(ValueError, match=message):
            get_strategy("report_disagreement").select(2, probabilities=three, weak_labels=weak, random_state=0)


def test_embeddings_that_overflow_float32_are_named_as_such():
    embeddings = np.random.default_rng(0).normal(size=(20, 3)) * 1e39
    with pytest.raises(ValueError, match="embeddings overflow float32"):
        get_strategy("kcenter").select(2, embeddings=embeddings, random_state=0)


@pytest.mark.parametrize("missing", [None, np.nan, ""])
def test_stratified_puts_missing_groups_in_one_unknown_stratum(missing):
    groups = np.array(["wrist", "elbow", missing] * 20, dtype=object)
    strategy = get_strategy("stratified")
    picks = strategy.select(6, embeddings=np.zeros((60, 2)), groups=groups, random_state=0)
    assert len(picks) == 6 and sorted(np.bincount(picks % 3).tolist()) == [2, 2, 2]
    assert sum(reason.startswith("stratum unknown:") for reason in strategy.reasons_) == 2
    numeric = np.array([np.nan, 1.0, 2.0] * 20)
    assert len(get_strategy("stratified").select(6, embeddings=np.zeros((60, 2)), groups=numeric,
                                                 random_state=0)) == 6


def test_stratified_interleaves_strata_in_each_base_order():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1, 1], size=200)
    groups = np.array(["a", "b"] * 100)
    strategy = get_strategy("stratified", base="margin")
    picks = strategy.select(6, probabilities=probabilities, groups=groups, random_state=0)
    assert groups[picks].tolist() == ["a", "b"] * 3  # a prefix is as stratified as the whole
    for stratum in ("a", "b"):
        mask = groups != stratum
        alone = get_strategy("margin").select(3, probabilities=probabilities, labeled_mask=mask, random_state=0)
        assert picks[groups[picks] == stratum].tolist() == alone.tolist()
    uneven = get_strategy("stratified", quotas={"a": 2, "b": 1}).select(
        6, embeddings=np.zeros((200, 2)), groups=groups, random_state=0)
    assert groups[uneven].tolist() == ["a", "b", "a", "a", "b", "a"]


def test_uncertainty_reasons_read_the_right_way_round():
    """A margin score of 1 is a top-two gap of 0: the queue must not read 'margin 1.000' as a large margin."""
    from radloop.retrieval import get_strategy

    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.7, 0.3]])
    embeddings = np.eye(3, 4, dtype=np.float32)
    strategy = get_strategy("margin")
    strategy.select(1, embeddings=embeddings, labeled_mask=np.zeros(3, bool), probabilities=probabilities)
    assert strategy.reasons_ == ["margin uncertainty 1.000 (top-two gap 0.000)"]
    strategy = get_strategy("least_confidence")
    strategy.select(1, embeddings=embeddings, labeled_mask=np.zeros(3, bool), probabilities=probabilities)
    assert strategy.reasons_ == ["least confidence 0.500 (top class p 0.500)"]
