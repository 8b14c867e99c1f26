"""Walkthrough 21g (multi-GPU / multi-node): the peak LR follows the effective batch (per-device batch x processes x
accumulation) when the config asks for it, and a run resumed on another number of processes says what changes."""

from __future__ import annotations

import csv
import logging
import math

import lightning as L
import pytest
import torch

from ssl_workspace import build_workspace

from radloop.core.config import load_config
from radloop.ssl.settings import PretrainConfig, peak_lr

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["method=simclr", "model.timm_name=test_resnet", "model.image_size=32", "simclr.projection_hidden_dim=32",
        "simclr.projection_dim=8", "augment.local_views=0", "data.crop_size=32", "data.batch_size=4",
        "data.cache_size=40", "trainer.accelerator=cpu", "trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2",
        "trainer.num_threads=1", "trainer.enable_progress_bar=false", "trainer.loggers=[csv]",
        "trainer.log_every_n_steps=1", "optim.lr=1e-3", "optim.warmup_steps=0", "optim.min_lr_ratio=0.1"]


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index: int) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _logged_lrs(run_dir) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return [float(row["train/lr"]) for row in csv.DictReader(handle) if row.get("train/lr")]


def test_peak_lr_rule():
    optim = load_config(None, PretrainConfig, ["trainer.max_steps=1", "optim.lr=1.5e-4", "optim.lr_scaling=linear",
                                               "optim.reference_batch_size=256"]).optim
    assert peak_lr(optim, 256) == pytest.approx(1.5e-4)
    assert peak_lr(optim, 8 * 256) == pytest.approx(1.2e-3)  # 8 GPUs x 256: the MAE paper's rule
    assert peak_lr(optim.model_copy(update={"lr_scaling": "sqrt"}), 4 * 256) == pytest.approx(3e-4)
    assert peak_lr(optim.model_copy(update={"lr_scaling": "none"}), 8 * 256) == pytest.approx(1.5e-4)
    for name in ("mae_vitb16_224_gpu", "mae_vitb16_448_gpu"):  # 1 GPU: the paper's 1.5e-4 per 256 as before
        config = load_config(f"configs/ssl/{name}.yaml", PretrainConfig, [])
        effective = config.data.batch_size * config.trainer.accumulate_grad_batches
        assert effective == 256 and peak_lr(config.optim, effective) == pytest.approx(1.5e-4)
        assert peak_lr(config.optim, effective * 8 * 2) == pytest.approx(1.5e-4 * 16)  # 2 nodes x 8 GPUs


def test_the_peak_lr_follows_the_effective_batch(catalog, tmp_path):
    """`optim.lr_scaling: linear` with 4 images per device x 2 accumulated = 8 per step against a reference of 4:
    the optimizer runs at twice optim.lr.  Before: the configs' comment asked for a hand-set --set optim.lr, and the
    README's 8-GPU launch line trained at the one-GPU LR."""
    from radloop.ssl.pretrain import pretrain
    from radloop.ssl.pretrain_module import warmup_cosine

    build_workspace(catalog, 16)
    config = load_config(None, PretrainConfig, [*TINY, "trainer.accumulate_grad_batches=2", "optim.lr_scaling=linear",
                                                "optim.reference_batch_size=4"])
    result = pretrain(catalog, config, tmp_path / "run", register=False)
    assert result.effective_batch_size == 8 and result.peak_lr == pytest.approx(2e-3)
    expected = [2e-3 * warmup_cosine(step + 1, 4, 0, 0.1) for step in range(4)]  # logged after each step
    assert _logged_lrs(tmp_path / "run") == pytest.approx(expected, rel=1e-6)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["batch"]
    assert saved == {"world_size": 1, "peak_lr": pytest.approx(2e-3), "effective_batch_size": 8}


def test_a_resume_with_another_effective_batch_says_what_changes(catalog, tmp_path, caplog):
    """A run stopped at step 2 resumed with a larger effective batch (here: accumulation 1 -> 2; on a cluster: more or
    fewer processes) runs on, but its batches are not an uninterrupted run's: it says so, with both peak LRs."""
    from radloop.ssl.pretrain import pretrain

    build_workspace(catalog, 16)
    scaled = [*TINY, "optim.lr_scaling=linear", "optim.reference_batch_size=4"]
    run_dir = tmp_path / "run"
    first = pretrain(catalog, load_config(None, PretrainConfig, scaled), run_dir, register=False,
                     callbacks=[_StopAt(2)])
    assert first.steps == 2 and first.peak_lr == pytest.approx(1e-3)
    caplog.set_level(logging.WARNING, logger="radloop.ssl.pretrain")
    resumed = pretrain(catalog, load_config(None, PretrainConfig, [*scaled, "trainer.accumulate_grad_batches=2"]),
                       run_dir, register=False)
    assert resumed.steps == 4 and resumed.resumed_from.endswith("last.ckpt") and resumed.peak_lr == pytest.approx(2e-3)
    warning = " ".join(record.getMessage() for record in caplog.records if "not those of an uninterrupted run"
                       in record.getMessage())
    assert "by 1 processes, 4 images per optimizer step) on 1 processes with 8 images per step" in warning, warning
    assert "the peak LR is 0.002 (it was 0.001)" in warning


def test_a_checkpoint_from_before_the_lr_scaling_settings_still_resumes(catalog, tmp_path):
    """Checkpoints written before optim.lr_scaling / reference_batch_size existed lack those keys: their defaults
    are what those runs used, so the resume is not refused as "trained with other settings"."""
    from radloop.ssl.pretrain import pretrain

    build_workspace(catalog, 16)
    config = load_config(None, PretrainConfig, TINY)
    run_dir = tmp_path / "run"
    pretrain(catalog, config, run_dir, register=False, callbacks=[_StopAt(2)])
    last = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    for key in ("lr_scaling", "reference_batch_size"):
        del state["hyper_parameters"]["config"]["optim"][key]
    del state["batch"]
    torch.save(state, last)
    resumed = pretrain(catalog, config, run_dir, register=False)
    assert resumed.steps == 4 and resumed.resumed_from == str(last)
    assert not math.isnan(resumed.final_loss)


