"""Label reports in worker processes, streaming with a bounded number of chunks in flight.

medspacy rule objects do not pickle.  Where the platform forks, workers inherit the parent's
ready-built labeller (copy-on-write: no rule loading or pipeline building per worker, which
would cost seconds); elsewhere (spawn) every worker builds its own once, in the pool initializer.
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


def label_parallel(labeler: ReportLabeler, texts: Iterable, *, n_process: int,
                   chunk_size: int | None = None) -> Iterator[LabelResult]:
    """Yield ``LabelResult`` per text, in input order, from ``n_process`` workers running ``labeler``.

    At most ``2 * n_process`` chunks are queued, so memory stays flat however long ``texts`` is.
    """
    global _WORKER_LABELER
    from .labeler import LabelResult

    chunk_size = chunk_size or CHUNK_REPORTS
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    iterator = iter(texts)
    if fork:
        _WORKER_LABELER = labeler  # forked workers start with it; the pool initializer then has nothing to do
        # the workers' garbage collector then leaves the inherited objects alone (no copy-on-write of
        # their pages, no scanning a million rule and vocabulary objects); the parent unfreezes at once
        gc.freeze()
    try:
        pool = context.Pool(n_process, initializer=_init_worker, initargs=(labeler.max_chars, labeler.batch_size))
    finally:
        _WORKER_LABELER = None
        if fork:
            gc.unfreeze()
    with pool:
        pending: deque = deque()

        def submit() -> bool:
            chunk = list(islice(iterator, chunk_size))
            if chunk:
                pending.append(pool.apply_async(_label_chunk, (chunk,)))
            return bool(chunk)

        while len(pending) < 2 * n_process and submit():
            pass
        while pending:
            for mentions, error in pending.popleft().get():
                result = LabelResult(mentions)
                result.error = error
                yield result
            submit()
