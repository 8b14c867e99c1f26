"""The process group that Lightning's DDP leaves behind.

Lightning keeps ``torch.distributed``'s process group alive after ``fit`` / ``predict`` return (a later run in
the same process reuses it) and never destroys it.  A gloo group still alive when the interpreter exits can abort
the process after its work is done ("terminate called without an active exception", exit status -6: seen once in
the two-process embedding test), so a command that finished everything would still fail.  Pretraining and
embedding register :func:`destroy_process_group_at_exit` before they train or embed.
"""

from __future__ import annotations

import atexit
import logging

__all__ = ["destroy_process_group_at_exit"]

logger = logging.getLogger(__name__)
_registered = False


def destroy_process_group_at_exit() -> None:
    """Destroy the default process group, if one is still alive, when the interpreter exits (registered once)."""
    global _registered
    if not _registered:
        atexit.register(_destroy_process_group)
        _registered = True


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception as error:  # noqa: BLE001 (at exit: say so, never raise)
            logger.warning("could not destroy the process group at exit: %s", error)