# ------------------------------------------------------------------------------------ two processes (gloo, CPU)
def _two_process_run(catalog, run_dir, records, *extra: str, stop_at: int = 0):
    from test_ssl_ddp import TINY_SIMCLR, _pretrain_two_processes

    return _pretrain_two_processes(catalog, run_dir, records, TINY_SIMCLR, *extra, stop_at=stop_at)


def test_two_processes_double_the_scaled_lr_and_a_resume_on_one_says_so(catalog, tmp_path, caplog):
    """2 processes x 4 images = 8 per step against a reference of 4: peak 2 x optim.lr on both ranks.  Stopped at
    step 2, the run resumes on one process (a node lost): it runs to the end, and warns that the effective batch
    went 8 -> 4 and the peak LR 2e-3 -> 1e-3."""
    from radloop.ssl.pretrain import pretrain

    build_workspace(catalog, 32)
    scaled = ["optim.lr=1e-3", "optim.lr_scaling=linear", "optim.reference_batch_size=4", "optim.warmup_steps=0"]
    run_dir = tmp_path / "run"
    _ranks, results = _two_process_run(catalog, run_dir, tmp_path / "records", *scaled, stop_at=2)
    for rank in (0, 1):
        assert results[rank]["effective_batch_size"] == 8 and results[rank]["peak_lr"] == pytest.approx(2e-3)
        assert results[rank]["steps"] == 2
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 2 and saved["batch"]["world_size"] == 2
    assert saved["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(2e-3)

    from test_ssl_ddp import TINY_SIMCLR, TWO_PROCESSES

    one_process = [*TWO_PROCESSES, *TINY_SIMCLR, *scaled, "trainer.devices=1", "trainer.strategy=auto"]
    caplog.set_level(logging.WARNING, logger="radloop.ssl.pretrain")
    resumed = pretrain(catalog, load_config(None, PretrainConfig, one_process), run_dir, register=False)
    assert resumed.steps == 4 and resumed.resumed_from.endswith("last.ckpt")
    assert resumed.effective_batch_size == 4 and resumed.peak_lr == pytest.approx(1e-3)
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert "written at step 2 by 2 processes, 8 images per optimizer step) on 1 processes with 4 images" in warning
    assert "the peak LR is 0.001 (it was 0.002)" in warning


def test_sync_batchnorm_on_several_cpu_processes_is_refused_before_training(catalog, tmp_path):
    """The GPU configs set trainer.sync_batchnorm; run on CPU processes (`--set trainer.accelerator=cpu`, as the
    GPU refusal suggests) every rank failed at its first step inside torch ("SyncBatchNorm expected input tensor
    to be on GPU"), after the images were cached.  Now one line, before anything is read."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_ssl_ddp import TINY_SIMCLR, TWO_PROCESSES

    build_workspace(catalog, 32)
    script = Path(__file__).with_name("test_ssl_ddp.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "RADLOOP_DATABASE_URL": catalog.workspace.database_url}
    process = subprocess.run([sys.executable, str(script), "pretrain", str(catalog.workspace.root),
                              str(tmp_path / "run"), str(tmp_path / "records"), "0", *TWO_PROCESSES, *TINY_SIMCLR,
                              "trainer.sync_batchnorm=true"], env=env, capture_output=True, text=True, timeout=240,
                             start_new_session=True, check=False)
    assert process.returncode != 0
    assert "ValueError: trainer.sync_batchnorm needs GPUs (torch's SyncBatchNorm); these 2 CPU processes would " \
           "fail at the first step: --set trainer.sync_batchnorm=false" in process.stderr, process.stderr[-3000:]
    assert not (tmp_path / "run").exists()


def test_the_step_sampler_reshuffles_every_epoch_and_drops_only_the_documented_tail():
    """What DistributedSampler.set_epoch does, by construction: epoch e is randperm(n, seed + e), split over the
    ranks; every image at most once per epoch over all ranks, and only the n mod (batch x ranks) tail dropped."""
    from radloop.ssl.pretrain_data import StepBatchSampler

    items, batch, world = 10, 2, 2  # global batch 4: 2 batches per epoch, 2 images of each epoch dropped
    epochs = 3
    samplers = [StepBatchSampler(items, batch, 2 * epochs, seed=5, rank=rank, world_size=world) for rank in range(2)]
    per_rank = [list(sampler) for sampler in samplers]
    orders = []
    for epoch in range(epochs):
        seen = [index for rank in range(world) for pairs in per_rank[rank][2 * epoch:2 * epoch + 2]
                for index, _ in pairs]
        assert len(seen) == len(set(seen)) == 8, epoch
        orders.append(seen)
        expected = torch.randperm(items, generator=torch.Generator().manual_seed(5 + epoch))[:8].tolist()
        assert sorted(seen) == sorted(expected)
    assert orders[0] != orders[1] != orders[2]
    positions = [position for rank in range(world) for pairs in per_rank[rank] for _, position in pairs]
    assert sorted(positions) == list(range(4 * 2 * epochs))  # every sample's augmentation seed used once
    resumed = [list(StepBatchSampler(items, batch, 2 * epochs, seed=5, start_batch=3, rank=rank, world_size=world))
               for rank in range(2)]
    assert resumed == [per_rank[rank][3:] for rank in range(2)]
