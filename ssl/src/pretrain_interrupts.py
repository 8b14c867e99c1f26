"""What a stopped pretraining run leaves behind, and what rerunning the same command does with it.

A run stops on a Ctrl-C (Lightning's graceful shutdown, or while the images are read, before Lightning starts) or on
a write that failed (a full disk, a quota, a lost mount: :class:`PretrainStorageError`).  Checkpoints are written
under a temporary name and renamed (:class:`radloop.ssl.checkpoint_io.SameFolderCheckpointIO`), so the messages can
always name a whole checkpoint to resume from, or say that there is none.
"""

from __future__ import annotations

from pathlib import Path

from radloop.ssl.pretrain_checks import checkpoint_step, resume_checkpoint

__all__ = ["PretrainStorageError", "export_failed", "interrupted", "interrupted_before_training", "write_failed"]


class PretrainStorageError(OSError):
    """A checkpoint or the exported encoder could not be written (a full disk, a quota, a lost mount).

    Its message says which checkpoint is kept (checkpoints are written under a temporary name and renamed, so
    none is ever half-written) and that rerunning the same command, once there is room, resumes from it; nothing
    was registered.  ``errno`` is the underlying error's.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def interrupted(step: int, run_dir: Path, resume: bool | str, kept: str, every: int, scheduled: int,
                head: str | None = None) -> str:
    """What an interrupted run leaves behind and what rerunning the same command does with it.

    ``kept``: the checkpoint this run wrote last (or resumed from), ``ModelCheckpoint.last_model_path``; "" if
    none.  It need not be ``last.ckpt``: a ``--no-resume`` run beside an earlier run's checkpoints writes
    ``last-v1.ckpt``.  ``head``: what stopped it (default: "pretraining interrupted at step N").
    """
    head = head or f"pretraining interrupted at step {step}"
    rerun_from = resume_checkpoint(run_dir, resume)  # what the same command resumes from now
    written = Path(kept) if kept and Path(kept).is_file() else None

    def at_step(checkpoint: Path) -> str:
        saved = checkpoint_step(checkpoint)
        return f"{checkpoint} (step {saved})" if saved is not None else str(checkpoint)

    if written and (rerun_from is None or rerun_from.resolve() != written.resolve()):
        then = "starts from the beginning again" if rerun_from is None else f"resumes from {at_step(rerun_from)}"
        return (f"{head}: its checkpoint {at_step(written)} is kept: rerun with --checkpoint {written} to resume "
                f"from it (the same command {then})")
    if rerun_from is not None:
        return f"{head}: rerun the same command to resume from {at_step(rerun_from)}"
    first = (f"the first comes at step {every}" if every < scheduled else
             f"the only one comes at the end, step {scheduled}")
    return f"{head}: no checkpoint was written yet ({first}); a rerun starts from the beginning"


def interrupted_before_training(run_dir: Path, resume: bool | str) -> str:
    """What a run interrupted while it read its images (before Lightning started) leaves, and what a rerun does."""
    head = "pretraining interrupted while reading the images, before its first step"
    rerun_from = resume_checkpoint(run_dir, resume)
    if rerun_from is not None and rerun_from.is_file():
        saved = checkpoint_step(rerun_from)
        return f"{head}: rerun the same command to resume from {rerun_from}" + (
            f" (step {saved})" if saved is not None else "")
    return f"{head}: nothing was trained; rerun the same command to start"


def write_failed(error: OSError, doing: str, step: int, run_dir: Path, resume: bool | str, kept: str, every: int,
                 scheduled: int) -> PretrainStorageError:
    """The error for a checkpoint or log write that failed during training (``doing``: which), naming the checkpoint
    a rerun resumes from (arguments as :func:`interrupted`'s)."""
    head = (f"pretraining stopped at step {step}: {doing} ({error}); nothing was registered and "
            "no checkpoint is half-written; once there is room")
    return PretrainStorageError(interrupted(step, run_dir, resume, kept, every, scheduled, head=head),
                                errno=error.errno)


def export_failed(error: OSError, step: int, encoder_dir: Path, finished: Path) -> PretrainStorageError:
    """The error for an encoder export that failed after training finished: ``finished`` (the final checkpoint)
    holds the trained state, so a rerun exports and registers it without training again."""
    return PretrainStorageError(
        f"pretraining finished {step} steps, but exporting the encoder to {encoder_dir} failed "
        f"({error}); nothing was registered and the trained state is kept in {finished}: free space and rerun "
        "the same command to export and register it (no step is trained again)", errno=error.errno)
