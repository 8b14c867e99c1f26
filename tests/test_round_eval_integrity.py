"""A round's metric is a held-out one: the pool is never the evaluation split, the probe never trains on an
evaluation image (whoever labelled it), `radloop evaluate` refuses a round probe's training data, the
active-learning benchmark refuses an evaluation set that shares images with its pool, ``metric_before`` comes
from the same task measured the same way, and the demo's random baseline fits the rounds' own probe."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from rounds_workspace import build_rounds_catalog


@pytest.fixture(scope="module")
def round_catalog(tmp_path_factory, test_catalog_url):
    """160 real fracture radiographs, a random-init encoder and one finished simulated round (pool: train,
    evaluation: test) whose probe is registered."""
    from radloop.app.rounds import finish_round, start_round

    root = (tmp_path_factory.mktemp("integrity") / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 160)
    _fixed_splits(catalog)
    start_round(catalog, strategy="random", budget=30, simulate=True, dataset="fracture")
    finish_round(catalog)
    yield catalog
    catalog.dispose()


def _fixed_splits(catalog) -> None:
    """Studies in the order of their images' file names: every 4th in test, the next in val, the rest in train
    (the ingest's splits hash keyed pseudonyms, so they change with each workspace's key)."""
    from radloop.core.schema import Image, Study

    with catalog.session() as session:
        first = dict(session.execute(select(Image.study_id, func.min(Image.source_path))
                                     .group_by(Image.study_id)).all())
        for rank, study_id in enumerate(sorted(first, key=first.get)):
            session.get(Study, study_id).split = ("test", "val", "train", "train")[rank % 4]


def _cli(catalog, *args):
    from radloop.app.cli import build_app

    env = {"RADLOOP_DATABASE_URL": catalog.workspace.database_url}
    return CliRunner(env=env).invoke(build_app(), [*args, "--workspace", str(catalog.workspace.root)])


def _split_images(catalog, split: str) -> list[str]:
    from radloop.core.targets import image_targets

    return sorted(t.image_id for t in image_targets(catalog, dataset="fracture", split=split)
                  if t.fracture is not None)


# ------------------------------------------------------------------------ F3a: pool_split == eval_split
def test_a_pool_that_is_the_evaluation_split_is_refused_at_validation(round_catalog):
    from radloop.app.rounds import RoundConfig, load_round_config, round_status, start_round
    from radloop.core.config import ConfigError

    message = r"pool_split and eval_split are both 'test'.*different splits"
    with pytest.raises(ValueError, match=message):
        RoundConfig(pool_split="test", eval_split="test")
    with pytest.raises(ConfigError, match=message):
        load_round_config(None, ["pool_split=test"])
    rounds_before = len(round_status(round_catalog))
    with pytest.raises(ConfigError, match="invalid round settings: pool_split and eval_split are both "
                                          "'val'"):  # keyword overrides (the app, the Python API)
        start_round(round_catalog, pool_split="val", eval_split="val", simulate=True, budget=3)
    result = _cli(round_catalog, "round", "start", "--simulate", "--set", "pool_split=test")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "pool_split and eval_split are both 'test'" in " ".join(result.output.split())
    assert len(round_status(round_catalog)) == rounds_before


# ------------------------------------------------------------------------ F3a: `radloop evaluate` on round probes
@pytest.mark.parametrize("pool_split, eval_split", [("val", "test"), ("train", "val")])
def test_evaluate_reads_a_round_probes_splits(round_catalog, pool_split, eval_split):
    """A round probe has no ``data`` section: its round's pool split is refused as training data and its
    evaluation split is the default, as for a trained model's ``data.train_splits`` / ``data.eval_split``."""
    from radloop.core.registry import current_model, register_model
    from radloop.ssl.finetune_data import DataError
    from radloop.ssl.finetune_evaluate import evaluate_model

    probe = current_model(round_catalog, "findings")
    version = f"{probe.version}-{pool_split}-{eval_split}"
    register_model(round_catalog, version, "probe", "findings", probe.path, parent_version=probe.parent_version,
                   config={**probe.config, "pool_split": pool_split, "eval_split": eval_split}, annotation_ids=[])
    with pytest.raises(DataError, match=f"split '{pool_split}' was used to train {version}: evaluation would leak"):
        evaluate_model(round_catalog, version, split=pool_split)
    evaluated = evaluate_model(round_catalog, version)
    assert evaluated["source"] == f"split:{eval_split}"
    assert evaluated["n_images"] == len(_split_images(round_catalog, eval_split))


