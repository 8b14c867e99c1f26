"""Label-efficiency benchmark: simulated active learning with a linear probe on frozen embeddings.

For every task, strategy and seed: start from ``step`` labels, retrain a logistic-regression probe on the
labelled embeddings every round, score the evaluation images, let the strategy pick the next ``step``
images from the pool, until ``budget``.  Strategies that need a model's probabilities start from the same
random first batch as ``random`` (same seed); the others (``random``, ``kcenter``, ``typiclust``,
``cluster_margin``, ``badge``) choose the first batch themselves (cold start).

Label savings of a strategy = random's labels at the budget / the labels the strategy needs to reach
random's final score (first curve point at or above it).  A strategy that never reaches it gets
(labels random needs to reach the strategy's final score) / budget, which is below 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from radloop.core.config import did_you_mean
from radloop.retrieval.al_tasks import TaskData
from radloop.retrieval.strategies import STRATEGIES, get_strategy

DEFAULT_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "kcenter", "typiclust", "cluster_margin",
                      "badge")
#: strategies that can pick the first batch without a model.
COLD_START = ("random", "kcenter", "typiclust", "cluster_margin", "badge")


class LinearProbe:
    """Standardised features + logistic regression, tolerant of rounds where a class is still missing.

    Args:
        n_classes: number of classes C of the task.
        regularization: inverse regularisation strength ``C`` of the logistic regression.
    """

    def __init__(self, n_classes: int, regularization: float = 0.1):
        self.n_classes = n_classes
        self.regularization = regularization

    def fit(self, features: np.ndarray, targets: np.ndarray, scaler) -> "LinearProbe":
        from sklearn.linear_model import LogisticRegression

        self.scaler_ = scaler
        self.classes_ = np.unique(targets)
        self.model_ = None
        if len(self.classes_) > 1:
            self.model_ = LogisticRegression(C=self.regularization, max_iter=2000, class_weight="balanced")
            self.model_.fit(scaler.transform(features), targets)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) over all task classes (0 for classes not seen yet)."""
        probabilities = np.zeros((len(features), self.n_classes))
        if self.model_ is None:  # one class labelled so far: predict it (constant scores, AUROC 0.5)
            probabilities[:, self.classes_[0]] = 1.0
            return probabilities
        probabilities[:, self.model_.classes_] = self.model_.predict_proba(self.scaler_.transform(features))
        return probabilities


def probe_features(pool: np.ndarray, components: int | None = None):
    """The probe's input transform, fitted on the unlabelled pool (unsupervised).

    Default (``components=None``): standardise every embedding dimension, the same input as ``bench ssl``'s
    probe.  ``components=N`` standardises and PCA-whitens to N dimensions instead (cheaper rounds; measured
    on the fracture set with a CPU SimCLR encoder it lowered random's score at 500 labels from 0.607 to 0.574
    region balanced accuracy and from 0.657 to 0.614 fracture AUROC with N = 64).
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not components:
        return StandardScaler().fit(pool)
    components = min(components, pool.shape[1], len(pool))
    return make_pipeline(StandardScaler(), PCA(components, whiten=True, random_state=0)).fit(pool)


def score(metric: str, targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Balanced accuracy (argmax) or AUROC of the positive class."""
    from sklearn.metrics import roc_auc_score

    from radloop.core.metrics import balanced_accuracy

    if metric == "balanced_accuracy":  # quiet when the probe predicts a class the held-out images lack
        return balanced_accuracy(targets, probabilities.argmax(axis=1))
    if len(np.unique(targets)) < 2:
        raise ValueError("AUROC needs both classes in the evaluation set")
    return float(roc_auc_score(targets, probabilities[:, 1]))


def learning_curve(task: TaskData, strategy: str, *, budget: int, step: int, seed: int,
                   regularization: float = 0.1, strategy_params: dict | None = None,
                   pca_components: int | None = None) -> tuple[list[int], list[float]]:
    """(labels, scores) of one strategy and seed on one task."""
    scaler = probe_features(task.pool_x, pca_components)
    labelled = np.zeros(len(task.pool_x), dtype=bool)
    labels, scores = [], []
    probe = None
    for round_index, target in enumerate(range(step, budget + 1, step)):
        wanted = target - int(labelled.sum())
        if wanted <= 0 or labelled.all():
            break
        round_seed = seed * 100_003 + round_index
        if probe is None and strategy not in COLD_START:
            picks = get_strategy("random").select(wanted, embeddings=task.pool_x, labeled_mask=labelled,
                                                  random_state=round_seed)
        else:
            probabilities = probe.predict_proba(task.pool_x) if probe is not None else None
            picks = get_strategy(strategy, **(strategy_params or {})).select(
                wanted, embeddings=task.pool_x, labeled_mask=labelled, probabilities=probabilities,
                random_state=round_seed)
        labelled[picks] = True
        probe = LinearProbe(len(task.classes), regularization).fit(task.pool_x[labelled], task.pool_y[labelled],
                                                                   scaler)
        labels.append(int(labelled.sum()))
        scores.append(score(task.metric, task.eval_y, probe.predict_proba(task.eval_x)))
    return labels, scores


