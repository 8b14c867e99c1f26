"""Walkthrough 20d: fine-tuning with few labels, as a researcher runs it (reload, bad configs, missing images,
the bench grid, versions).  Tiny encoders and one torch thread: seconds on a CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from finetune_workspace import filled_catalog, train_job
from radloop.core.config import ConfigError
from radloop.core.records import Box
from radloop.core.schema import Annotation
from radloop.ssl.encoders import random_encoder
from radloop.ssl.finetune_config import DetectConfig, FinetuneConfig, TrainConfig, TrainerConfig
from radloop.ssl.finetune_data import DataError, build_labeled_set

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "finetune"
QUIET = TrainerConfig(num_threads=1, log_every_n_steps=1)


def _arrays(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((40, 36)).astype(np.float32) for _ in range(count)]


@pytest.fixture
def filled(catalog, tmp_path):
    """24 real radiographs (train / test / val by study) and a registered tiny current encoder."""
    return filled_catalog(catalog, tmp_path / "encoder", seed=2, render_size=96, splits=("train", "test", "val"))


def _finetune_job(head: str = "finetune", **sections) -> TrainConfig:
    return train_job("walk", head, batch_size=8, **sections)


# ------------------------------------------------------------------------------------- saved models reload


def test_a_classifier_fine_tuned_on_a_vit_encoder_reloads_with_its_patch_size(tmp_path, one_torch_thread):
    """An MAE/ViT encoder at 32 px in 8-px patches: the saved classifier used to be rebuilt as timm's default
    224-px / 16-px ViT, so loading it failed on the position embeddings (no evaluate, no backend, no rounds)."""
    from radloop.ssl.finetune import ClassifierPredictor, train_classifier

    images = _arrays(4)
    bundle = random_encoder("vit_tiny_patch16_224", 32, patch_size=8, pooling="avg_tokens")
    predictor = train_classifier(bundle, images, np.array([[0], [1], [0], [1]]), np.ones(4, np.float32),
                                 [None] * 4, ["fracture"], FinetuneConfig(max_steps=1, batch_size=4, augment=False),
                                 QUIET, progress=False)
    predictor.save(tmp_path / "clf")
    expected = [p.choices["fracture"] for p in predictor.predict(images)]
    again = ClassifierPredictor.load(tmp_path / "clf")
    assert [p.choices["fracture"] for p in again.predict(images)] == pytest.approx(expected, abs=1e-6)
    # a classifier saved before the patch size was kept: the patch projection's kernel gives it
    meta_file = tmp_path / "clf" / "classifier.json"
    meta = json.loads(meta_file.read_text())
    del meta["patch_size"]
    meta_file.write_text(json.dumps(meta))
    older = ClassifierPredictor.load(tmp_path / "clf")
    assert [p.choices["fracture"] for p in older.predict(images)] == pytest.approx(expected, abs=1e-6)


def test_a_detector_reloads_with_its_encoders_model_kwargs(tmp_path, one_torch_thread):
    """An encoder built with timm keyword arguments that change its shapes (here a narrower stem): the detector
    trained on it used to be rebuilt without them, and loading it failed."""
    from radloop.ssl.detection import DetectorPredictor, train_detector

    from PIL import Image as PILImage

    images = []
    for index, pixels in enumerate(_arrays(2, seed=1)):
        images.append(tmp_path / f"image{index}.png")
        PILImage.fromarray((pixels * 255).astype(np.uint8)).save(images[-1])
    bundle = random_encoder("test_resnet", 32, stem_width=8)
    boxes = [[Box("fracture", 4, 4, 12, 10)], [Box("fracture", 10, 12, 8, 8)]]
    config = DetectConfig(min_size=64, max_size=64, batch_size=2, max_steps=1, fpn_channels=16)
    predictor, _messages = train_detector(bundle, images, [(36, 40)] * 2, boxes, [False, False], config, QUIET,
                                          progress=False)
    predictor.save(tmp_path / "det")
    expected = predictor.predict(images, original_sizes=[(36, 40)] * 2)
    again = DetectorPredictor.load(tmp_path / "det").predict(images, original_sizes=[(36, 40)] * 2)
    assert [[(b.x, b.score) for b in p.boxes] for p in again] == [[(b.x, b.score) for b in p.boxes] for p in expected]


# ------------------------------------------------------------------------------------- configs refused at load


@pytest.mark.parametrize(("section", "values", "message"), [
    ("finetune", {"max_steps": 0}, "max_steps 0: -1 \\(max_epochs decides\\) or at least 1"),
    ("finetune", {"max_steps": -5}, "max_steps -5"),
    ("detect", {"max_steps": 0}, "max_steps 0"),
    ("trainer", {"precision": "foo"}, "precision 'foo' is not one of 32-true"),
    ("trainer", {"accelerator": "tpu"}, "trainer.accelerator"),
])
def test_impossible_trainer_values_are_refused_when_the_config_is_read(section, values, message):
    """max_steps 0 registered an untrained model, -5 and an unknown accelerator were Lightning tracebacks, and an
    unknown precision was refused only after every image had been loaded."""
    with pytest.raises(ValueError, match=message):
        TrainConfig.model_validate({"name": "x", "head": "finetune", section: values})


def test_plain_trainer_values_still_validate():
    config = TrainConfig.model_validate({"name": "x", "head": "finetune", "finetune": {"max_steps": 3},
                                         "trainer": {"precision": 16, "accelerator": "auto"}})
    assert config.finetune.max_steps == 3 and config.trainer.precision == "16" and config.detect.max_steps == -1


def test_a_gpu_config_on_a_machine_without_one_is_refused_before_any_image_is_read(catalog, monkeypatch):
    import torch

    from radloop.ssl import finetune_jobs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(finetune_jobs, "build_labeled_set", lambda *a, **k: pytest.fail("images were read"))
    job = _finetune_job(trainer={"accelerator": "gpu", "precision": "bf16-mixed", "num_threads": None})
    with pytest.raises(DataError, match=r"trainer.accelerator=gpu but no CUDA GPU is visible .*accelerator=cpu"):
        finetune_jobs.run_training(catalog, job, register=False, progress=False)


# ------------------------------------------------------------------------------------- images missing on disk


def _remove_one_render(catalog, split: str, boxed: bool | None = None) -> Path:
    labeled = build_labeled_set(catalog, ["fracture"], splits=[split], require_labels=False)
    row = next(i for i, boxes in enumerate(labeled.boxes) if boxed is None or bool(boxes) == boxed)
    labeled.paths[row].unlink()
    return labeled.paths[row]


@pytest.mark.parametrize("head", ["finetune", "detect"])
def test_missing_renders_are_left_out_with_a_message_not_a_traceback_after_training(filled, head,
                                                                                   one_torch_thread):
    from radloop.ssl.finetune_evaluate import evaluate_model
    from radloop.ssl.finetune_jobs import run_training

    evaluated = len(build_labeled_set(filled, ["fracture"], splits=["test"], require_labels=False))
    train_gone = _remove_one_render(filled, "train", boxed=True)
    test_gone = _remove_one_render(filled, "test")
    job = _finetune_job(head, detect={"min_size": 64, "max_size": 64, "max_steps": 1, "fpn_channels": 16,
                                      "batch_size": 2})
    result = run_training(filled, job, progress=False)
    assert any(f"training images left out: render file missing (e.g. {train_gone})" in m for m in result.messages)
    assert any(f"1 of {evaluated} test-split (evaluation) images left out" in m for m in result.messages)
    assert result.metrics["n_images"] == evaluated - 1
    again = evaluate_model(filled, result.version)
    assert again["n_images"] == evaluated - 1 and str(test_gone) in again["notes"][0]


def test_a_corrupt_render_is_a_one_line_error_of_train(filled):
    from radloop.app.cli import build_app

    labeled = build_labeled_set(filled, ["fracture"], splits=["train"])
    labeled.paths[0].write_bytes(labeled.paths[0].read_bytes()[:100])
    result = CliRunner().invoke(build_app(), [
        "train", "--config", str(CONFIGS / "finetune_cpu.yaml"), "--set", "finetune.max_epochs=1",
        "--set", "trainer.num_threads=1", "--workspace", str(filled.workspace.root), "--no-register"])
    assert result.exit_code == 2, result.output
    assert f"cannot read an image: {labeled.paths[0]}" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------- labels


def test_no_label_at_all_is_said_so_per_finding(filled):
    from radloop.ssl.finetune_jobs import run_training

    with pytest.raises(DataError) as error:
        run_training(filled, _finetune_job(data={"findings": ["dislocation"], "body_region": True}), register=False,
                     progress=False)
    assert "dislocation: 0 present of 0 labelled" in str(error.value) and "{" not in str(error.value)


def test_a_corrected_calibration_label_is_a_new_model_not_already_registered(filled, one_torch_thread):
    """The val images Platt-scale a fine-tuned classifier: with one of their labels corrected the same command
    used to be refused as 'already registered (same config, encoder and labelled images)'."""
    from radloop.ssl.finetune_jobs import VersionExistsError, run_training

    job = _finetune_job(finetune={"max_steps": 1})
    first = run_training(filled, job, progress=False)
    assert "calibration" in first.train_summary
    with pytest.raises(VersionExistsError):
        run_training(filled, job, progress=False)
    calibration = build_labeled_set(filled, ["fracture"], splits=["val"])
    with filled.session() as session:
        session.add(Annotation(image_id=calibration.image_ids[0], source="labelstudio", kind="choice",
                               label="fracture", meta={"value": int(1 - calibration.targets[0, 0])}))
    second = run_training(filled, job, progress=False)
    assert second.version != first.version


# ------------------------------------------------------------------------------------- bench grid


def test_the_bench_reads_every_job_config_before_training_any(filled, tmp_path, monkeypatch):
    """A missing job file of the last head stopped the grid after the other heads had trained for minutes,
    and their rows were lost with the error."""
    from radloop.ssl import finetune_jobs
    from radloop.ssl.finetune_bench import run_bench

    shutil.copy(CONFIGS / "probe_cpu.yaml", tmp_path / "probe_cpu.yaml")
    bench = tmp_path / "bench.yaml"
    bench.write_text("heads: {probe: probe_cpu.yaml, detect: missing.yaml}\nfractions: [1.0]\ninits: [pretrained]\n")
    monkeypatch.setattr(finetune_jobs, "run_training", lambda *a, **k: pytest.fail("a job trained"))
    with pytest.raises(ConfigError, match="missing.yaml"):
        run_bench(filled, bench, progress=False)


@pytest.mark.parametrize("override", ["bench.fractions=[]", "bench.fractions=[0]", "bench.fractions=[0.1,1.5]",
                                      "bench.inits=[]", "bench.heads={}"])
def test_an_empty_or_impossible_bench_grid_is_refused(filled, override, monkeypatch):
    from radloop.ssl import finetune_jobs
    from radloop.ssl.finetune_bench import run_bench

    monkeypatch.setattr(finetune_jobs, "run_training", lambda *a, **k: pytest.fail("a job trained"))
    with pytest.raises(ConfigError):
        run_bench(filled, CONFIGS / "bench_cpu.yaml", [override], progress=False)
