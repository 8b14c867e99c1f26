"""Render files of an ingest: written under pending names, put in place only once their image is committed.

A worker renders a new image to pending files beside the final ones (``renders/ab/.<id>.png.<pid>.<index>.pending``,
likewise under ``thumbs/``); the main process renames them into place (:func:`settle_renders`) after the batch
that catalogues the image is committed, and deletes them when the file did not become an image (a duplicate,
the same bytes twice in a run, a SOPInstanceUID conflict) or the batch was rolled back (Ctrl-C, a database
error).  So a file at a render path is always a catalogued image's: a run stopped at any point (``kill -9``
included) leaves no render that nothing in the catalog names.  What it leaves under pending or temporary names
(the batch in hand, the images the workers had rendered but not handed over) is swept by
:func:`remove_stale_temporaries` when the run stops and, after a kill, when the next one starts.
Killed between the commit and the rename, an image is catalogued without its render: the next run that reads
its file makes it again (``renders_restored``, :mod:`radloop.core.ingest_worker`).

The renders of catalogued images that a worker makes again are written in place (their image is committed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PENDING_SUFFIX", "pending_paths", "remove_stale_temporaries", "settle_renders"]

PENDING_SUFFIX = ".pending"


def pending_paths(paths: tuple[str, str], index: int) -> tuple[str, str]:
    """The pending names of a new image's workspace-relative render and thumbnail ``paths``, written by task
    ``index`` in this process (unique within a run: the same bytes twice are two tasks)."""
    return tuple(str(Path(path).with_name(f".{Path(path).name}.{os.getpid()}.{index}{PENDING_SUFFIX}"))
                 for path in paths)


def settle_renders(root: Path, renders: Iterable[tuple[tuple[str, str], tuple[str, str] | None]]) -> None:
    """Rename each committed image's pending render and thumbnail into place; delete the pending files of the rest.

    Args:
        root: the workspace folder.
        renders: (pending paths, final paths) of each new file of a batch; final paths None for a file that did
            not become an image, or for every file of a batch that was rolled back.
    """
    for pending, final in renders:
        for index, pending_path in enumerate(pending):
            if final is None:
                (root / pending_path).unlink(missing_ok=True)
                continue
            try:
                os.replace(root / pending_path, root / final[index])
            except FileNotFoundError:  # swept by another process: the image's next read restores its render
                pass


def remove_stale_temporaries(root: Path, *, exclusive: bool = False) -> None:
    """Delete half-written renders (``.<name>.<pid>.tmp``) and pending ones (``.<name>.<pid>.<index>.pending``)
    left by an ingest that was stopped, or by this process's own last run.

    Args:
        root: the workspace folder.
        exclusive: the caller holds the workspace's ingest lock (:mod:`radloop.core.ingest_lock`), which every
            ingest and each of its workers holds while it lives: every such file is stale then, even one of a
            worker killed a moment ago and not yet reaped.  Otherwise only files of processes that no longer
            exist, or of this one (called between runs: it writes none at that moment), are removed, so a
            concurrent writer is never disturbed.
    """
    for folder in (root / "renders", root / "thumbs"):
        for path in _temporaries(folder):
            if exclusive or _writer_gone(path):
                path.unlink(missing_ok=True)


def _temporaries(folder: Path) -> list[Path]:
    """The temporary and pending files in the shard folders of ``folder`` (one listing of each)."""
    found = []
    try:
        shards = [entry.path for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return found
    for shard in shards:
        with os.scandir(shard) as entries:
            found += [Path(entry.path) for entry in entries
                      if entry.name.startswith(".") and entry.name.endswith((".tmp", PENDING_SUFFIX))]
    return found


def _writer_gone(path: Path) -> bool:
    """Whether the process named in a temporary's name (``.<name>.<pid>.tmp``, ``.<name>.<pid>.<index>.pending``)
    no longer runs, or is this one."""
    fields = path.name.rsplit(".", 3 if path.name.endswith(PENDING_SUFFIX) else 2)
    try:
        pid = int(fields[1])
        if pid != os.getpid():
            os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, IndexError):
        return False
    return pid == os.getpid()
