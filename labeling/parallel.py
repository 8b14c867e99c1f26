"""Label reports in worker processes, streaming with a bounded number of chunks in flight.

medspacy rule objects do not pickle, so every worker builds its own pipeline once (pool initializer)
and only texts and plain result records cross process boundaries.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from itertools import islice
from typing import Iterable, Iterator

_WORKER_LABELER = None  # one per worker process, built by _init_worker


def _init_worker(max_chars: int, batch_size: int) -> None:
    global _WORKER_LABELER
    from .labeler import ReportLabeler

    _WORKER_LABELER = ReportLabeler(max_chars=max_chars, batch_size=batch_size)


def _label_chunk(texts: list) -> list[tuple[list, str | None]]:
    return [(list(result), result.error) for result in _WORKER_LABELER._label_serial(texts)]


def label_parallel(texts: Iterable, *, n_process: int, batch_size: int, max_chars: int,
                   chunk_size: int | None = None) -> Iterator:
    """Yield ``LabelResult`` per text, in input order, from ``n_process`` workers.

    At most ``2 * n_process`` chunks are queued, so memory stays flat however long ``texts`` is.
    """
    from .labeler import LabelResult

    chunk_size = chunk_size or batch_size
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    iterator = iter(texts)
    with context.Pool(n_process, initializer=_init_worker, initargs=(max_chars, batch_size)) as pool:
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
