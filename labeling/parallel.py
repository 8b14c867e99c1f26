"""Label reports in the calling process plus worker processes, streaming with a bounded number of chunks held.

medspacy rule objects do not pickle.  Where the platform forks, workers inherit the parent's
ready-built labeller (copy-on-write: no rule loading, no pipeline building, no imports per worker);
elsewhere (spawn) every worker builds its own once, in the pool initializer.
Only texts and plain result records cross process boundaries.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    from .labeler import LabelResult, ReportLabeler

#: Reports per task sent to a worker: small enough that workers finish together at the end of a
#: stream (the last chunk is the tail), large enough that inter-process overhead stays negligible.
CHUNK_REPORTS = 64

_WORKER_LABELER = None  # the labeller of this worker process: inherited at fork or built by _init_worker


def _init_worker(max_chars: int, batch_size: int) -> None:
    global _WORKER_LABELER
    if _WORKER_LABELER is None:
        from .labeler import ReportLabeler

        _WORKER_LABELER = ReportLabeler(max_chars=max_chars, batch_size=batch_size)


def _label_chunk(texts: list) -> list[tuple[list, str | None]]:
    return [(list(result), result.error) for result in _WORKER_LABELER._label_serial(texts)]


def _start_pool(labeler: ReportLabeler, workers: int):
    global _WORKER_LABELER
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    if fork:
        _WORKER_LABELER = labeler  # forked workers start with it; the pool initializer then has nothing to do
        # the workers' garbage collector then leaves the inherited objects alone (no copy-on-write of
        # their pages, no scanning a million rule and vocabulary objects); the parent unfreezes at once
        gc.freeze()
    try:
        return context.Pool(workers, initializer=_init_worker, initargs=(labeler.max_chars, labeler.batch_size))
    finally:
        _WORKER_LABELER = None
        if fork:
            gc.unfreeze()


def label_parallel(labeler: ReportLabeler, texts: Iterable, *, n_process: int,
                   chunk_size: int | None = None) -> Iterator[LabelResult]:
    """Yield ``LabelResult`` per text, in input order, from ``n_process`` processes running ``labeler``.

    The calling process is one of them: ``n_process - 1`` workers take chunks of ``chunk_size``
    reports, and whenever the next result in order is not ready yet, the caller labels the next
    chunk itself instead of waiting (so it does its share, less whatever the consumer of the results
    costs it).  At most ``2 * (n_process - 1)`` chunks are queued for the workers and ``4 * n_process``
    held in all, so memory stays flat however long ``texts`` is.
    """
    from .labeler import LabelResult

    chunk_size = chunk_size or CHUNK_REPORTS
    iterator = iter(texts)
    queued_limit, held_limit = 2 * (n_process - 1), 4 * n_process
    pending: deque = deque()  # in input order: a worker's AsyncResult or a list of results labelled here
    queued = 0
    exhausted = False

    def next_chunk() -> list:
        nonlocal exhausted
        chunk = list(islice(iterator, chunk_size)) if not exhausted else []
        exhausted = not chunk
        return chunk

    with _start_pool(labeler, n_process - 1) as pool:
        while True:
            while queued < queued_limit and (chunk := next_chunk()):
                pending.append(pool.apply_async(_label_chunk, (chunk,)))
                queued += 1
            if not pending:
                return
            head = pending[0]
            if isinstance(head, list):
                yield from pending.popleft()
                continue
            if not head.ready() and len(pending) < held_limit and (chunk := next_chunk()):
                pending.append(list(labeler._label_serial(chunk)))
                continue
            pending.popleft()
            queued -= 1
            for mentions, error in head.get():
                result = LabelResult(mentions)
                result.error = error
                yield result
