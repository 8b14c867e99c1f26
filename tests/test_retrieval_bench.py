"""Benchmark commands on small synthetic inputs: JSON keys, plot, label savings arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from radloop.retrieval.al_bench import (LinearProbe, full_pool_score, label_savings, probe_features,
                                       random_subset_headroom, run_benchmark, savings_noise_floor, score)
from radloop.retrieval.al_tasks import TaskData
from radloop.retrieval.al_tasks import load_coco_targets

REGIONS = ("elbow positive", "wrist positive", "humerus fracture", "humerus")


def _coco(tmp_path, count=160, seed=0):
    rng = np.random.default_rng(seed)
    categories = [{"id": 0, "name": "bones", "supercategory": "none"}] + [
        {"id": i + 1, "name": name, "supercategory": "bones"} for i, name in enumerate(REGIONS)]
    images, annotations, names, vectors = [], [], [], []
    for i in range(count):
        name = f"img{i:04d}.jpg"
        images.append({"id": i, "file_name": name, "width": 64, "height": 64})
        region = i % 3  # elbow, wrist, humerus
        boxed = i % 2 == 0
        if boxed:
            annotations.append({"id": len(annotations), "image_id": i, "category_id": region + 1,
                                "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0})
        names.append(name)
        vectors.append(np.concatenate([np.eye(3)[region] * 2, [1.5 * boxed], rng.normal(size=12)]))
    path = tmp_path / "train.coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    npz = tmp_path / "emb.npz"
    np.savez(npz, ids=np.array(names), file_names=np.array(names), vectors=np.asarray(vectors, np.float32))
    (tmp_path / "images").mkdir()
    return path, npz


def test_held_out_split_keeps_copies_of_one_source_image_together():
    from radloop.retrieval.al_tasks import CocoImages, source_key, split_by_source

    names = [f"case{i:03d}_jpg.rf.{(i * 7919 + copy):032x}.jpg" for i in range(40) for copy in range(3)]
    names += [f"plain{i}.png" for i in range(30)]
    images = CocoImages(names, [None] * len(names), np.zeros(len(names), dtype=int))
    assert source_key(names[0]) == source_key(names[2]) == "case000_jpg" and source_key("plain3.png") == "plain3.png"
    pool, evaluation, held = split_by_source(images, 0.25, seed=1)
    assert len(pool.file_names) + len(evaluation.file_names) == len(names)
    assert not {source_key(n) for n in pool.file_names} & {source_key(n) for n in evaluation.file_names}
    assert abs(held.sum() - 0.25 * len(names)) <= 3  # whole sources: off by less than one source (3 copies)
    again = split_by_source(images, 0.25, seed=1)[1]
    assert again.file_names == evaluation.file_names
    assert split_by_source(images, 0.25, 2)[1].file_names != evaluation.file_names
    with pytest.raises(ValueError, match="eval fraction"):
        split_by_source(images, 1.0, 0)


def test_coco_targets_follow_the_category_names(tmp_path):
    path, _ = _coco(tmp_path, count=12)
    targets = load_coco_targets(path)
    assert targets.regions[:4] == ["elbow", None, "humerus", None]
    assert targets.fracture.tolist()[:4] == [1, 0, 1, 0]


def test_label_savings_arithmetic():
    curves = {"random": {"labels": [10, 20, 30, 40], "mean": [0.5, 0.6, 0.65, 0.7]},
              "good": {"labels": [10, 20, 30, 40], "mean": [0.6, 0.72, 0.8, 0.8]},
              "bad": {"labels": [10, 20, 30, 40], "mean": [0.4, 0.5, 0.6, 0.62]}}
    savings, needed = label_savings(curves, 40)
    assert needed == {"random": 40, "good": 20, "bad": None}
    assert savings == {"random": 1.0, "good": 2.0, "bad": 0.75}  # random reaches 0.62 at 30 of 40
    assert savings_noise_floor(curves) == 1.0  # random still rises at the end


def test_savings_noise_floor_is_what_a_copy_of_random_would_get():
    """A random curve that peaked before the budget lets a strategy with random's very curve show savings > 1:
    the benchmark says how much (the floor) next to the savings."""
    curves = {"random": {"labels": [50, 100, 150, 200], "mean": [0.55, 0.60, 0.61, 0.60]}}
    curves["copy"] = {"labels": curves["random"]["labels"], "mean": list(curves["random"]["mean"])}
    savings, _ = label_savings(curves, 200)
    assert savings["copy"] == savings_noise_floor(curves) == 2.0  # random reached 0.60 at 100 of 200


def test_balanced_accuracy_score_is_sklearns_without_the_missing_class_warning():
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    targets = np.array([0, 0, 0, 1, 1, 2])  # class 3 never held out, but the probe predicts it
    probabilities = rng.dirichlet(np.ones(4), size=len(targets))
    probabilities[1] = [0.0, 0.0, 0.0, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        value = score("balanced_accuracy", targets, probabilities)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(targets, probabilities.argmax(axis=1))
    assert value == expected  # numerically identical, not just close
    assert score("balanced_accuracy", targets, np.eye(4)[[0, 0, 0, 1, 1, 2]]) == 1.0


def test_probe_features_standardise_by_default_and_whiten_on_request():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(200, 16)) * np.linspace(0.1, 10, 16) + 3.0
    standard = probe_features(pool).transform(pool)
    assert standard.shape == (200, 16)  # every dimension kept
    assert np.allclose(standard.mean(axis=0), 0, atol=1e-9) and np.allclose(standard.std(axis=0), 1, atol=1e-9)
    whitened = probe_features(pool, 4).transform(pool)
    assert whitened.shape == (200, 4)
    assert np.allclose(np.cov(whitened.T), np.eye(4), atol=0.02)  # decorrelated, unit variance


def test_bench_active_learning_cli(tmp_path):
    from radloop.app.cli import build_app

    coco, npz = _coco(tmp_path)
    out = tmp_path / "results.json"
    result = CliRunner().invoke(build_app(), [
        "bench", "active-learning", "--train-coco", str(coco), "--train-images", str(tmp_path / "images"),
        "--eval-fraction", "0.3", "--tasks", "region,fracture", "--strategies", "random,margin,kcenter,typiclust,"
        "cluster_margin,badge", "--budget", "30", "--step", "10", "--seeds", "2", "--embeddings", str(npz),
        "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["probe"] == {"C": 0.1, "pca_components": None} and data["std_ddof"] == 0
    for task in ("region", "fracture"):
        entry = data["tasks"][task]
        for name in ("random", "margin", "kcenter", "typiclust", "cluster_margin", "badge"):
            curve = entry["strategies"][name]
            assert curve["labels"] == [10, 20, 30] and len(curve["mean"]) == len(curve["std"]) == 3
            assert name in entry["label_savings"]
        assert entry["savings_noise_floor"] >= 1.0
    assert data["tasks"]["region"]["strategies"]["random"]["mean"][-1] > 0.9  # separable synthetic regions
    assert out.with_suffix(".png").stat().st_size > 1000
    printed = result.stderr + result.output
    assert "label savings" in printed and "± = seed std" in printed  # the spread next to every saving


def test_bench_active_learning_rejects_bad_input(tmp_path):
    from radloop.app.cli import build_app

    coco, npz = _coco(tmp_path, count=40)
    base = ["bench", "active-learning", "--train-coco", str(coco), "--train-images", str(tmp_path / "images"),
            "--embeddings", str(npz), "--out", str(tmp_path / "r.json"), "--budget", "20", "--step", "10"]
    runner = CliRunner()
    unknown = runner.invoke(build_app(), base + ["--strategies", "random,oracle"])
    assert unknown.exit_code != 0 and "valid:" in unknown.output
    needs = runner.invoke(build_app(), base + ["--strategies", "random,report_disagreement"])
    assert needs.exit_code != 0 and "weak_labels" in needs.output
    task = runner.invoke(build_app(), base + ["--tasks", "knee"])
    assert task.exit_code != 0 and "unknown task 'knee'" in task.output


def _bench_fracture(tmp_path, count: int, budget: int, *options: str):
    """`radloop bench active-learning` on the fracture task of a synthetic set, one seed: (result, JSON path)."""
    from radloop.app.cli import build_app

    tmp_path.mkdir(exist_ok=True)
    coco, npz = _coco(tmp_path, count=count)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(build_app(), [
        "bench", "active-learning", "--train-coco", str(coco), "--train-images", str(tmp_path / "images"),
        "--embeddings", str(npz), "--out", str(out), "--budget", str(budget), "--step", "10", "--seeds", "1",
        "--tasks", "fracture", *options])
    return result, out


def test_bench_active_learning_default_strategies(tmp_path):
    from radloop.retrieval.al_bench import DEFAULT_STRATEGIES

    result, out = _bench_fracture(tmp_path, 60, 20)
    assert result.exit_code == 0, result.output
    assert list(json.loads(out.read_text())["tasks"]["fracture"]["strategies"]) == list(DEFAULT_STRATEGIES)


@pytest.mark.parametrize("command, keys", [
    (["bench", "selection", "--n", "3000", "--dim", "16", "--budget", "40"],
     ("seconds", "reference_kcenter_s", "kcenter_same_picks")),
    (["bench", "retrieval", "--n", "4000", "--dim", "16", "--queries", "50"],
     ("recall_at_10", "qps_batched", "qps_single", "qps_exact", "memory_mb", "flat_memory_mb", "build_s")),
])
def test_scale_bench_cli_keys(command, keys):
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), command + ["--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert all(key in data for key in keys)
    if "kcenter_same_picks" in data:
        assert data["kcenter_same_picks"] == 1.0 and set(data["seconds"]) == {"kcenter", "cluster_margin"}
    else:
        assert data["recall_at_10"] == 1.0  # 4,000 vectors: exact index


def _binary_task(separation: float, dim: int, seed: int = 0) -> TaskData:
    """Two classes apart by ``separation`` along one of ``dim`` standard-normal dimensions."""
    rng = np.random.default_rng(seed)
    pool_y, eval_y = rng.integers(0, 2, 600), rng.integers(0, 2, 400)
    pool_x, eval_x = rng.normal(size=(600, dim)).astype(np.float32), rng.normal(size=(400, dim)).astype(np.float32)
    pool_x[:, 0] += separation * pool_y
    eval_x[:, 0] += separation * eval_y
    return TaskData("fracture", "auroc", ["absent", "present"], pool_x, pool_y, eval_x, eval_y)


def test_random_subset_headroom_tells_a_saturated_task_from_a_data_hungry_one():
    easy = random_subset_headroom(_binary_task(20.0, 5), labels=20, reference_labels=100, draws=60, reference_draws=20)
    hungry = random_subset_headroom(_binary_task(3.0, 300), labels=20, reference_labels=100, draws=60,
                                    reference_draws=20)
    # a few labels already score what many do: a 5x saving is there for the taking
    assert easy["share_reaching_reference"] >= 0.5 and easy["savings"] == 5.0
    # one signal dimension among 300: 20 random labels fall far short of 100, a 5x saving needs a rare set
    assert hungry["mean"] < hungry["reference_mean"] - 0.05 and hungry["share_reaching_reference"] <= 0.05
    assert hungry["p99"] <= hungry["max"] and hungry["draws"] == 60
    again = random_subset_headroom(_binary_task(3.0, 300), labels=20, reference_labels=100, draws=60,
                                   reference_draws=20)
    assert again == hungry  # seeded


def test_random_subset_headroom_rejects_bad_sizes():
    task = _binary_task(2.0, 4)
    with pytest.raises(ValueError, match="labels < reference_labels"):
        random_subset_headroom(task, labels=100, reference_labels=100)
    with pytest.raises(ValueError, match="pool size"):
        random_subset_headroom(task, labels=10, reference_labels=601)
    with pytest.raises(ValueError, match="at least one draw"):
        random_subset_headroom(task, labels=10, reference_labels=50, draws=0)


def test_bench_active_learning_headroom_in_json_and_printed(tmp_path):
    result, out = _bench_fracture(tmp_path, 80, 30, "--strategies", "random", "--headroom-draws", "12",
                                  "--headroom-savings", "3")
    assert result.exit_code == 0, result.output
    headroom = json.loads(out.read_text())["tasks"]["fracture"]["headroom"]
    assert headroom["labels"] == 10 and headroom["reference_labels"] == 30 and headroom["draws"] == 12
    assert headroom["reference_draws"] == 20 and 0.0 <= headroom["share_reaching_reference"] <= 1.0
    assert "headroom for 3x" in result.stderr + result.output
    bad, _ = _bench_fracture(tmp_path / "bad", 80, 30, "--strategies", "random", "--headroom-draws", "12",
                             "--headroom-savings", "1")
    assert bad.exit_code != 0 and "headroom_savings must be above 1" in bad.output


def test_full_pool_score_is_the_probe_on_every_pool_label():
    task = _binary_task(1.0, 40)
    full = full_pool_score(task, regularization=0.5)
    probe = LinearProbe(2, 0.5).fit(task.pool_x, task.pool_y, probe_features(task.pool_x))
    assert full == {"labels": 600, "score": round(score("auroc", task.eval_y, probe.predict_proba(task.eval_x)), 4)}
    few = LinearProbe(2, 0.5).fit(task.pool_x[:40], task.pool_y[:40], probe_features(task.pool_x))
    assert full["score"] > score("auroc", task.eval_y, few.predict_proba(task.eval_x))  # more labels, more signal
    result = run_benchmark([task], ["random"], budget=40, step=20, seeds=1, regularization=0.5)
    assert result["tasks"]["fracture"]["full_pool"] == full


def test_bench_active_learning_prints_the_full_pool_score(tmp_path):
    result, out = _bench_fracture(tmp_path, 80, 30, "--strategies", "random")
    assert result.exit_code == 0, result.output
    entry = json.loads(out.read_text())["tasks"]["fracture"]
    assert entry["full_pool"]["labels"] == entry["n_pool"]
    assert f"every pool label ({entry['n_pool']}): auroc {entry['full_pool']['score']:.3f}; random at 30 labels" \
        in result.stderr + result.output


def test_bench_selection_refuses_a_budget_larger_than_the_pool():
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["bench", "selection", "--n", "200", "--dim", "8", "--budget", "500"])
    assert result.exit_code == 2 and "--budget 500 is more than the 200 unlabelled vectors" in result.output


def test_bench_selection_times_every_registry_strategy_with_synthetic_strata_and_weak_labels():
    """`--strategies stratified` failed with "needs groups; none given", report_disagreement with weak labels."""
    from radloop.retrieval.scale_bench import bench_selection, clustered_vectors
    from radloop.retrieval.strategies import STRATEGIES

    vectors = clustered_vectors(300, 8, n_clusters=10, seed=1)
    result = bench_selection(vectors, 20, strategies=tuple(STRATEGIES), labelled=10, reference=False)
    assert set(result["seconds"]) == set(STRATEGIES)
    assert set(result["synthetic"]) == {"groups", "weak_labels"}
    plain = bench_selection(vectors, 20, strategies=("kcenter",), reference=False)
    assert "synthetic" not in plain  # nothing made up when no strategy needs it


def test_cli_bench_selection_stratified():
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["bench", "selection", "--n", "300", "--dim", "8", "--budget", "20",
                                              "--strategies", "stratified,report_disagreement", "--no-reference",
                                              "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["seconds"]) == {"stratified", "report_disagreement"}


def test_features_are_found_for_coco_file_names_with_a_subfolder():
    from radloop.retrieval.al_tasks import CocoImages, features_for

    images = CocoImages(file_names=["train/a.jpg", "b.jpg"], regions=[None, None], fracture=np.array([0, 1]))
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    rows = features_for(images, ["b.jpg", "x.jpg", "train/a.jpg"], vectors, "test")
    np.testing.assert_array_equal(rows, vectors[[2, 0]])
    with pytest.raises(ValueError, match=r"1 image\(s\) have no embedding in test, e.g. \['train/a.jpg'\]"):
        features_for(images, ["b.jpg"], vectors[:1], "test")
