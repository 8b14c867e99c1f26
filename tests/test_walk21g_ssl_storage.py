"""Walkthrough 21g (long runs): a disk that fills while `radloop pretrain` writes a checkpoint or exports its
encoder, or while `radloop embed` writes a shard; checkpoints that passed through the system temp folder."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ssl_workspace import build_workspace

from radloop.app.cli import build_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: SimCLR in seconds: a tiny ResNet at 32 px, 4 steps of 4, a checkpoint every 2 steps.
TINY = ["method=simclr", "model.timm_name=test_resnet", "model.image_size=32", "simclr.projection_hidden_dim=32",
        "simclr.projection_dim=8", "augment.local_views=0", "data.crop_size=32", "data.batch_size=4",
        "data.cache_size=40", "data.splits=null", "trainer.accelerator=cpu", "trainer.max_steps=4",
        "trainer.checkpoint_every_n_steps=2", "trainer.num_threads=1", "trainer.enable_progress_bar=false",
        "trainer.loggers=[csv]", "trainer.max_time=null"]
DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


def _invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), terminal_width=400, env={"COLUMNS": "400"})


def _pretrain(catalog, run_dir: Path):
    sets = [part for override in TINY for part in ("--set", override)]
    return _invoke("pretrain", "-c", "configs/ssl/simclr_cpu.yaml", "-w", str(catalog.workspace.root), "--out",
                   str(run_dir), "--json", *sets)


def _error_line(output: str) -> str:
    """The CLI's one error line, wrapped or not (the runner's logging noise around it aside)."""
    return " ".join(output[output.index("error:"):].split())


def _encoders(catalog) -> list[str]:
    from radloop.core.schema import Model

    with catalog.session() as session:
        return [row.version for row in session.query(Model).filter(Model.kind == "encoder")]


def _hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.name.startswith(".") or path.suffix == ".tmp")


def test_checkpoints_are_written_in_the_run_folder_not_the_system_temp_folder(catalog, tmp_path, monkeypatch):
    """Lightning wrote every checkpoint to ``tempfile.mkstemp()`` (``/tmp``) first, then moved it: a full ``/tmp``
    failed the run although the run folder had room, and a move across file systems copies into ``last.ckpt``
    itself (a disk filling during the copy truncated the only checkpoint to resume from)."""
    import tempfile

    build_workspace(catalog, 8)

    def full_temp_folder(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device (the system temp folder)")

    monkeypatch.setattr(tempfile, "mkstemp", full_temp_folder)
    result = _pretrain(catalog, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    assert _hidden(tmp_path / "run" / "checkpoints") == []


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_last_one_and_says_how_to_resume(catalog, tmp_path,
                                                                                          monkeypatch):
    """The step-4 checkpoint hits a full disk halfway: before, a traceback (OSError out of Lightning); now one
    message naming the kept checkpoint, nothing registered, no partial file; the same command then resumes."""
    build_workspace(catalog, 8)
    run_dir = tmp_path / "run"
    real_save = torch.save

    def save_until_the_disk_fills(obj, target, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("global_step", 0) >= 4:
            if hasattr(target, "write"):
                target.write(b"PK\x03\x04 half a checkpoint")
            raise DISK_FULL
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    stopped = _pretrain(catalog, run_dir)
    assert stopped.exit_code == 2, stopped.output
    assert _error_line(stopped.output).startswith("error: pretraining")
    message = " ".join(stopped.output.split())
    assert "pretraining stopped at step 4: a write failed ([Errno 28] No space left on device)" in message, message
    assert ("nothing was registered and no checkpoint is half-written; once there is room: rerun the same command "
            f"to resume from {run_dir / 'checkpoints' / 'last.ckpt'} (step 2)") in message, message
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert _hidden(run_dir / "checkpoints") == [] and not (run_dir / "encoder").exists()
    assert _encoders(catalog) == []

    monkeypatch.setattr(torch, "save", real_save)  # room again
    resumed = _pretrain(catalog, run_dir)
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert summary["steps"] == 4 and summary["registered"] and _encoders(catalog) == [summary["version"]]


def test_a_full_disk_while_exporting_the_encoder_leaves_no_half_encoder(catalog, tmp_path, monkeypatch):
    """The disk fills while encoder.safetensors is written: before, a traceback and half a weights file in
    ``encoder/`` (loadable by path after a later config write); now a message, no file, and the rerun exports and
    registers the trained weights without training again."""
    import safetensors.torch

    build_workspace(catalog, 8)
    run_dir = tmp_path / "run"
    real_save_file = safetensors.torch.save_file

    def half_written(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x08\x00 half the weights")
        raise DISK_FULL

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)
    stopped = _pretrain(catalog, run_dir)
    assert stopped.exit_code == 2, stopped.output
    message = " ".join(stopped.output.split())
    assert _error_line(stopped.output).startswith("error: pretraining")
    assert "exporting the encoder" in message and "No space left on device" in message, message
    assert "nothing was registered" in message and "rerun the same command to export" in message
    encoder_dir = run_dir / "encoder"
    assert not encoder_dir.exists() or sorted(path.name for path in encoder_dir.iterdir()) == []
    assert _encoders(catalog) == []
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4

    monkeypatch.setattr(safetensors.torch, "save_file", real_save_file)
    again = _pretrain(catalog, run_dir)
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["steps"] == 4 and summary["resumed_from"] and summary["registered"]
    assert sorted(path.name for path in encoder_dir.iterdir()) == ["config.yaml", "encoder.json",
                                                                   "encoder.safetensors"]


def test_a_full_disk_while_writing_an_embedding_shard_keeps_the_shards_before_it(catalog, tmp_path, monkeypatch):
    """The second shard hits a full disk halfway: before, its partial temporary file stayed in the version's folder
    (holding the space for an hour, until a sweep); now it is removed, the first shard and its rows are kept, the
    message says what to do, and the rerun embeds the rest, each image once."""
    from radloop.core import embedding_writer
    from radloop.core.embeddings import load_embeddings
    from radloop.core.schema import Embedding
    from radloop.ssl.encoders import random_encoder, save_encoder

    ids = build_workspace(catalog, 10)
    bundle = random_encoder("test_resnet", 32)
    encoder_dir = tmp_path / "encoder"
    version = save_encoder(bundle.model.backbone, encoder_dir, timm_name="test_resnet", image_size=32,
                           method="random").version
    real_save = np.save
    calls = []

    def second_shard_fills_the_disk(handle, array, *args, **kwargs):
        calls.append(len(array))
        if len(calls) == 2:
            handle.write(b"\x93NUMPY half a shard")
            raise DISK_FULL
        return real_save(handle, array, *args, **kwargs)

    monkeypatch.setattr(embedding_writer.np, "save", second_shard_fills_the_disk)
    command = ["embed", "-e", str(encoder_dir), "-w", str(catalog.workspace.root), "--batch-size", "4",
               "--shard-size", "4", "--accelerator", "cpu", "--json"]
    stopped = _invoke(*command)
    assert stopped.exit_code == 2, stopped.output
    message = " ".join(stopped.output.split())
    assert "No space left on device" in message and "rerun the same command" in message, message
    folder = embedding_writer.shard_folder(catalog, version)
    assert [path.name for path in folder.iterdir() if not path.name.startswith(".write")] == ["shard-00000.npy"]
    with catalog.session() as session:
        assert session.query(Embedding).filter(Embedding.model_version == version).count() == 4

    monkeypatch.setattr(embedding_writer.np, "save", real_save)
    again = _invoke(*command)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["embedded"] == 6
    stored = load_embeddings(catalog, version)
    assert sorted(stored.image_ids) == sorted(ids) and len(set(stored.image_ids)) == len(ids)


def test_a_checkpoint_write_killed_midway_leaves_nothing_a_rerun_keeps(catalog, tmp_path):
    """A run killed (SIGKILL, a node lost) while it wrote a checkpoint leaves its temporary file, as large as a
    checkpoint: the next run in the folder removes it (before, a temporary from /tmp would have stayed in /tmp)."""
    build_workspace(catalog, 8)
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    partial = checkpoints / ".last.ckpt.999999.tmp"
    partial.write_bytes(b"PK\x03\x04 half a checkpoint")
    result = _pretrain(catalog, run_dir)
    assert result.exit_code == 0, result.output
    assert not partial.exists() and _hidden(checkpoints) == []
