"""Platt scaling of fine-tuned classifiers on the validation split (never on training or evaluation images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune_workspace import fill_fracture_catalog, register_random_encoder
from radloop.core.registry import get_model
from radloop.ssl.finetune import fit_platt
from radloop.ssl.finetune_config import TrainConfig
from radloop.ssl.finetune_data import build_labeled_set


def test_fit_platt_recovers_a_known_scaling():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, size=(20000, 1))
    labels = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * logits[:, 0] - 1.0)))).astype(int)
    calibration, messages = fit_platt(logits, labels[:, None], ["fracture"])
    assert not messages
    assert calibration["slope"][0] == pytest.approx(0.5, abs=0.05)
    assert calibration["intercept"][0] == pytest.approx(-1.0, abs=0.08)


def test_fit_platt_leaves_unfittable_findings_unscaled():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 3))
    targets = np.stack([np.zeros(200, int),                          # one class only
                        (logits[:, 1] < 0).astype(int),              # scores rank backwards
                        np.where(np.arange(200) % 2, -1, 1)], 1)     # unknown or positive: one class
    calibration, messages = fit_platt(logits, targets, ["fracture", "foreign_body", "medical_device"])
    assert calibration == {"slope": [1.0, 1.0, 1.0], "intercept": [0.0, 0.0, 0.0]}
    assert len(messages) == 3 and "one class only" in messages[0] and "<= 0" in messages[1]


@pytest.fixture
def three_splits(catalog, tmp_path):
    """30 real radiographs over train / val / test studies and a registered current encoder."""
    fill_fracture_catalog(catalog, 30, seed=3, render_size=96, splits=("train", "val", "test"))
    register_random_encoder(catalog, tmp_path / "encoder")
    return catalog


def _config(**data) -> TrainConfig:
    return TrainConfig.model_validate({
        "name": "ft-cal", "head": "finetune", "data": data, "trainer": {"num_threads": 1},
        "finetune": {"max_steps": 3, "max_epochs": 1, "batch_size": 8, "augment": False, "warmup_steps": 0}})


def test_finetune_job_is_calibrated_on_val_only(three_splits):
    from radloop.ssl.finetune_images import model_input
    from radloop.ssl.finetune_jobs import run_training

    result = run_training(three_splits, _config(), progress=False)
    val = build_labeled_set(three_splits, ["fracture"], splits=["val"])
    test = build_labeled_set(three_splits, ["fracture"], splits=["test"])
    calibration = result.train_summary["calibration"]
    assert calibration["split"] == "val" and calibration["images"] == len(val) > 0
    assert calibration["slope"][0] > 0
    predictor = result.predictor
    batch = model_input(test.paths[:4], predictor.meta["image_size"], predictor.meta["mean"], predictor.meta["std"])
    raw, _ = predictor.logits(batch)
    expected = torch.sigmoid(torch.from_numpy(raw * calibration["slope"][0] + calibration["intercept"][0])).numpy()
    np.testing.assert_allclose(predictor.predict_arrays(batch)[0], expected, atol=1e-6)
    record = get_model(three_splits, result.version)
    assert set(val.annotation_ids) <= set(record.annotation_ids)
    assert not set(test.annotation_ids) & set(record.annotation_ids)
    from radloop.ssl.predict import load_predictor

    reloaded = load_predictor(three_splits, "findings")
    assert reloaded.model_version == result.version
    np.testing.assert_allclose(reloaded.predict_arrays(batch)[0], expected, atol=1e-5)


def test_calibration_on_the_eval_split_is_refused_with_a_message(three_splits):
    from radloop.ssl.finetune_jobs import run_training

    result = run_training(three_splits, _config(calibration_split="test"), progress=False, register=False)
    assert "calibration" not in result.train_summary and "calibration" not in result.predictor.meta
    assert any("not calibrated" in m and "eval split" in m for m in result.messages)