def test_evaluate_refuses_the_images_a_round_probe_trained_on(round_catalog):
    from radloop.core.registry import current_model
    from radloop.ssl.finetune_data import DataError
    from radloop.ssl.finetune_evaluate import evaluate_model

    probe = current_model(round_catalog, "findings")
    assert "round" in probe.config and "data" not in probe.config
    with pytest.raises(DataError, match=r"split 'train' was used to train"):
        evaluate_model(round_catalog, probe.version, split="train")
    held_out = evaluate_model(round_catalog, probe.version)
    assert held_out["source"] == "split:test"
    assert held_out["auroc.fracture"] == pytest.approx(probe.metrics["auroc.fracture"], abs=1e-6)


# ------------------------------------------------------------------------ F4: metric_before
def test_metric_before_comes_from_the_same_task_measured_the_same_way(round_catalog):
    from radloop.app.round_finish import _previous_metric
    from radloop.app.rounds import RoundConfig
    from radloop.core.schema import Round

    with round_catalog.session() as session:
        fracture = session.scalars(select(Round).where(Round.task == "fracture", Round.state == "finished")
                                   .order_by(Round.number.desc())).first()
        expected, encoder, measured_on = fracture.metric_after, fracture.model_version, fracture.meta["eval_images"]
        later = fracture.number + 1  # a round of another finding, finished after it
        session.add(Round(number=later, state="finished", strategy="random", budget=5, task="foreign_body",
                          model_version=encoder, metric_name="auroc.foreign_body", metric_after=0.91,
                          config={"task": "foreign_body", "eval_split": "test", "dataset": None}))
    config = RoundConfig(dataset="fracture")
    this = Round(number=later + 1, task="fracture", model_version=encoder)
    assert measured_on == len(_split_images(round_catalog, "test"))
    assert expected is not None and _previous_metric(round_catalog, this, config, measured_on) == (expected, None)

    # measured otherwise: "before" is not this round's starting point; left empty and said so
    other_encoder = Round(number=later + 1, task="fracture", model_version="enc-other")
    before, note = _previous_metric(round_catalog, other_encoder, config, measured_on)
    assert before is None and f"encoder '{encoder}' -> 'enc-other'" in note
    assert "not this round's starting point" in note
    before, note = _previous_metric(round_catalog, this, config.model_copy(update={"eval_split": "val"}))
    assert before is None and "eval_split 'test' -> 'val'" in note
    before, note = _previous_metric(round_catalog, this, config, measured_on + 5)  # images ingested since
    assert before is None and f"eval_images {measured_on} -> {measured_on + 5}" in note


def test_the_learning_curve_counts_labels_per_task(catalog):
    from radloop.app.views_rounds import learning_curve, rounds_frame
    from radloop.core.schema import Round

    with catalog.session() as session:  # rounds without a recorded labels_total (older rows)
        for number, task, spent, before, after in ((1, "fracture", 10, None, 0.6), (2, "foreign_body", 5, None, 0.7),
                                                   (3, "fracture", 10, 0.6, 0.65)):
            session.add(Round(number=number, state="finished", strategy="random", budget=spent, task=task,
                              labels_spent=spent, metric_name=f"auroc.{task}", metric_before=before,
                              metric_after=after))
    frame = rounds_frame(catalog)
    assert frame["labels_total"].tolist() == [10, 5, 20]
    curve = learning_curve(frame)
    fracture = curve[curve["metric_name"] == "auroc.fracture"]
    assert fracture[["labels", "metric"]].values.tolist() == [[10, 0.6], [20, 0.65]]


# ------------------------------------------------------------------------ F5: the demo's baseline
def test_the_demo_baseline_fits_the_rounds_probe(round_catalog, monkeypatch, tmp_path):
    import radloop.ssl.probe as probe_module
    from radloop.app import demo
    from radloop.app.rounds import RoundConfig

    fitted = []

    class Recording(probe_module.LinearProbe):
        def fit(self, *args, **kwargs):
            fitted.append(self.C)
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(probe_module, "LinearProbe", Recording)
    result = demo.DemoResult()
    result.rounds.append({"labels_total": 30})
    summary = demo._random_baseline(round_catalog, demo.DemoOptions(data=tmp_path, random_seeds=2), result)
    assert summary["eval_images"] == len(_split_images(round_catalog, "test"))
    assert fitted == [RoundConfig().probe_C] * 2 and RoundConfig().probe_C != probe_module.LinearProbe().C
    assert result.random_baseline[0]["auroc_mean"] is not None


