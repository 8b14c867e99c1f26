"""Training a FAISS index without FAISS's raw C++ warnings on stderr.

FAISS's k-means (an IVF index's coarse cells, a PQ / OPQ codebook) prints ``WARNING clustering N points to K
centroids: please provide at least M training points`` straight to file descriptor 2 whenever N is below
``min_points_per_centroid`` x K, once per clustering (an OPQ index repeats it hundreds of times).  Neither
``verbose`` nor Python's ``sys.stderr`` reaches it, so :func:`train_index` points descriptor 2 at a temporary file
while FAISS trains, drops those lines, writes anything else back, and returns what they meant as one radloop line
(:func:`clustering_note`), which the caller logs.

:func:`train_index` also turns off the polysemous training that ``index_factory`` switches on for 8-bit PQ codes
(``PQ8``, ``IVF...,PQ16``): it renumbers each sub-quantiser's centroids (about 3 s each, minutes for a 512-d
vector's 64 sub-quantisers) for polysemous filtering, which radloop's searches never use (``polysemous_ht`` stays
0), and the numbering does not change a distance.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from radloop.retrieval.index_store import faiss_reason

__all__ = ["CLUSTERING_WARNING", "captured_clustering_warnings", "clustering_note", "train_index"]

#: The line FAISS's ``Clustering::train`` prints when it has fewer points than ``min_points_per_centroid`` x K.
CLUSTERING_WARNING = re.compile(r"WARNING clustering (\d+) points to (\d+) centroids: "
                                r"please provide at least (\d+) training points")

# descriptor 2 belongs to the whole process: two trainings at once must not swap each other's saved descriptor
_CAPTURE_LOCK = threading.RLock()


@contextmanager
def captured_clustering_warnings() -> Iterator[list[tuple[int, int, int]]]:
    """Capture descriptor 2 for the block; yields a list that receives ``(points, centroids, needed)`` of each
    FAISS clustering warning when the block ends.  Every other line is written back to stderr, also when the
    block raises."""
    found: list[tuple[int, int, int]] = []
    with _CAPTURE_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield found
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            others = []
            for line in sink.read().decode("utf-8", errors="replace").splitlines():
                match = CLUSTERING_WARNING.search(line)
                if match:
                    found.append((int(match.group(1)), int(match.group(2)), int(match.group(3))))
                else:
                    others.append(line)
            if others:
                sys.stderr.write("\n".join(others) + "\n")
                sys.stderr.flush()


def clustering_note(factory: str, vectors: int, warnings: list[tuple[int, int, int]]) -> str | None:
    """One line that says what FAISS's clustering warnings mean for an index trained on ``vectors`` vectors
    (None when there were none)."""
    if not warnings:
        return None
    points, centroids, needed = max(warnings, key=lambda warning: warning[2])
    return (f"the {factory} index was trained on {vectors:,} vectors, few for its k-means ({points:,} points into "
            f"{centroids:,} centroids, where FAISS asks for {needed:,}): it works, but its cells or codes fit these "
            f"vectors loosely and recall may drop; for a set this small the exact index (--factory Flat, radloop's "
            f"choice up to exact_max vectors) is as fast and exact")


def _coded_parts(index) -> list:
    """The parts of ``index`` that may hold PQ codes: itself, what it wraps (a transform, an id map, a refine
    stage's base) and its inverted file."""
    import faiss

    parts, current = [], faiss.downcast_index(index)
    while current is not None:
        parts.append(current)
        inner = getattr(current, "base_index", None) or getattr(current, "index", None)
        current = faiss.downcast_index(inner) if isinstance(inner, faiss.Index) else None
    ivf = faiss.try_extract_index_ivf(index)
    return parts + ([faiss.downcast_index(ivf)] if ivf is not None else [])


def train_index(index, training: np.ndarray, factory: str) -> str | None:
    """``index.train(training)`` without polysemous training and with FAISS's clustering warnings kept off
    stderr; returns :func:`clustering_note` for them (None when the training set was large enough).

    Raises:
        ValueError: FAISS refused to train (too few vectors for a codebook, ...): one line, its reason.
    """
    for part in _coded_parts(index):
        if hasattr(part, "do_polysemous_training"):  # IndexPQ, IndexIVFPQ
            part.do_polysemous_training = False
    with captured_clustering_warnings() as warnings:
        try:
            index.train(training)
        except RuntimeError as error:  # e.g. a PQ8 codebook (256 centroids) from fewer than 256 vectors
            raise ValueError(f"the {factory} index cannot be trained on {len(training):,} vectors: "
                             f"{faiss_reason(error)}; exact search (--factory Flat) needs no training") from None
    return clustering_note(factory, len(training), warnings)
