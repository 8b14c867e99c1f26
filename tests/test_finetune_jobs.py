"""End to end on a real-image workspace: train (probe) -> registry -> predictor -> evaluate, via the CLI too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from finetune_workspace import fill_fracture_catalog, register_random_encoder
from radloop.core.registry import get_model, list_models
from radloop.core.schema import Annotation, Image
from radloop.ssl.finetune_config import TrainConfig
from radloop.ssl.finetune_data import DataError, build_labeled_set

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "finetune"


@pytest.fixture
def filled(catalog, tmp_path):
    """24 real radiographs (train/test alternate by study) and a registered current encoder."""
    fill_fracture_catalog(catalog, 24, seed=2, render_size=160)
    register_random_encoder(catalog, tmp_path / "encoder")
    return catalog


def _probe_config(**data) -> TrainConfig:
    return TrainConfig.model_validate({"name": "probe-test", "head": "probe", "data": data,
                                       "trainer": {"num_threads": 1}})


def test_probe_job_registers_lineage_and_never_trains_on_held_out_images(filled):
    from radloop.ssl.finetune_evaluate import evaluate_model
    from radloop.ssl.finetune_jobs import run_training
    from radloop.ssl.predict import ProbePredictor, load_predictor

    result = run_training(filled, _probe_config(), progress=False)
    record = get_model(filled, result.version)
    encoder = filled.current_model("encoder").version
    assert record.kind == "probe" and record.task == "findings" and record.is_current
    assert record.parent_version == encoder and record.config["data"]["eval_split"] == "test"
    train_ids = set(build_labeled_set(filled, ["fracture"], splits=["train"]).annotation_ids)
    assert record.annotation_ids and set(record.annotation_ids) == train_ids
    test_ids = set(build_labeled_set(filled, ["fracture"], splits=["test"]).annotation_ids)
    assert test_ids and not test_ids & set(record.annotation_ids)
    for key in ("auroc.fracture", "ap.fracture", "ece", "region_balanced_accuracy"):
        assert key in record.metrics

    predictor = load_predictor(filled, "findings")
    assert isinstance(predictor, ProbePredictor) and predictor.model_version == result.version
    held_out = build_labeled_set(filled, ["fracture"], splits=["test"], require_labels=False)
    predictions = predictor.predict(held_out.paths[:3])
    assert [p.model_version for p in predictions] == [result.version] * 3
    from radloop.ssl.encoder_adapter import embed_images

    vectors = embed_images(predictor.encoder, held_out.paths[:3])
    np.testing.assert_allclose(predictor.predict_proba_embeddings(vectors)[:, 0],
                               [p.choices["fracture"] for p in predictions], atol=1e-5)
    evaluated = evaluate_model(filled, result.version)
    assert evaluated["auroc.fracture"] == pytest.approx(record.metrics["auroc.fracture"], abs=1e-6)
    with pytest.raises(DataError, match="used to train"):
        evaluate_model(filled, result.version, split="train")


def test_bad_input_is_explained(filled):
    from radloop.ssl.finetune_jobs import run_training

    with pytest.raises(DataError, match="no images in split"):
        run_training(filled, _probe_config(train_splits=["val"], eval_split="test"), progress=False)
    with pytest.raises(ValueError, match="eval_split 'train' is also a training split"):
        _probe_config(eval_split="train")
    with pytest.raises(ValueError, match="unknown finding"):
        _probe_config(findings=["fractures"])
    with pytest.raises(ValueError, match="one class only"):
        finetune = TrainConfig.model_validate({"name": "x", "head": "finetune", "data": {"findings": ["foreign_body"]}})
        with filled.session() as session:
            image = session.query(Image).first()
            session.add(Annotation(image_id=image.id, source="test", kind="choice", label="foreign_body",
                                   meta={"value": 1}))
        run_training(filled, finetune, progress=False)


def test_images_without_labels_are_refused(catalog):
    fill_fracture_catalog(catalog, 4, seed=3, render_size=64, splits=("train",))
    with catalog.session() as session:
        for image in session.query(Image):
            image.meta = {}
            image.body_region = None
        session.query(Annotation).delete()
    with pytest.raises(DataError, match="none of the 4 images in split\\(s\\) train has a label"):
        build_labeled_set(catalog, ["fracture"], splits=["train"])


def test_cli_train_evaluate_models(filled):
    from radloop.app.cli import build_app

    app, runner = build_app(), CliRunner()
    workspace = str(filled.workspace.root)
    versions = []
    for C in (0.1, 1.0):
        result = runner.invoke(app, ["train", "--config", str(CONFIGS / "probe_cpu.yaml"), "--set", f"probe.C={C}",
                                     "--set", "trainer.num_threads=1", "--workspace", workspace, "--json"])
        assert result.exit_code == 0, result.output
        versions.append(json.loads(result.stdout)["version"])
    result = runner.invoke(app, ["evaluate", "--model", versions[0], "--workspace", workspace, "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert {"auroc.fracture", "ap.fracture", "ece"} <= set(metrics) and metrics["source"] == "split:test"
    listed = json.loads(runner.invoke(app, ["models", "list", "--task", "findings", "--workspace", workspace,
                                            "--json"]).stdout)["models"]
    assert [m["version"] for m in listed if m["is_current"]] == [versions[1]]
    table = runner.invoke(app, ["models", "list", "--workspace", workspace]).output  # a pipe: no terminal width
    assert all(version in table for version in versions) and "…" not in table  # whole versions to copy
    bogus = runner.invoke(app, ["models", "list", "--task", "findngs", "--workspace", workspace])
    assert bogus.exit_code == 0 and "no models for task 'findngs'" in bogus.output and "findings" in bogus.output
    result = runner.invoke(app, ["models", "rollback", "findings", "--workspace", workspace, "--json"])
    assert json.loads(result.stdout)["version"] == versions[0] and filled.current_model("findings").version == versions[0]
    result = runner.invoke(app, ["models", "set-current", versions[1], "--workspace", workspace, "--json"])
    assert result.exit_code == 0 and filled.current_model("findings").version == versions[1]
    result = runner.invoke(app, ["models", "set-current", "nope", "--workspace", workspace])
    assert result.exit_code == 2 and "no model version 'nope'" in result.output
    result = runner.invoke(app, ["train", "--config", str(CONFIGS / "probe_cpu.yaml"), "--set", "probe.Cx=1",
                                 "--workspace", workspace])
    assert result.exit_code == 2 and "unknown key 'probe.Cx'" in result.output
    assert len(list_models(filled, task="findings")) == 2


def test_bench_grid_and_latency(filled, tmp_path):
    from radloop.ssl.finetune_bench import predict_latency, run_bench
    from radloop.ssl.finetune_jobs import run_training

    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text(f"heads: {{probe: {CONFIGS / 'probe_cpu.yaml'}}}\nfractions: [0.25, 1.0]\n"
                          "inits: [pretrained, random]\noverrides: [trainer.num_threads=1]\n")
    result = run_bench(filled, bench_file, ["encoder.image_size=64", "encoder.timm_name=test_resnet"], progress=False)
    assert [(r["init"], r["fraction"]) for r in result["rows"]] == [
        ("pretrained", 0.25), ("pretrained", 1.0), ("random", 0.25), ("random", 1.0)]
    assert result["rows"][0]["train_images"] < result["rows"][1]["train_images"]
    assert "probe.random.1.auroc.fracture" in result["figures"]
    assert list_models(filled, task="findings") == []  # the bench registers nothing
    run_training(filled, _probe_config(), progress=False)
    latency = predict_latency(filled, n_images=5, threads=1)
    assert latency["n"] == 5 and latency["p95_ms"] >= latency["p50_ms"] > 0


def test_cli_bench_finds_its_default_config_outside_the_repo_and_documents_set(filled, tmp_path, monkeypatch):
    import radloop.ssl.finetune_bench as finetune_bench
    from radloop.app.cli import build_app
    from radloop.core.config import shipped_configs

    seen = {}

    def fake_run_bench(catalog, config_path, overrides=None, *, progress=True):
        seen.update(config=Path(config_path), overrides=list(overrides or []))
        return {"config": str(config_path), "rows": [], "figures": {}}

    monkeypatch.setattr(finetune_bench, "run_bench", fake_run_bench)
    monkeypatch.chdir(tmp_path)  # outside the repository: no ./configs here
    app, runner = build_app(), CliRunner()
    result = runner.invoke(app, ["bench", "finetune", "--set", "bench.fractions=[1.0]",
                                 "--workspace", str(filled.workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    assert seen["config"] == shipped_configs() / "finetune" / "bench_cpu.yaml"
    assert seen["overrides"] == ["bench.fractions=[1.0]"]
    missing = runner.invoke(app, ["bench", "finetune", "--config", "configs/finetune/nope.yaml",
                                  "--workspace", str(filled.workspace.root)])
    assert missing.exit_code == 2 and "bench config file not found" in missing.output
    help_text = " ".join(runner.invoke(app, ["bench", "finetune", "--help"], terminal_width=200).output.split())
    assert "this command's config file" not in help_text and "bench.fractions" in help_text


def test_bench_grid_keeps_measured_rows_when_a_job_crashes(filled, tmp_path, monkeypatch):
    import radloop.ssl.finetune_jobs as jobs
    from radloop.ssl.finetune_bench import run_bench

    real = jobs.run_training
    calls = []

    def flaky(catalog, job, **kwargs):
        calls.append(job.encoder.init)
        if job.encoder.init == "random":  # e.g. a package missing on that machine
            raise ModuleNotFoundError("`MAP` metric requires that `pycocotools` is installed")
        return real(catalog, job, **kwargs)

    monkeypatch.setattr(jobs, "run_training", flaky)
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text(f"heads: {{probe: {CONFIGS / 'probe_cpu.yaml'}}}\nfractions: [1.0]\n"
                          "inits: [pretrained, random]\noverrides: [trainer.num_threads=1]\n")
    result = run_bench(filled, bench_file, ["encoder.image_size=64", "encoder.timm_name=test_resnet"], progress=False)
    assert calls == ["pretrained", "random"]
    assert "auroc.fracture" in result["rows"][0] and "error" not in result["rows"][0]
    assert result["rows"][1]["error"].startswith("ModuleNotFoundError: `MAP` metric requires")


def test_report_weak_labels_fill_unlabelled_images_with_a_lower_weight(catalog):
    from radloop.core.schema import Report, WeakLabel

    fill_fracture_catalog(catalog, 4, seed=4, render_size=64, splits=("train",))
    with catalog.session() as session:
        images = session.query(Image).order_by(Image.id).all()
        for image in images[:2]:  # no longer exhaustively boxed: the expert says nothing about fracture
            image.meta, image.body_region = {}, None
            session.query(Annotation).filter(Annotation.image_id == image.id).delete()
        for number, (image, status) in enumerate(zip(images[:2], ("positive", "negative"))):
            session.add(Report(id=f"R-{number}", study_id=image.study_id, content_hash=str(number), text="..."))
            session.flush()
            session.add(WeakLabel(report_id=f"R-{number}", finding="fracture", status=status, rules_version="t"))
        unlabelled = [image.id for image in images[:2]]
    expert_only = build_labeled_set(catalog, ["fracture"], splits=["train"])
    assert not set(unlabelled) & set(expert_only.image_ids) and expert_only.weak_rows == 0
    weak = build_labeled_set(catalog, ["fracture"], splits=["train"], weak_labels=True, weak_weight=0.25)
    rows = {image_id: row for row, image_id in enumerate(weak.image_ids)}
    assert weak.weak_rows == 2
    assert [int(weak.targets[rows[i], 0]) for i in unlabelled] == [1, 0]
    assert [float(weak.weights[rows[i]]) for i in unlabelled] == [0.25, 0.25]
    assert set(weak.weights[[r for i, r in rows.items() if i not in unlabelled]]) == {1.0}


def test_evaluate_on_an_external_coco_file(filled, tmp_path):
    from finetune_workspace import fracture_coco
    from radloop.ssl.finetune_evaluate import evaluate_model
    from radloop.ssl.finetune_jobs import run_training

    coco, image_dir = fracture_coco()
    boxed = {a["image_id"] for a in coco["annotations"]}
    chosen = [e for e in coco["images"] if e["id"] in boxed][:4] + [e for e in coco["images"] if e["id"] not in boxed][:4]
    ids = {e["id"] for e in chosen}
    subset = {"categories": coco["categories"], "images": chosen,
              "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    (tmp_path / "held_out.json").write_text(json.dumps(subset))
    version = run_training(filled, _probe_config(), progress=False).version
    metrics = evaluate_model(filled, version, coco=tmp_path / "held_out.json", images=image_dir)
    assert metrics["n_images"] == 8 and metrics["n.fracture"] == 8 and metrics["prevalence.fracture"] == 0.5
    assert 0.0 <= metrics["auroc.fracture"] <= 1.0 and metrics["n.region"] == 4
    with pytest.raises(DataError, match="none of the 8 images"):
        evaluate_model(filled, version, coco=tmp_path / "held_out.json", images=tmp_path)
    # without --images: the COCO file's own folder, where `radloop ingest` looks too (a Roboflow COCO export)
    with pytest.raises(DataError, match=r"none of the 8 .*\(the COCO file's folder\): pass --images FOLDER"):
        evaluate_model(filled, version, coco=tmp_path / "held_out.json")
    export = tmp_path / "export"
    export.mkdir()
    for entry in chosen:
        shutil.copy(image_dir / entry["file_name"], export / entry["file_name"])
    (export / "_annotations.coco.json").write_text(json.dumps(subset))
    beside = evaluate_model(filled, version, coco=export / "_annotations.coco.json")
    assert beside.pop("source") == "coco:_annotations.coco.json"
    assert {k: v for k, v in metrics.items() if k != "source"} == beside
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["evaluate", "--model", version, "--coco", str(tmp_path / "held_out.json"),
                                              "--workspace", str(filled.workspace.root)])
    assert result.exit_code == 2 and "pass --images FOLDER" in " ".join(result.output.split())


def test_shipped_train_configs_validate():
    from radloop.core.config import load_config

    names = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.name.startswith("bench_"):  # `radloop bench finetune` files: a list of jobs, not one job
            continue
        config = load_config(path, TrainConfig)
        names.append(config.name)
    assert len(names) >= 6 and "finetune_hour" in names


def test_the_model_version_follows_the_labels_not_only_the_images():
    """A corrected label (fracture 1 -> 0) must train a new model: the backend skips retraining when the version
    exists, so a version of the image ids alone kept serving the model trained on the wrong label."""
    from radloop.core.records import Box
    from radloop.ssl.finetune_data import LabeledSet
    from radloop.ssl.finetune_jobs import _version

    config = TrainConfig.model_validate({"name": "probe", "head": "probe"})

    def labelled(fracture: int, box: bool = False) -> LabeledSet:
        return LabeledSet(findings=["fracture"], image_ids=["I-1", "I-2"], study_ids=["S-1", "S-2"],
                          paths=[Path("a"), Path("b")], sizes=[(10, 10), (10, 10)],
                          targets=np.array([[fracture], [0]]), weights=np.ones(2, dtype=np.float32),
                          regions=["wrist", "wrist"],
                          boxes=[[Box("fracture", 1, 1, 2, 2)] if box else [], []])

    same = _version(config, "enc", labelled(1))
    assert _version(config, "enc", labelled(1)) == same  # the same labelled set: the same model
    assert _version(config, "enc", labelled(0)) != same  # a corrected label: a new model
    assert _version(config, "enc", labelled(1, box=True)) != same


@pytest.mark.parametrize(("name", "head", "prefix"), [
    ("probe", "probe", "probe-"), ("probe-test", "probe", "probe-test-"), ("detect", "detect", "det-"),
    ("detect-gpu", "detect", "det-gpu-"), ("finetune_hour", "finetune", "clf-hour-"), ("wrist", "finetune", "clf-wrist-"),
])
def test_model_version_names_the_head_once(name, head, prefix):
    from types import SimpleNamespace

    from radloop.ssl.finetune_jobs import _version

    config = TrainConfig.model_validate({"name": name, "head": head, "trainer": {"num_threads": 1}})
    labeled = SimpleNamespace(image_ids=["a"], targets=[[1]], weights=[1.0], regions=[None], boxes=[[]])
    version = _version(config, "enc-1", labeled)
    assert version.startswith(prefix) and len(version) == len(prefix) + 8, version


def test_embeddings_for_leaves_out_what_another_run_stored_meanwhile(filled, tmp_path, monkeypatch):
    """Training embeds the labelled images the store lacks; a `radloop embed` that stores some of them meanwhile
    must not make its write fail (it was a UNIQUE-constraint error)."""
    from radloop.core.embeddings import load_embeddings, missing_image_ids, write_shard
    from radloop.ssl import encoder_adapter
    from radloop.ssl.encoders import load_encoder
    from radloop.ssl.finetune_jobs import embeddings_for

    version = filled.current_model("encoder").version
    bundle = load_encoder(tmp_path / "encoder")
    labeled = build_labeled_set(filled, ["fracture"], splits=["train"])
    embed_images = encoder_adapter.embed_images

    def racing(bundle, paths, **kwargs):
        vectors = embed_images(bundle, paths, **kwargs)
        write_shard(filled, version, labeled.image_ids[:2], vectors[:2], normalized=True)  # the other run
        return vectors

    monkeypatch.setattr(encoder_adapter, "embed_images", racing)
    matrix = embeddings_for(filled, bundle, version, labeled, progress=False)
    assert matrix.shape[0] == len(labeled.image_ids)
    stored = load_embeddings(filled, version, labeled.image_ids)
    assert sorted(stored.image_ids) == sorted(labeled.image_ids)
    assert not set(labeled.image_ids) & set(missing_image_ids(filled, version))