def label_savings(curves: dict[str, dict], budget: int) -> tuple[dict[str, float], dict[str, int | None]]:
    """Savings per strategy relative to ``random`` and the labels each needs to reach random's final score.

    A strategy's savings are random's labels (the last step, where its final score is measured) divided by the
    first step at which the strategy's seed-averaged curve reaches that score (no interpolation); one that never
    does gets ``labels random needs to reach the strategy's final score / random's labels`` (< 1).  ``random``
    itself is 1.0 by definition: :func:`savings_noise_floor` tells what this formula would give it.
    """
    if "random" not in curves:
        raise ValueError("label savings need the 'random' strategy in the run")
    random_labels, random_mean = curves["random"]["labels"], curves["random"]["mean"]
    target = random_mean[-1]
    savings, needed = {}, {}
    for name, curve in curves.items():
        reached = [labels for labels, mean in zip(curve["labels"], curve["mean"]) if mean >= target - 1e-12]
        if name == "random":
            needed[name], savings[name] = random_labels[-1], 1.0
        elif reached:
            needed[name] = reached[0]
            savings[name] = round(random_labels[-1] / reached[0], 3)
        else:
            needed[name] = None
            final = curve["mean"][-1]
            random_reach = next(labels for labels, mean in zip(random_labels, random_mean) if mean >= final)
            savings[name] = round(random_reach / random_labels[-1], 3)
    return savings, needed


def savings_noise_floor(curves: dict[str, dict]) -> float:
    """The savings :func:`label_savings` would give a copy of random's own curve: random's labels divided by the
    first step at which random's seed-averaged curve already reaches its final score.  1.0 for a curve that still
    rises at the end; above 1 when it levelled off (or peaked) earlier, and then savings up to this figure are
    within what random's own curve gives."""
    labels, mean = curves["random"]["labels"], curves["random"]["mean"]
    first = next(count for count, value in zip(labels, mean) if value >= mean[-1] - 1e-12)
    return round(labels[-1] / first, 3)


def random_subset_headroom(task: TaskData, *, labels: int, reference_labels: int, draws: int = 2000,
                           reference_draws: int = 200, seed: int = 0, regularization: float = 0.1,
                           pca_components: int | None = None) -> dict:
    """How exceptional a training set of ``labels`` pool images must be to score what ``reference_labels``
    random ones do, with the benchmark's probe.

    Scores ``draws`` random subsets of ``labels`` images and ``reference_draws`` of ``reference_labels``; the
    share of small subsets that reach the reference mean says how rare a set a label-free strategy must find
    to save ``reference_labels / labels`` times the labels (judged on the evaluation images): 0.01 means it has
    to beat 99 % of random picks.  Seeded; the probe, input transform and metric are the learning curves'.

    Raises:
        ValueError: ``labels`` not below ``reference_labels``, more labels than pool images, no draws.
    """
    if not 1 <= labels < reference_labels <= len(task.pool_y):
        raise ValueError(f"need 1 <= labels < reference_labels <= pool size ({len(task.pool_y)}), got "
                         f"labels={labels}, reference_labels={reference_labels}")
    if draws < 1 or reference_draws < 1:
        raise ValueError(f"need at least one draw, got draws={draws}, reference_draws={reference_draws}")
    scaler = probe_features(task.pool_x, pca_components)
    rng = np.random.default_rng(seed)

    def scores(size: int, count: int) -> np.ndarray:
        values = []
        for _ in range(count):
            rows = rng.choice(len(task.pool_y), size, replace=False)
            probe = LinearProbe(len(task.classes), regularization).fit(task.pool_x[rows], task.pool_y[rows], scaler)
            values.append(score(task.metric, task.eval_y, probe.predict_proba(task.eval_x)))
        return np.asarray(values)

    reference = scores(reference_labels, reference_draws)
    small = scores(labels, draws)
    return {"labels": labels, "reference_labels": reference_labels, "draws": draws,
            "reference_draws": reference_draws, "savings": round(reference_labels / labels, 3),
            "mean": round(float(small.mean()), 4), "std": round(float(small.std()), 4),
            "p99": round(float(np.percentile(small, 99)), 4), "max": round(float(small.max()), 4),
            "reference_mean": round(float(reference.mean()), 4),
            "share_reaching_reference": round(float((small >= reference.mean()).mean()), 4)}


def full_pool_score(task: TaskData, *, regularization: float = 0.1, pca_components: int | None = None) -> dict:
    """The benchmark's probe trained on every pool image's label, scored on the evaluation images: the score that
    labelling the whole pool would buy, against which a learning curve's remaining headroom reads (a strategy
    that saves k times random's labels must score, with budget / k labels, what random does with the budget)."""
    scaler = probe_features(task.pool_x, pca_components)
    probe = LinearProbe(len(task.classes), regularization).fit(task.pool_x, task.pool_y, scaler)
    return {"labels": len(task.pool_y), "score": round(score(task.metric, task.eval_y, probe.predict_proba(task.eval_x)), 4)}


