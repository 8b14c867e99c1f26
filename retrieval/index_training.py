"""Training a FAISS index without FAISS's raw C++ warnings on stderr.

FAISS's k-means (an IVF index's coarse cells, a PQ / OPQ codebook) prints ``WARNING clustering N points to K
centroids: please provide at least M training points`` straight to file descriptor 2 whenever N is below
``min_points_per_centroid`` x K, once per clustering (an OPQ index repeats it hundreds of times).  Neither
``verbose`` nor Python's ``sys.stderr`` reaches it, so :func:`train_index` points descriptor 2 at a temporary file
while FAISS trains (only when the training set is small enough for a warning: descriptor 2 is the whole
process's, see :func:`train_index`), drops those lines, writes anything else back, and returns what they meant as
one radloop line (:func:`clustering_note`), which the caller logs.

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
from contextlib import contextmanager, nullcontext

import numpy as np

from radloop.retrieval.index_store import faiss_reason

__all__ = ["CLUSTERING_WARNING", "MIN_POINTS_PER_CENTROID", "captured_clustering_warnings", "clustering_note",
           "largest_clustering", "train_index"]

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


#: ``faiss.ClusteringParameters().min_points_per_centroid``: a k-means into K centroids from fewer than this x K
#: points prints :data:`CLUSTERING_WARNING` (FAISS's only use of it).
MIN_POINTS_PER_CENTROID = 39
#: Transforms and index types whose training runs no k-means (the others: IVF cells, PQ / OPQ / additive codes).
_NO_KMEANS = ("PCAMatrix", "RandomRotationMatrix", "NormalizationTransform", "CenteringTransform",
              "RemapDimensionsTransform", "ITQTransform", "ITQMatrix", "IndexFlat", "IndexFlatIP", "IndexFlatL2",
              "IndexScalarQuantizer", "IndexPreTransform", "IndexIDMap", "IndexIDMap2", "IndexRefine",
              "IndexRefineFlat", "IndexHNSWFlat", "IndexHNSWSQ", "IndexLSH")


def largest_clustering(index) -> int | None:
    """The most centroids any k-means run by ``index.train`` asks for: the IVF cells, a PQ codebook (2^nbits),
    OPQ's 8-bit codebook, an additive quantizer's largest; None when a part needing training is none of these
    (it may cluster: assume the worst)."""
    import faiss

    largest, parts = 0, list(_coded_parts(index))
    for part in list(parts):
        refine = getattr(part, "refine_index", None)
        if isinstance(refine, faiss.Index):
            parts += _coded_parts(refine)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        largest = max(largest, int(ivf.nlist))
    for part in parts:
        pq = getattr(part, "pq", None)
        quantizer = next((getattr(part, name) for name in ("rq", "lsq", "aq") if hasattr(part, name)), None)
        if isinstance(pq, faiss.ProductQuantizer):
            largest = max(largest, int(pq.ksub))
        elif quantizer is not None and hasattr(quantizer, "nbits"):
            largest = max(largest, 2 ** int(max(faiss.vector_to_array(quantizer.nbits), default=8)))
        elif not (part.is_trained or type(part).__name__ in _NO_KMEANS or part is ivf
                  or isinstance(part, faiss.IndexIVF)):
            return None
        if isinstance(part, faiss.IndexPreTransform):
            for position in range(part.chain.size()):
                transform = faiss.downcast_VectorTransform(part.chain.at(position))
                if isinstance(transform, faiss.OPQMatrix):  # its own PQ: 8 bits unless given one
                    largest = max(largest, 256, int(transform.pq.ksub) if transform.pq is not None else 0)
                elif not (transform.is_trained or type(transform).__name__ in _NO_KMEANS):
                    return None
    return largest


def train_index(index, training: np.ndarray, factory: str) -> str | None:
    """``index.train(training)`` without polysemous training and with FAISS's clustering warnings kept off
    stderr; returns :func:`clustering_note` for them (None when the training set was large enough).

    Descriptor 2 is the whole process's: while it is captured, every other thread's stderr (the Streamlit
    server's, another request's) waits in the capture too.  So it is captured only when a warning can come at
    all: a training set smaller than :data:`MIN_POINTS_PER_CENTROID` x :func:`largest_clustering` (a forced IVF /
    PQ factory on a small set, which trains in about a second).  radloop's own choices (``Flat`` up to
    ``exact_max`` vectors, ~4 sqrt(N) IVF cells beyond) never need it, so the long trainings of a large index
    leave stderr alone.

    Raises:
        ValueError: FAISS refused to train (too few vectors for a codebook, ...): one line, its reason.
    """
    for part in _coded_parts(index):
        if hasattr(part, "do_polysemous_training"):  # IndexPQ, IndexIVFPQ
            part.do_polysemous_training = False
    largest = largest_clustering(index)
    may_warn = largest is None or len(training) < MIN_POINTS_PER_CENTROID * largest
    with captured_clustering_warnings() if may_warn else nullcontext([]) as warnings:
        try:
            index.train(training)
        except RuntimeError as error:  # e.g. a PQ8 codebook (256 centroids) from fewer than 256 vectors
            raise ValueError(f"the {factory} index cannot be trained on {len(training):,} vectors: "
                             f"{faiss_reason(error)}; exact search (--factory Flat) needs no training") from None
    return clustering_note(factory, len(training), warnings)
