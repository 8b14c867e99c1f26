"""Resumable training of the fine-tuned classifier and the detector: Lightning checkpoints of one job.

A job's checkpoints live in ``<workspace>/models/runs/<version>/checkpoints/``: one ``last.ckpt``, written every
``trainer.checkpoint_every_n_steps`` steps, at the end of every epoch and at the end of training.  The version is a
digest of the job's config, encoder and labelled images (:func:`radloop.ssl.finetune_jobs._version`), so rerunning
the same command after a Ctrl-C resumes the same job (weights, optimizer, LR schedule, step, elapsed ``max_time``,
the epoch selection's scores) with Lightning's ``ckpt_path``, and any change to what the model learns from starts a
new one.  The job's Trainer writes through :class:`radloop.ssl.checkpoint_io.SameFolderCheckpointIO`, as pretraining's
does (``plugins=[SameFolderCheckpointIO()]``): a temporary file in the checkpoint folder, flushed, then renamed, so
``last.ckpt`` is always whole and never goes through a small or full system temp folder.  A job resumed mid-epoch
draws the rest of that epoch's batches afresh (the loaders keep no position), so it is not bit-identical to an
uninterrupted run.  The folder is removed once the job is done (model saved and
registered, or measured with ``--no-register``).

One process at a time trains a job: two would write one ``last.ckpt`` in turns, and each resume the other's
steps.  :func:`job_lock` holds ``flock`` on ``<workspace>/models/runs/<version>/job.lock`` while the job runs; a second
process stops at once with :class:`JobLockedError` naming the holder's pid.  The kernel drops the lock when its
process ends, however it ends (``kill -9`` included), so the rerun after a killed job resumes its checkpoint.
Where ``fcntl`` is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Checkpoint

from radloop.ssl.checkpoint_io import remove_partial_checkpoints

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["JOB_LOCK", "LAST_CHECKPOINT", "JobLockedError", "LastCheckpoint", "checkpoint_callback", "fit_resumable",
           "job_lock", "remove_checkpoints", "resume_from"]

LAST_CHECKPOINT = "last.ckpt"
JOB_LOCK = "job.lock"


class JobLockedError(RuntimeError):
    """Another process is training the same job (same version, same checkpoint folder)."""

    def __init__(self, lock_path: Path, holder: str) -> None:
        self.lock_path = lock_path
        self.holder = holder
        super().__init__(f"this job ({lock_path.parent.name}) is already training in another process "
                         f"({holder or 'holder unknown'}) and both would write its checkpoint "
                         f"{lock_path.parent / 'checkpoints' / LAST_CHECKPOINT}: wait for that one to finish, or "
                         f"stop it and rerun this command to resume from its checkpoint. Lock: {lock_path}")


def _locked_file(path: Path):
    """``path`` opened and ``flock``-ed; a file that a finishing holder removed meanwhile is not the lock."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until job_lock ends
        except FileNotFoundError:  # the run folder went away between mkdir and open
            continue
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise JobLockedError(path, holder) from None
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return handle
        handle.close()


@contextmanager
def job_lock(folder: Path | None) -> Iterator[bool]:
    """Hold the lock of the job whose checkpoint folder is ``folder`` for the ``with`` block (module docstring).

    The lock file (and the run folder, once empty) is removed at the end.

    Yields:
        True when the lock is held, False where none is taken (``folder`` None, or no ``fcntl``).

    Raises:
        JobLockedError: another process holds it (it is not waited for).
    """
    if folder is None or fcntl is None:
        yield False
        return
    path = Path(folder).parent / JOB_LOCK
    handle = _locked_file(path)
    try:
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        handle.flush()
        yield True
    finally:
        path.unlink(missing_ok=True)  # while held: a process that opened it meanwhile sees it is gone
        try:
            path.parent.rmdir()
        except OSError:  # checkpoints left to resume from
            pass
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def checkpoint_callback(folder: Path, every_n_steps: int):
    """The Lightning callback that keeps a job's one rolling ``folder/last.ckpt`` (see :class:`LastCheckpoint`)."""
    return LastCheckpoint(folder, every_n_steps)