def run_benchmark(tasks: list[TaskData], strategies: list[str], *, budget: int, step: int, seeds: int,
                  regularization: float = 0.1, pca_components: int | None = None,
                  headroom_draws: int = 0, headroom_savings: float = 5.0,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Learning curves (mean, std over seeds: the population std, ddof 0, also said in the JSON as ``std_ddof``)
    and label savings for every task and strategy, with ``savings_noise_floor`` (:func:`savings_noise_floor`) and
    ``full_pool`` (:func:`full_pool_score`: the probe on every pool label).

    With ``headroom_draws`` > 0 every task also gets ``headroom``: :func:`random_subset_headroom` for
    ``budget / headroom_savings`` labels against ``budget`` random ones.

    Raises:
        ValueError: unknown strategy, a strategy this benchmark cannot feed, bad budget/step.
    """
    if step < 1 or budget < step:
        raise ValueError(f"need 1 <= step <= budget, got step={step}, budget={budget}")
    if headroom_draws and not headroom_savings > 1:
        raise ValueError(f"headroom_savings must be above 1, got {headroom_savings}")
    for name in strategies:
        if name not in STRATEGIES:
            raise ValueError(f"unknown selection strategy {name!r}{did_you_mean(name, STRATEGIES)}; valid: "
                             f"{', '.join(sorted(STRATEGIES))}")
        needs = set(STRATEGIES[name].needs) - {"embeddings", "probabilities"}
        if needs:
            raise ValueError(f"strategy {name!r} needs {', '.join(sorted(needs))}, which this COCO benchmark "
                             "does not have (no reports, no strata)")
    say = progress or (lambda _message: None)
    result: dict = {"budget": budget, "step": step, "seeds": seeds, "std_ddof": 0, "tasks": {},
                    "probe": {"C": regularization, "pca_components": pca_components or None}}
    for task in tasks:
        curves: dict[str, dict] = {}
        covers = (f"the budget ({budget}) covers the whole pool ({len(task.pool_y)} images): every strategy ends "
                  "on the same labels, so random's final score is the full pool's and savings compare the earlier "
                  "steps only" if budget >= len(task.pool_y) else None)
        if covers:
            say(f"{task.name}: note: {covers}")
        for name in strategies:
            runs = []
            for seed in range(seeds):
                labels, scores = learning_curve(task, name, budget=budget, step=step, seed=seed,
                                                regularization=regularization, pca_components=pca_components)
                runs.append(scores)
                say(f"{task.name} {name} seed {seed}: {task.metric} {scores[-1]:.3f} at {labels[-1]} labels")
            matrix = np.asarray(runs)
            curves[name] = {"labels": labels, "mean": np.round(matrix.mean(axis=0), 4).tolist(),
                            "std": np.round(matrix.std(axis=0), 4).tolist(), "runs": np.round(matrix, 4).tolist()}
        entry = {"metric": task.metric, "classes": task.classes, "n_pool": len(task.pool_y),
                 "n_eval": len(task.eval_y), "strategies": curves, **({"note": covers} if covers else {})}
        if "random" in curves:
            entry["label_savings"], entry["labels_to_reach_random"] = label_savings(curves, budget)
            entry["random_final"] = curves["random"]["mean"][-1]
            entry["savings_noise_floor"] = savings_noise_floor(curves)
        entry["full_pool"] = full_pool_score(task, regularization=regularization, pca_components=pca_components)
        if headroom_draws:
            reference = min(budget, len(task.pool_y))
            small = max(1, round(reference / headroom_savings))
            say(f"{task.name}: scoring {headroom_draws} random {small}-label sets against {reference}-label ones")
            entry["headroom"] = random_subset_headroom(
                task, labels=small, reference_labels=reference, draws=headroom_draws,
                reference_draws=max(20, headroom_draws // 10), regularization=regularization,
                pca_components=pca_components)
        result["tasks"][task.name] = entry
    return result


def plot_curves(result: dict, path: str | Path) -> Path:
    """PNG of every task's learning curves (mean line, +-1 std band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = result["tasks"]
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for axis, (name, entry) in zip(axes[0], tasks.items()):
        for strategy, curve in entry["strategies"].items():
            mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
            axis.plot(curve["labels"], mean, marker="o", markersize=3, label=strategy,
                      linewidth=2.5 if strategy == "random" else 1.5, color="black" if strategy == "random" else None)
            axis.fill_between(curve["labels"], mean - std, mean + std, alpha=0.12)
        if "full_pool" in entry:
            axis.axhline(entry["full_pool"]["score"], color="grey", linestyle="--", linewidth=1,
                         label=f"all {entry['full_pool']['labels']} pool labels")
        axis.set_title(f"{name} ({entry['n_pool']} pool / {entry['n_eval']} eval images)")
        axis.set_xlabel("labelled images")
        axis.set_ylabel(entry["metric"])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
