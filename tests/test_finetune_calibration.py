"""Platt scaling and epoch selection of fine-tuned classifiers on the validation split (never on training or
evaluation images)."""

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


def test_best_epoch_keeps_the_weights_of_the_best_scoring_epoch():
    from types import SimpleNamespace

    from radloop.ssl.finetune import BestEpoch

    class Brightness(torch.nn.Module):  # finding 1 scored by weight x mean brightness; finding 2 unknown
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images):
            brightness = images.mean(dim=(1, 2, 3))
            return torch.stack([self.weight * brightness, torch.zeros_like(brightness)], 1), None

    net = Brightness()
    pixels = (torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    brightness = pixels.float().mean(dim=(1, 2, 3)).numpy()
    targets = np.stack([(brightness > np.median(brightness)).astype(int), np.full(40, -1)], 1)
    callback = BestEpoch(pixels, targets, mean=0.5, std=0.25, batch_size=16)
    module = SimpleNamespace(net=net, device=torch.device("cpu"))
    for weight in (0.0, 1.0, -1.0):  # epochs: constant scores, ranked by brightness, ranked backwards
        with torch.no_grad():
            net.weight.fill_(weight)
        callback.on_train_epoch_end(None, module)
    assert callback.scores == [0.5, 1.0, 0.0] and callback.best_epoch == 2
    assert net.training  # scoring put the network back in training mode
    callback.restore(net)
    assert net.weight.item() == 1.0  # epoch 2's weights are back
    assert callback.summary() == {"metric": "mean AUROC of the findings", "images": 40, "scores": [0.5, 1.0, 0.0],
                                  "best_epoch": 2}


def test_finetune_job_selects_its_epoch_on_val(three_splits):
    from radloop.ssl.finetune_jobs import run_training

    config = _config()
    config.finetune.max_epochs, config.finetune.max_steps = 3, -1
    config.finetune.select_epoch, config.finetune.calibrate = True, False
    result = run_training(three_splits, config, progress=False)
    val = build_labeled_set(three_splits, ["fracture"], splits=["val"])
    selection = result.train_summary["epoch_selection"]
    assert selection["split"] == "val" and selection["images"] == len(val) and len(selection["scores"]) == 3
    scores = selection["scores"]
    assert selection["best_epoch"] == 1 + max(range(3), key=lambda i: (scores[i], -i))
    assert "calibration" not in result.train_summary
    assert set(val.annotation_ids) <= set(get_model(three_splits, result.version).annotation_ids)
    # the epoch scores use the predictor's own preprocessing: the returned model scores the same on val
    from sklearn.metrics import roc_auc_score

    from radloop.ssl.finetune_images import model_input

    predictor = result.predictor
    logits, _ = predictor.logits(model_input(val.paths, predictor.meta["image_size"], predictor.meta["mean"],
                                             predictor.meta["std"]))
    known = val.targets[:, 0] >= 0
    assert roc_auc_score(val.targets[known, 0], logits[known, 0]) == pytest.approx(
        scores[selection["best_epoch"] - 1], abs=0.02)

    config.data.calibration_split = "train"
    refused = run_training(three_splits, config, progress=False, register=False)
    assert "epoch_selection" not in refused.train_summary
    assert any(m.startswith("epoch not selected: calibration_split 'train' is a training split")
               for m in refused.messages), refused.messages


def test_finetune_job_is_reproducible_under_its_data_seed(three_splits):
    """The same job twice (augmentation, shuffling, head initialisation) gives the same weights; another
    ``data.seed`` gives other weights."""
    from radloop.ssl.finetune_jobs import run_training

    def weights(seed: int) -> dict:
        config = TrainConfig.model_validate({
            "name": "ft-seed", "head": "finetune", "data": {"seed": seed}, "trainer": {"num_threads": 1},
            "finetune": {"max_steps": 3, "max_epochs": 1, "batch_size": 8, "augment": True, "warmup_steps": 0}})
        result = run_training(three_splits, config, progress=False, register=False)
        return {name: value.clone() for name, value in result.predictor.net.state_dict().items()}

    first, again, other = weights(0), weights(0), weights(1)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
