"""One ingest at a time per workspace: an advisory lock on ``<workspace>/ingest.lock``.

Two ingests of one folder into one workspace at once do not corrupt the catalog (each batch is one
transaction), but each run reads the catalog's hashes when it starts, so the second took every image the first
had just written for a duplicate of itself (1,200 ``duplicate_sources`` rows that name the file they copy, and
``images_skipped_duplicate`` 1,200 instead of ``images_skipped_existing``).  Ingest therefore takes this lock;
a second ingest stops at once with :class:`IngestLockedError` naming the pid that holds it.

The lock is ``flock`` on an open file: the kernel drops it when the process ends, however it ends (``kill -9``
included), so a killed ingest never leaves a stale lock for the next run to clear.  Its worker processes inherit
the open file and hold the lock until they end too (with the ingest, :func:`radloop.core.ingest_worker.init_worker`),
so whoever holds the lock knows no other ingest's process is writing renders.  The file's text (pid,
host, start time) only says who holds it.  Where ``fcntl`` is missing (Windows) no lock is taken.  The lock is
per workspace folder: two workspaces sharing one PostgreSQL catalog are not serialised by it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from radloop.core.workspace import write_failure

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["LOCK_NAME", "IngestLockedError", "ingest_lock"]

LOCK_NAME = "ingest.lock"


class IngestLockedError(RuntimeError):
    """Another ingest holds the workspace's ingest lock."""

    def __init__(self, lock_path: Path, holder: str) -> None:
        self.lock_path = lock_path
        self.holder = holder
        super().__init__(f"another ingest is running in this workspace ({holder or 'holder unknown'}); wait for "
                         f"it to finish, then run this one (it adds only what the other did not). Lock: {lock_path}")


@contextmanager
def ingest_lock(root: Path, run_id: str) -> Iterator[bool]:
    """Hold the ingest lock of the workspace at ``root`` for the ``with`` block.

    Yields:
        True when a lock is held (no other ingest of this workspace, nor any of its workers, is running), False
        where none can be taken (no ``fcntl``).

    Raises:
        IngestLockedError: another process holds it (it is not waited for).
    """
    if fcntl is None:
        yield False
        return
    path = Path(root) / LOCK_NAME
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise IngestLockedError(path, handle.read().strip()) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        holder = f"pid {os.getpid()} on {socket.gethostname()}, run {run_id}, started {started}"
        try:  # unbuffered: a refused write leaves nothing for close() to try again
            os.write(handle.fileno(), holder.encode("utf-8"))
        except OSError as error:  # a full disk: "[Errno 28] No space left on device" named no file
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            raise write_failure(error, path, "the ingest lock file") from None
        try:
            yield True
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()
