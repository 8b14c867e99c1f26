"""Walkthrough 21k: fine-tuning and detection checkpoints are written as pretraining's are, beside their final name
(:class:`radloop.ssl.checkpoint_io.SameFolderCheckpointIO`), not through the system temp folder.

Lightning's default checkpoint IO writes each ``last.ckpt`` to a temporary file from ``tempfile.mkstemp()`` (``/tmp``)
and moves it into place: on a node whose ``/tmp`` is small or full the job fails although its run folder has room,
and a move across file systems is a copy into the final name.  Here the system temp folder is full (``tempfile.mkstemp``
fails): every checkpoint must still be written.  Tiny encoders, one torch thread."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

from radloop.core.records import Box
from radloop.ssl.finetune_config import DetectConfig, FinetuneConfig, TrainerConfig


@pytest.fixture
def full_temp_folder(monkeypatch):
    """The system temp folder is full: ``tempfile.mkstemp`` (what Lightning's default checkpoint IO writes
    through, by way of fsspec's local transaction) fails with ENOSPC.  Returns the calls it refused."""
    import errno

    refused = []

    def no_space(*args, **kwargs):
        refused.append((args, kwargs))
        raise OSError(errno.ENOSPC, "No space left on device (the system temp folder)")

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    return refused


def _train_classifier(folder, steps: int):
    from radloop.ssl.encoders import random_encoder
    from radloop.ssl.finetune import train_classifier

    rng = np.random.default_rng(0)
    images = [rng.random((40, 36)).astype(np.float32) for _ in range(4)]
    return train_classifier(random_encoder("test_resnet", 32), images, np.array([[0], [1], [0], [1]]),
                            np.ones(4, np.float32), [None] * 4, ["fracture"],
                            FinetuneConfig(max_steps=steps, batch_size=2, augment=False, warmup_steps=0),
                            TrainerConfig(num_threads=1, checkpoint_every_n_steps=1), progress=False,
                            checkpoints=folder)


def _train_detector(folder, steps: int, images_folder):
    from PIL import Image as PILImage

    from radloop.ssl.detection import train_detector
    from radloop.ssl.encoders import random_encoder

    rng = np.random.default_rng(0)
    images = [images_folder / f"{index}.png" for index in range(2)]
    for image in images:
        PILImage.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(image)
    boxes = [[Box("fracture", 10, 10, 20, 20)], [Box("fracture", 30, 20, 16, 24)]]
    config = DetectConfig(min_size=64, max_size=64, fpn_channels=16, batch_size=1, max_steps=steps)
    return train_detector(random_encoder("test_resnet", 64), images, [(64, 64)] * 2, boxes, [False, False], config,
                          TrainerConfig(num_threads=1, checkpoint_every_n_steps=1), progress=False,
                          checkpoints=folder)


@pytest.mark.parametrize("head", ["finetune", "detect"])
def test_checkpoints_are_written_beside_their_name_not_through_the_system_temp_folder(
        head, tmp_path, full_temp_folder, one_torch_thread):
    """Before: the first step checkpoint failed the job with ENOSPC from ``tempfile.mkstemp``."""
    folder = tmp_path / "runs" / "job" / "checkpoints"
    if head == "finetune":
        _train_classifier(folder, steps=2)
    else:
        _train_detector(folder, steps=2, images_folder=tmp_path)
    assert [path.name for path in folder.iterdir()] == ["last.ckpt"]  # no temporary file left beside it
    state = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 2 and state["state_dict"]
    assert full_temp_folder == []  # nothing tried the system temp folder


def test_the_job_trainers_are_given_the_same_folder_checkpoint_io(tmp_path, monkeypatch, one_torch_thread):
    """Both heads build their Lightning Trainer with pretraining's plugin (the checkpoints' writer)."""
    import lightning

    from radloop.ssl import detection, finetune
    from radloop.ssl.checkpoint_io import SameFolderCheckpointIO

    assert finetune.L is detection.L is lightning  # one attribute to wrap
    writers = []
    original = lightning.Trainer

    def recording(*args, **kwargs):
        built = original(*args, **kwargs)
        writers.append(type(built.strategy.checkpoint_io))
        return built

    monkeypatch.setattr(lightning, "Trainer", recording)
    _train_classifier(tmp_path / "classifier", steps=1)
    _train_detector(tmp_path / "detector", steps=1, images_folder=tmp_path)
    assert writers == [SameFolderCheckpointIO, SameFolderCheckpointIO]


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch, one_torch_thread):
    """A full disk while ``last.ckpt`` is rewritten: the job stops with the OSError, and the checkpoint a rerun
    resumes from is still the previous, complete one (no temporary file left)."""
    import errno

    from radloop.ssl import checkpoint_io

    folder = tmp_path / "runs" / "job" / "checkpoints"
    real_save = torch.save
    writes = []

    def fills_the_disk(obj, target, *args, **kwargs):
        writes.append(target)
        if len(writes) == 2:  # the second checkpoint (step 2): the disk is full half-way
            target.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(checkpoint_io.torch, "save", fills_the_disk)
    with pytest.raises(OSError, match="No space left"):
        _train_classifier(folder, steps=3)
    monkeypatch.setattr(checkpoint_io.torch, "save", real_save)
    assert [path.name for path in folder.iterdir()] == ["last.ckpt"]
    assert torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 1
