"""Walkthrough 21b: the training set of a head, as a researcher with few labels builds it: an exact
``data.max_train_images``, unknown (-1) labels kept out of training and out of the balanced sampler.
Tiny encoders and one torch thread: seconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune_workspace import fill_fracture_catalog, filled_catalog, register_random_encoder, train_job
from radloop.core.config import ConfigError, load_config
from radloop.ssl.finetune_config import FinetuneConfig, TrainConfig, TrainerConfig
from radloop.ssl.finetune_data import DataError, LabeledSet, cap_images, drop_unlabelled

QUIET = TrainerConfig(num_threads=1, log_every_n_steps=1)


@pytest.fixture
def filled(catalog, tmp_path):
    """24 real radiographs (train / test / val by study) and a registered tiny current encoder."""
    return filled_catalog(catalog, tmp_path / "encoder", seed=2, render_size=96, splits=("train", "test", "val"))


def _job(head: str = "probe", **sections) -> TrainConfig:
    return train_job("walk21b", head, batch_size=4, **sections)


def _labeled(column: list[int]) -> LabeledSet:
    rows = len(column)
    return LabeledSet(findings=["fracture"], image_ids=[f"I{i}" for i in range(rows)],
                      study_ids=[f"S{i}" for i in range(rows)], paths=[f"{i}.png" for i in range(rows)],
                      sizes=[(10, 10)] * rows, targets=np.array(column, dtype=np.int64)[:, None],
                      weights=np.ones(rows, np.float32), regions=[None] * rows, boxes=[[] for _ in range(rows)])


# ------------------------------------------------------------------------------------------ max_train_images


@pytest.mark.parametrize("count", [2, 3, 5, 7])
def test_the_image_cap_is_exact_and_keeps_both_classes(count):
    labeled = _labeled([1] * 3 + [0] * 9 + [-1] * 4)
    capped = cap_images(labeled, count, seed=0)
    assert len(capped) == count
    assert set(capped.targets[:, 0].tolist()) >= {0, 1}
    assert len(set(capped.image_ids)) == count
    assert cap_images(labeled, 40) is labeled


def test_the_image_cap_gives_the_known_classes_their_image_before_the_unknown_ones():
    labeled = _labeled([1] + [0] + [-1] * 60)
    capped = cap_images(labeled, 2, seed=0)
    assert sorted(capped.targets[:, 0].tolist()) == [0, 1]
    assert len(cap_images(labeled, 10, seed=3)) == 10
    with pytest.raises(DataError, match="at least 1"):
        cap_images(labeled, 0)


def test_max_train_images_trains_on_exactly_that_many(catalog, tmp_path, one_torch_thread):
    """The cap used to go through the label-fraction subsampling, which keeps at least one image of each class and
    rounds per class: a cap of 5 of the 12 training images trained on 4."""
    from radloop.ssl.finetune_jobs import run_training

    fill_fracture_catalog(catalog, 24, seed=2, render_size=96, splits=("train", "test"))
    register_random_encoder(catalog, tmp_path / "encoder")
    result = run_training(catalog, _job(data={"max_train_images": 5}), register=False, progress=False)
    assert result.train_summary["images"] == 5
    assert result.train_summary["positives"]["fracture"] >= 1
    assert result.train_summary["labelled"]["fracture"] - result.train_summary["positives"]["fracture"] >= 1


@pytest.mark.parametrize("head", ["probe", "finetune"])
def test_a_cap_of_one_image_is_refused_for_a_classifier_when_the_config_is_read(head, tmp_path):
    """A cap of 1 used to train on 2 images (one per class); a classifier cannot learn from one image."""
    config = tmp_path / "job.yaml"
    config.write_text(f"name: tiny\nhead: {head}\n")
    with pytest.raises(ConfigError) as error:
        load_config(config, TrainConfig, ["data.max_train_images=1"])
    message = " ".join(str(error.value).split())
    assert "data.max_train_images=1" in message and "at least 2 training images" in message
    detector = TrainConfig.model_validate({"name": "d", "head": "detect", "data": {"max_train_images": 1}})
    assert detector.data.max_train_images == 1  # a detector learns from one boxed image


# ------------------------------------------------------------------------------------------ unknown labels


def test_rows_without_any_known_label_are_left_out_of_training(filled, one_torch_thread):
    """Images whose fracture label is unknown (no exhaustive box annotation) and that have a body region used to
    be trained on with body_region off: they add nothing to the loss but took places in the batches and in the
    cap.  They are left out with a message; with body_region on they stay (the region head learns from them)."""
    from sqlalchemy import select

    from radloop.core.schema import Image, Study
    from radloop.ssl.finetune_data import build_labeled_set
    from radloop.ssl.finetune_jobs import run_training

    with filled.session() as session:
        rows = session.execute(select(Image).join(Study, Study.id == Image.study_id)
                               .where(Study.split == "train")).scalars().all()
        unknown = [image for image in rows if not image.body_region][:2]
        for image in unknown:  # not exhaustively box-annotated any more: fracture unknown, region known
            image.meta = {}
            image.body_region = "wrist"
    before = build_labeled_set(filled, ["fracture"], splits=["train"])
    assert int((before.targets[:, 0] < 0).sum()) == 2
    result = run_training(filled, _job(), register=False, progress=False)
    assert result.train_summary["images"] == len(before) - 2
    assert any("2 of 8 training images left out: no known label for fracture" in m for m in result.messages)
    with_regions = run_training(filled, _job(data={"body_region": True}), register=False, progress=False)
    assert with_regions.train_summary["images"] == len(before)


def test_drop_unlabelled_refuses_a_set_with_no_known_label():
    with pytest.raises(DataError, match="none of the 3 training images has a known label for fracture"):
        drop_unlabelled(_labeled([-1, -1, -1]), regions=False)


def test_the_balanced_sampler_does_not_count_unknown_labels_as_absent(monkeypatch, one_torch_thread):
    """Unknown rows used to get the absent images' weight: with 2 present, 2 absent and 4 unknown images the
    sampler drew 'absent' three times as often as 'present'."""
    from radloop.ssl.encoders import random_encoder
    from radloop.ssl.finetune import balanced_sample_weights, train_classifier

    seen = {}
    original = torch.utils.data.WeightedRandomSampler

    def recording(weights, *args, **kwargs):
        seen["weights"] = torch.as_tensor(weights).numpy().copy()
        return original(weights, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "WeightedRandomSampler", recording)
    labels = np.array([1, 1, 0, 0, -1, -1, -1, -1])
    rng = np.random.default_rng(0)
    images = [rng.random((40, 36)).astype(np.float32) for _ in labels]
    train_classifier(random_encoder("test_resnet", 32), images, labels[:, None], np.ones(8, np.float32),
                     ["wrist"] * 8, ["fracture"], FinetuneConfig(max_steps=1, batch_size=4, augment=False,
                                                                 balanced_sampling=True), QUIET, progress=False)
    weights = seen["weights"] / seen["weights"].sum()
    present, absent, unknown = weights[labels == 1].sum(), weights[labels == 0].sum(), weights[labels == -1]
    assert present == pytest.approx(absent)  # balanced among the labelled images
    assert unknown == pytest.approx(np.full(4, 1 / 8))  # the unknown ones keep their own share
    assert balanced_sample_weights(np.array([0, 0, -1])) == pytest.approx(np.full(3, 1 / 3))  # one class: plain
