"""Lightning checkpoints written beside their final name, then renamed (:class:`SameFolderCheckpointIO`).

Lightning's own ``TorchCheckpointIO`` writes a local checkpoint through an fsspec transaction whose temporary file
lies in the system temp folder (``tempfile.mkstemp()``), then moves it into place.  On a training node ``/tmp`` is
often a small local disk or RAM while the run folder is on a large shared file system: a full ``/tmp`` fails the
run although the run folder has room, and a move across file systems is a copy into the final name, so a disk
that fills during the copy truncates the previous ``last.ckpt`` in place (nothing left to resume from).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from radloop.core.workspace import write_failure

__all__ = ["SameFolderCheckpointIO", "remove_partial_checkpoints"]

logger = logging.getLogger(__name__)


class SameFolderCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.<name>.<pid>.tmp`` in the checkpoint's own folder, flushed to disk, then
    ``os.replace``: a checkpoint file is always a complete one (the previous one until the new one is whole), and
    a failed write (a full disk) removes its temporary file and raises an ``OSError`` (``torch.save``'s own
    ``RuntimeError`` on a full disk becomes one naming the checkpoint and the cause).  Remote paths (``s3://``...)
    go to Lightning's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())  # whole on disk before the rename makes it the checkpoint
            os.replace(temporary, target)
        except RuntimeError as error:  # an OSError (a full disk seen at open or fsync) stays as it is
            if _is_write_error(error):
                raise write_failure(error, target, "the checkpoint") from error
            raise
        finally:
            temporary.unlink(missing_ok=True)


def _is_write_error(error: RuntimeError) -> bool:
    """Whether ``torch.save`` failed writing (a full disk reads ``[enforce fail at inline_container.cc:...]
    unexpected pos 704 vs 598``, not an ``OSError``), not on what it was given."""
    text = str(error)
    return "inline_container" in text or "write failed" in text or "No space left" in text


def remove_partial_checkpoints(folder: Path) -> list[Path]:
    """Remove the temporary files that writers killed mid-checkpoint (SIGKILL, a node lost) left in ``folder``: each
    is as large as a checkpoint and nothing reads it.  Call it once, from global rank 0, before a run in ``folder``
    starts writing (one run per run folder).  Returns the files removed."""
    removed = []
    for path in sorted(Path(folder).glob(".*.ckpt.*.tmp")):
        try:
            path.unlink()
        except OSError as error:
            logger.warning("could not remove %s, left by an interrupted checkpoint write: %s", path, error)
        else:
            removed.append(path)
            logger.info("removed %s, left by an interrupted checkpoint write", path)
    return removed