def _save(trainer: Any, path: Path) -> None:
    """``trainer.save_checkpoint`` to ``path``; the trainer's ``SameFolderCheckpointIO`` writes it beside ``path``
    and renames it, so a Ctrl-C or a full disk while it writes leaves the previous checkpoint whole."""
    trainer.save_checkpoint(str(path))


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` every ``every_n_steps`` training steps and at the end of every epoch.

    Not Lightning's ``ModelCheckpoint``: a step checkpoint written on an epoch's last batch comes before that
    epoch's end hooks (the epoch selection's scoring) and ``ModelCheckpoint`` does not save the same step again
    at the epoch's end, so a run resumed from it would skip that epoch's score.  Here the last batch is left to
    the epoch end.  A ``Checkpoint`` subclass: Lightning runs it after the other callbacks.
    """

    def __init__(self, folder: Path, every_n_steps: int) -> None:
        self.path = Path(folder) / LAST_CHECKPOINT
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, *_args) -> None:
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if trainer.global_step % self.every_n_steps == 0 and not last_batch:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _save(trainer, self.path)

    def on_train_epoch_end(self, trainer, *_args) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _save(trainer, self.path)


def _checkpoint_state(path: Path) -> dict[str, Any] | None:
    import torch

    try:  # tensors memory-mapped, not read
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - a half-written or foreign file: not resumable
        return None


def resume_from(folder: Path | None, module: Any) -> tuple[str | None, int | None, list[str]]:
    """The checkpoint a job resumes from: ``folder/last.ckpt`` when it holds this module's weights.

    An unreadable checkpoint, or one of another network (e.g. written by another radloop version), is removed
    with a message and the job starts from the beginning.

    Returns:
        (checkpoint path or None, its step or None, messages).
    """
    if folder is None or not (folder / LAST_CHECKPOINT).is_file():
        return None, None, []
    path = folder / LAST_CHECKPOINT
    state = _checkpoint_state(path)
    expected = {name: tuple(value.shape) for name, value in module.state_dict().items()}
    saved = None if state is None else {name: tuple(value.shape) for name, value in state.get("state_dict", {}).items()}
    if saved != expected:
        why = "unreadable" if state is None else "of another network"
        remove_checkpoints(folder)
        return None, None, [f"checkpoint {path} {why}: removed, training starts from the beginning"]
    step = int(state.get("global_step", 0))
    return str(path), step, [f"resumed from checkpoint {path} (step {step})"]


def fit_resumable(fit: Any, module: Any, loader: Any, folder: Path | None, what: str) -> list[str]:
    """``fit.fit(module, loader)``, resumed from ``folder``'s checkpoint when there is one, saved there at the end.

    ``fit`` is built with ``plugins=[SameFolderCheckpointIO()]`` (see the module docstring); temporary files that a
    killed earlier write left in ``folder`` are removed first.

    Returns:
        Messages (resumed from which step, a checkpoint that could not be used).

    Raises:
        KeyboardInterrupt: Ctrl-C (Lightning's graceful shutdown); the message says what a rerun does.
    """
    from lightning.pytorch.utilities import rank_zero_only

    if folder is not None and rank_zero_only.rank == 0:  # a write killed mid-checkpoint (SIGKILL) left its file
        remove_partial_checkpoints(folder)
    ckpt_path, _step, messages = resume_from(folder, module)
    try:
        fit.fit(module, loader, ckpt_path=ckpt_path)
    except SystemExit:  # Lightning's answer to Ctrl-C: a graceful shutdown, then sys.exit(1)
        if fit.interrupted:
            raise KeyboardInterrupt(_interrupted(fit.global_step, folder, what)) from None
        raise
    if folder is not None:  # the finished state: a rerun interrupted in evaluation does not train again
        folder.mkdir(parents=True, exist_ok=True)
        _save(fit, folder / LAST_CHECKPOINT)
    return messages


def _interrupted(step: int, folder: Path | None, what: str) -> str:
    state = None if folder is None else _checkpoint_state(folder / LAST_CHECKPOINT)
    if state is None:  # stopped before its first checkpoint
        return "training interrupted: no model was registered; rerun the same command to train it again"
    return (f"{what} interrupted at step {step}: no model was registered; rerun the same command to resume from its "
            f"checkpoint {folder / LAST_CHECKPOINT} (step {int(state.get('global_step', 0))})")


def remove_checkpoints(folder: Path | None) -> None:
    """Remove a job's checkpoint folder (and its run folder when that is left empty)."""
    if folder is None or not folder.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:  # not empty, or already gone
        pass