# ------------------------------------------------------------------------ F3b: evaluation images never train
def test_labels_of_evaluation_images_never_train_the_probe(round_catalog):
    """Labels of test-split images (experts labelling held-out images, or a round that selected from the test
    split before that was refused): the next round's probe leaves them out, its report counts them, it records
    only the choices it trained on, and `radloop evaluate` scores it on the test split."""
    from radloop.app.round_labels import SIMULATE_SOURCE, training_labels
    from radloop.app.rounds import RoundConfig, finish_round, start_round
    from radloop.core.registry import get_model
    from radloop.core.schema import Annotation
    from radloop.core.targets import image_targets
    from radloop.ssl.finetune_evaluate import evaluate_model

    test_images = _split_images(round_catalog, "test")
    truth = {t.image_id: t.fracture for t in image_targets(round_catalog, image_ids=test_images)}
    with round_catalog.session() as session:
        for image_id in test_images:
            session.add(Annotation(image_id=image_id, source=SIMULATE_SOURCE, kind="choice", label="fracture",
                                   annotator="simulated", meta={"value": truth[image_id]}))
            session.add(Annotation(image_id=image_id, source="labelstudio", kind="choice", label="fracture",
                                   annotator="expert", meta={"value": truth[image_id]}))
    for simulate in (True, False):
        labels, left_out = training_labels(round_catalog, RoundConfig(simulate=simulate))
        assert left_out == len(test_images) and not set(labels) & set(test_images)

    start_round(round_catalog, strategy="random", budget=10, simulate=True, dataset="fracture")
    done = finish_round(round_catalog)
    assert (f"{len(test_images)} labelled image(s) of the 'test' split (the evaluation split) left out of "
            "training: they stay the held-out truth") in done.notes
    labels, _ = training_labels(round_catalog, RoundConfig(simulate=True))
    assert done.labels_total == len(labels) and done.labels_left_out == len(test_images) > 0
    assert done.to_json()["labels_left_out"] == len(test_images)
    record = get_model(round_catalog, f"probe-fracture-r{done.number:03d}-{done.model_version[-8:]}")
    with round_catalog.session() as session:
        trained_images = set(session.scalars(select(Annotation.image_id).where(
            Annotation.id.in_(record.annotation_ids))))
    assert trained_images == set(labels)
    assert evaluate_model(round_catalog, record.version)["n_images"] == len(test_images)


# ------------------------------------------------------------------------ F3c: the benchmark's evaluation set
def _write_coco(path, names):
    categories = [{"id": 0, "name": "bones"}, {"id": 1, "name": "elbow positive"}, {"id": 2, "name": "wrist"}]
    images = [{"id": i, "file_name": name, "width": 64, "height": 64} for i, name in enumerate(names)]
    annotations = [{"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [1, 1, 4, 4], "area": 16,
                    "iscrowd": 0} for i in range(len(names))]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.fixture
def bench_sets(tmp_path):
    """A pool of 40 images and an evaluation set of 20 others (synthetic vectors in one NPZ)."""
    rng = np.random.default_rng(0)
    pool, held = [f"pool{i:03d}.jpg" for i in range(40)], [f"held{i:03d}.jpg" for i in range(20)]
    for folder in ("images", "held_images"):
        (tmp_path / folder).mkdir()
    np.savez(tmp_path / "emb.npz", file_names=np.array(pool + held),
             vectors=rng.normal(size=(60, 8)).astype(np.float32))
    return tmp_path, pool, held


def _bench(tmp_path, eval_coco, eval_images):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), [
        "bench", "active-learning", "--train-coco", str(tmp_path / "pool.json"), "--train-images",
        str(tmp_path / "images"), "--eval-coco", str(eval_coco), "--eval-images", str(eval_images), "--embeddings",
        str(tmp_path / "emb.npz"), "--out", str(tmp_path / "r.json"), "--tasks", "region", "--strategies",
        "random", "--budget", "20", "--step", "10", "--seeds", "1"])


def test_bench_refuses_an_evaluation_set_that_shares_pool_images(bench_sets):
    tmp_path, pool, held = bench_sets
    _write_coco(tmp_path / "pool.json", pool)
    separate = _bench(tmp_path, _write_coco(tmp_path / "held.json", held), tmp_path / "held_images")
    assert separate.exit_code == 0, separate.output

    overlapping = _write_coco(tmp_path / "overlap.json", held[:15] + pool[:5])
    same_folder = _bench(tmp_path, overlapping, tmp_path / "images")
    text = " ".join(same_folder.output.split())
    assert same_folder.exit_code == 2 and "Traceback" not in same_folder.output, same_folder.output
    assert "--eval-coco shares 5 of its 20 image(s) with the pool (--train-coco), e.g." in text
    assert "pool000.jpg" in text
    os.symlink(tmp_path / "images", tmp_path / "linked_images")  # another path to the same folder
    linked = _bench(tmp_path, overlapping, tmp_path / "linked_images")
    assert linked.exit_code == 2 and "shares 5 of its 20 image(s)" in " ".join(linked.output.split())
    elsewhere = _bench(tmp_path, _write_coco(tmp_path / "names.json", held[:15] + pool[:5]), tmp_path / "held_images")
    text = " ".join(elsewhere.output.split())  # same names, other files: embeddings matched by name would mix them
    assert elsewhere.exit_code == 2 and "5 evaluation image(s) have the file name of a different pool image" in text


