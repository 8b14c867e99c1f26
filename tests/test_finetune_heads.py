"""Fine-tuning overfits a tiny batch; detection trains a few steps on real fracture radiographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune_workspace import fill_fracture_catalog
from radloop.core.records import Box
from radloop.ssl.encoders import random_encoder
from radloop.ssl.finetune_config import DetectConfig, FinetuneConfig, TrainerConfig
from radloop.ssl.finetune_data import build_labeled_set

QUIET = TrainerConfig(num_threads=1, log_every_n_steps=1)
#: timm's tiny ResNet (0.4 M parameters, same layer groups as resnet18): the heads' logic, not the capacity.
TINY = "test_resnet"


@pytest.fixture
def fracture_images(catalog):
    fill_fracture_catalog(catalog, 12, seed=1, render_size=192, splits=("train",))
    return build_labeled_set(catalog, ["fracture"], splits=["train"])


def test_layer_decay_and_partial_freezing():
    from radloop.ssl.finetune import FindingsClassifier, layer_decay_groups

    bundle = random_encoder(TINY, 64)
    net = FindingsClassifier(bundle.model.backbone, n_findings=2, n_regions=3)
    groups = layer_decay_groups(net, FinetuneConfig(mode="partial", trainable_fraction=0.5, layer_decay=0.5))
    scales = sorted({g["lr_scale"] for g in groups})
    assert scales[-1] == 1.0 and scales[-2] == 0.5  # heads at full rate, top backbone group decayed once
    parameters = list(net.backbone.parameters())
    assert not parameters[0].requires_grad and parameters[-1].requires_grad
    layer_decay_groups(net, FinetuneConfig(mode="linear"))
    assert not any(p.requires_grad for p in net.backbone.parameters())


def test_tiny_batch_is_overfit(fracture_images):
    from radloop.ssl.finetune import train_classifier

    torch.manual_seed(0)
    data = fracture_images
    assert set(data.targets[:, 0]) == {0, 1}
    bundle = random_encoder(TINY, 64)
    config = FinetuneConfig(mode="full", lr=3e-3, batch_size=len(data), max_epochs=60, warmup_steps=0,
                            augment=False, weight_decay=0.0)
    predictor = train_classifier(bundle, data.paths, data.targets, data.weights, data.regions, ["fracture"], config,
                                 QUIET, progress=False)
    predictions = predictor.predict(data.paths)
    probabilities = np.array([p.choices["fracture"] for p in predictions])
    labels = data.targets[:, 0]
    loss = -np.mean(labels * np.log(probabilities + 1e-7) + (1 - labels) * np.log(1 - probabilities + 1e-7))
    assert loss < 0.05, f"BCE on the training batch after 60 steps: {loss:.4f}"
    known = [(r, p.body_region) for r, p in zip(data.regions, predictions) if r]
    assert all(r == p for r, p in known)


def test_detection_trains_a_few_steps_on_real_fractures(fracture_images, tmp_path):
    from radloop.ssl.detection import DetectorPredictor, train_detector

    torch.manual_seed(0)
    data = fracture_images
    bundle = random_encoder(TINY, 64)
    negatives = [bool(row[0] == 0) for row in data.targets]
    config = DetectConfig(min_size=192, max_size=192, batch_size=2, max_steps=4, fpn_channels=32,
                          include_negatives=True)
    boxes = [list(b) for b in data.boxes]
    boxes[0] = boxes[0] + [Box("fracture", 5, 5, 0, 10), Box("fracture", 9000, 9000, 10, 10)]
    predictor, messages = train_detector(bundle, data.paths, data.sizes, boxes, negatives, config, QUIET,
                                         progress=False)
    assert predictor.train_summary["steps"] == 4
    assert np.isfinite(predictor.train_summary["final_loss"])
    assert any("zero or negative area" in m for m in messages) and any("outside the" in m for m in messages)
    [prediction] = predictor.predict([data.paths[0]], original_sizes=[data.sizes[0]])
    width, height = data.sizes[0]
    assert all(0 <= b.x and b.x + b.w <= width + 1e-3 and b.y + b.h <= height + 1e-3 for b in prediction.boxes)
    predictor.save(tmp_path / "det")
    again = DetectorPredictor.load(tmp_path / "det").predict([data.paths[0]], original_sizes=[data.sizes[0]])[0]
    assert [(b.x, b.score) for b in again.boxes] == [(b.x, b.score) for b in prediction.boxes]


def test_detection_without_usable_boxes_says_so(fracture_images):
    from radloop.ssl.detection import train_detector

    data = fracture_images
    degenerate = [[Box("fracture", 1, 1, 0, 0)] for _ in data.paths]
    with pytest.raises(ValueError, match=r"no usable fracture box among 12 training images \(12 degenerate"):
        train_detector(random_encoder(TINY, 64), data.paths, data.sizes, degenerate, [False] * 12,
                       DetectConfig(max_steps=1), QUIET, progress=False)
