"""Walkthrough 21b: a fine-tuning or detection job stopped with Ctrl-C resumes from its checkpoint when the same
command is rerun; the detector honours ``trainer.deterministic``.  Tiny encoders, one torch thread."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
from typer.testing import CliRunner

from finetune_workspace import fill_fracture_catalog, register_random_encoder
from radloop.core.records import Box
from radloop.ssl.finetune_config import DetectConfig, TrainConfig, TrainerConfig


@pytest.fixture
def filled(catalog, tmp_path):
    """24 real radiographs (train / test / val by study) and a registered tiny current encoder."""
    fill_fracture_catalog(catalog, 24, seed=2, render_size=96, splits=("train", "test", "val"))
    register_random_encoder(catalog, tmp_path / "encoder")
    return catalog


class StopAt(L.Callback):
    """Ctrl-C after training step ``step`` (before that step's checkpoint: Lightning runs checkpoints last)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *_args) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def _train(catalog, config, *overrides):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), ["train", "--config", str(config), *[f"--set={o}" for o in overrides],
                                            "--workspace", str(catalog.workspace.root), "--json"],
                              env={"RADLOOP_DATABASE_URL": catalog.workspace.database_url})


@pytest.mark.parametrize(("head", "module"), [("finetune", "radloop.ssl.finetune"),
                                              ("detect", "radloop.ssl.detection")])
def test_an_interrupted_job_resumes_from_its_checkpoint(filled, tmp_path, monkeypatch, head, module,
                                                        one_torch_thread, sigint_restored):
    """Ctrl-C used to throw the training away: the same command started from step 0 again."""
    import importlib

    from radloop.core.registry import list_models

    config = tmp_path / "job.yaml"
    config.write_text(f"name: resume\nhead: {head}\ndata: {{body_region: false, max_eval_images: 2}}\n"
                      "finetune: {max_epochs: 2, batch_size: 4, augment: false, warmup_steps: 0, calibrate: false,"
                      " select_epoch: true}\n"
                      "detect: {max_epochs: 2, batch_size: 2, min_size: 96, max_size: 128, fpn_channels: 16}\n"
                      "trainer: {num_threads: 1, checkpoint_every_n_steps: 1}\n")
    trained = importlib.import_module(module)
    plain = trained.trainer_callbacks
    monkeypatch.setattr(trained, "trainer_callbacks", lambda progress: [*plain(progress), StopAt(3)])
    stopped = _train(filled, config)
    assert stopped.exit_code == 130, stopped.output
    message = " ".join(stopped.output.split())
    runs = filled.workspace.models_dir / "runs"
    [run] = list(runs.iterdir())
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert "interrupted at step 3: no model was registered" in message
    assert f"resumefromitscheckpoint{checkpoint}(step2)" in "".join(stopped.output.split())  # wrapped anywhere
    assert [path.name for path in checkpoint.parent.iterdir()] == ["last.ckpt"]  # one file, overwritten
    assert [m.kind for m in list_models(filled)] == ["encoder"]

    monkeypatch.setattr(trained, "trainer_callbacks", plain)
    resumed = _train(filled, config)
    assert resumed.exit_code == 0, resumed.output
    result = json.loads(resumed.stdout)
    assert result["version"] == run.name and result["registered"]
    assert f"resumed from checkpoint {checkpoint} (step 2)" in result["messages"]
    if head == "detect":
        assert result["train"]["detector"]["steps"] == 8  # 2 epochs of 4 steps, not 2 more epochs
    else:  # the epoch selection's state is in the checkpoint: both epochs scored, not only the one after it
        assert len(result["train"]["epoch_selection"]["scores"]) == 2
    assert not run.exists()  # done: nothing left to resume


def test_an_unusable_checkpoint_is_removed_and_training_starts_over(tmp_path, one_torch_thread):
    from radloop.ssl.encoders import random_encoder
    from radloop.ssl.finetune import train_classifier
    from radloop.ssl.finetune_config import FinetuneConfig

    folder = tmp_path / "runs" / "clf-x" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"cut short")
    rng = np.random.default_rng(0)
    images = [rng.random((40, 36)).astype(np.float32) for _ in range(4)]
    predictor = train_classifier(random_encoder("test_resnet", 32), images, np.array([[0], [1], [0], [1]]),
                                 np.ones(4, np.float32), [None] * 4, ["fracture"],
                                 FinetuneConfig(max_steps=1, batch_size=4, augment=False),
                                 TrainerConfig(num_threads=1), progress=False, checkpoints=folder)
    assert predictor.checkpoint_messages == [
        f"checkpoint {folder / 'last.ckpt'} unreadable: removed, training starts from the beginning"]
    assert (folder / "last.ckpt").is_file()  # this run's own, at its end


def test_the_checkpoint_interval_is_not_part_of_the_model_version(filled):
    from radloop.ssl.finetune_data import build_labeled_set
    from radloop.ssl.finetune_jobs import _version

    labeled = build_labeled_set(filled, ["fracture"], splits=["train"])
    job = {"name": "v", "head": "finetune"}
    first = _version(TrainConfig.model_validate(job), "enc", labeled)
    other = _version(TrainConfig.model_validate({**job, "trainer": {"checkpoint_every_n_steps": 7}}), "enc", labeled)
    assert first == other


# ------------------------------------------------------------------------------------------ determinism


def test_the_detector_trainer_honours_deterministic(monkeypatch, tmp_path, one_torch_thread):
    """The detector's Lightning Trainer was built without ``deterministic``: the setting was ignored."""
    from PIL import Image as PILImage

    from radloop.ssl import detection
    from radloop.ssl.encoders import random_encoder

    seen = []
    original = detection.L.Trainer

    def recording(*args, **kwargs):
        seen.append(kwargs.get("deterministic"))
        return original(*args, **kwargs)

    monkeypatch.setattr(detection.L, "Trainer", recording)
    rng = np.random.default_rng(0)
    images = [tmp_path / f"{index}.png" for index in range(2)]
    for image in images:
        PILImage.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(image)
    boxes = [[Box("fracture", 10, 10, 20, 20)], [Box("fracture", 30, 20, 16, 24)]]
    config = DetectConfig(min_size=64, max_size=64, fpn_channels=16, batch_size=2, max_steps=1)
    detection.train_detector(random_encoder("test_resnet", 64), images, [(64, 64)] * 2, boxes, [False, False],
                             config, TrainerConfig(num_threads=1, deterministic=True), progress=False)
    assert seen == [True]
    # on a GPU torchvision's roi_align backward has no deterministic kernel: warn there rather than stop training
    assert detection.detector_determinism(True, "gpu") == "warn"
    assert detection.detector_determinism(False, "gpu") is False