def test_a_round_opened_before_the_refusal_still_finishes_with_its_other_settings_checked(tmp_path, test_catalog_url):
    """A round started (before this check) with pool_split = eval_split resumes and finishes without training on
    that split; its other saved settings are still validated."""
    from pydantic import ValidationError

    from radloop.app.round_record import started_with
    from radloop.app.rounds import finish_round, start_round
    from radloop.core.schema import Round

    root = (tmp_path / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 40)
    try:
        start_round(catalog, strategy="random", budget=5, simulate=True, dataset="fracture")
        with catalog.session() as session:
            row = session.scalars(select(Round)).one()
            row.config = {**row.config, "pool_split": "train", "eval_split": "train"}
        with catalog.session() as session:
            row = session.scalars(select(Round)).one()
            assert (started_with(row).pool_split, started_with(row).eval_split) == ("train", "train")
            with pytest.raises(ValidationError, match="budget"):
                started_with(Round(number=9, config={**row.config, "budget": "lots"}))
        report = finish_round(catalog)
        assert report.state == "finished"
        assert any("left out of training" in note for note in report.notes), report.notes
    finally:
        catalog.dispose()



def _probe_auroc(catalog, labels: dict, encoder: str, split: str) -> float:
    """The rounds' probe fitted on ``labels`` with ``encoder``, its fracture AUROC on ``split`` (computed here)."""
    from sklearn.metrics import roc_auc_score

    from radloop.app.round_labels import round_probe
    from radloop.app.rounds import RoundConfig
    from radloop.core.embeddings import load_embeddings
    from radloop.core.targets import image_labels

    def unit(vectors):
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    train = load_embeddings(catalog, encoder, sorted(labels))
    probe = round_probe(RoundConfig(dataset="fracture")).fit(
        unit(train.vectors), np.array([[labels[i]] for i in train.image_ids]), ["fracture"])
    truth = {image_id: values["fracture"] for image_id, values in image_labels(
        catalog, split=split, dataset="fracture").items() if values.get("fracture") is not None}
    held = load_embeddings(catalog, encoder, sorted(truth))
    return roc_auc_score([truth[i] for i in held.image_ids], probe.predict_proba(unit(held.vectors))[:, 0])


def test_metric_before_is_measured_again_when_the_last_round_measured_otherwise(tmp_path, test_catalog_url):
    """A round evaluated on another split than the last one still says what its labels bought: the probe on the
    labels held before it, with its encoder, scored on its evaluation images; so is a task's first round when
    labels were held before it."""
    from radloop.app.round_labels import SIMULATE_SOURCE, labelled_image_ids
    from radloop.app.rounds import finish_round, start_round
    from radloop.core.schema import Annotation, Selection

    root = (tmp_path / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 120)
    try:
        _fixed_splits(catalog)
        truth = dict(zip(_split_images(catalog, "train"), [1, 0] * 6))  # 12 labels held before any round
        with catalog.session() as session:
            session.add_all(Annotation(image_id=image_id, source=SIMULATE_SOURCE, kind="choice", label="fracture",
                                       annotator="earlier", meta={"value": value}) for image_id, value in truth.items())
        start_round(catalog, strategy="random", budget=30, simulate=True, dataset="fracture")
        first = finish_round(catalog)
        assert first.metric_before == pytest.approx(_probe_auroc(catalog, truth, first.model_version, "test"))
        assert any("the probe on the 12 label(s) held before this round" in note for note in first.notes)

        start = start_round(catalog, strategy="random", budget=10, simulate=True, dataset="fracture",
                            eval_split="val")
        second = finish_round(catalog)
        with catalog.session() as session:
            own = set(session.scalars(select(Selection.image_id).where(Selection.round_id == start.round_id)))
        val = set(_split_images(catalog, "val"))
        before = {image_id: value for image_id, value in labelled_image_ids(catalog, "fracture", simulate=True).items()
                  if image_id not in own and image_id not in val}
        assert 12 < len(before) <= first.labels_total
        assert second.metric_before == pytest.approx(_probe_auroc(catalog, before, second.model_version, "val"))
        note = next(note for note in second.notes if "measured otherwise" in note)
        assert "eval_split 'test' -> 'val'" in note and f"the probe on the {len(before)} label(s)" in note
    finally:
        catalog.dispose()
