"""Core-set greedy k-center selection (Sener & Savarese, "Active Learning for Convolutional Neural
Networks: A Core-Set Approach", ICLR 2018), exact, with lazy distance updates in batches of picks.

The greedy step picks the pool point farthest from every current center.  The plain algorithm makes one
full distance pass over the ``N`` points per pick (:func:`kcenter_greedy_reference`), bound by memory
bandwidth.  :func:`kcenter_greedy` makes the same picks with far less work.  Distances to the nearest
center only shrink as centers are added, so a value computed against the first ``e`` centers is an upper
bound of the current one.  Each batch takes the ``T`` points with the largest (possibly stale) values as
candidates and brings only them up to date; every other point is then at most ``tau``, the largest stale
value outside the candidates.  As long as the best candidate (updated among the candidates only, ``T x D``
per pick) is strictly above ``tau`` it is the global farthest point: exactly the reference's pick.  When
none is, the candidate pool grows fourfold (more points brought up to date) until one is, or until it
holds every point (then the exact global argmax is taken).

Approximation bound: none in exact arithmetic.  In float32, distances computed by a matrix product and by
a matrix-vector product can differ in the last bits, so two points whose distances tie to ~1e-6 (relative)
may be taken in the other order; the covering radius then differs from the reference's by at most that.
The initial assignment to many already-labelled centers is a FAISS exact 1-NN search.
"""

from __future__ import annotations

import numpy as np

#: Rows per block in a refresh pass (bounds the temporary (rows, batch) distance matrix).
_BLOCK_ROWS = 65536


def _squared_distances(vectors: np.ndarray, norms: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from ``center`` (D,) to ``vectors`` (M, D), clipped at 0."""
    distances = norms - 2.0 * (vectors @ center)
    distances += float(center @ center)
    np.maximum(distances, 0.0, out=distances)
    return distances


def _refresh(vectors: np.ndarray, norms: np.ndarray, best: np.ndarray, centers: np.ndarray) -> None:
    """``best = min(best, squared distance to any of centers (B, D))`` in place, blockwise."""
    center_norms = np.einsum("ij,ij->i", centers, centers)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, len(vectors))
        distances = vectors[start:stop] @ centers.T
        distances *= -2.0
        distances += norms[start:stop, None]
        distances += center_norms[None, :]
        np.minimum(best[start:stop], np.maximum(distances.min(axis=1), 0.0), out=best[start:stop])


def _refresh_rows(vectors: np.ndarray, norms: np.ndarray, best: np.ndarray, rows: np.ndarray,
                  centers: np.ndarray) -> None:
    """``best[rows] = min(best[rows], squared distance to any of centers)`` in place."""
    for start in range(0, len(rows), _BLOCK_ROWS):
        block = rows[start:start + _BLOCK_ROWS]
        values = best[block]
        _refresh(vectors[block], norms[block], values, centers)
        best[block] = values


def _initial_distances(vectors: np.ndarray, norms: np.ndarray, initial_centers: np.ndarray) -> np.ndarray:
    """Squared distance of every point to its nearest initial center (inf without centers)."""
    best = np.full(len(vectors), np.inf, dtype=np.float32)
    if len(initial_centers) == 0:
        return best
    if len(initial_centers) <= 256:
        _refresh(vectors, norms, best, vectors[initial_centers])
    else:
        import faiss

        index = faiss.IndexFlatL2(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors[initial_centers]))
        distances, _ = index.search(vectors, 1)
        best = np.maximum(distances[:, 0], 0.0).astype(np.float32)
    best[initial_centers] = 0.0
    return best


def _center_indices(initial_centers, count: int) -> np.ndarray:
    """``initial_centers`` (indices, or a boolean mask of length ``count``) as int64 indices.

    Raises:
        ValueError: a boolean mask of another length, non-integer values, or indices outside [0, count).
    """
    if initial_centers is None:
        return np.empty(0, dtype=np.int64)
    values = np.asarray(initial_centers)
    if values.dtype == bool:
        if values.shape != (count,):
            raise ValueError(f"initial_centers as a boolean mask must have shape ({count},), got {values.shape}")
        return np.flatnonzero(values)
    values = values.reshape(-1)
    if len(values) and values.dtype.kind not in "iu":
        raise ValueError(f"initial_centers must be integer indices or a boolean mask of length {count}, "
                         f"got dtype {values.dtype}")
    values = values.astype(np.int64)
    if len(values) and (values.min() < 0 or values.max() >= count):
        raise ValueError(f"initial_centers must be indices in [0, {count}), got {values.min()} .. {values.max()}")
    return values


def _candidate_mask(candidates, count: int) -> np.ndarray:
    if candidates is None:
        return np.ones(count, dtype=bool)
    mask = np.asarray(candidates)
    if mask.dtype != bool or mask.shape != (count,):
        raise ValueError(f"candidates must be a boolean mask of shape ({count},), got dtype {mask.dtype}, "
                         f"shape {mask.shape}")
    return mask.copy()


def kcenter_greedy(vectors: np.ndarray, budget: int, initial_centers: np.ndarray | None = None,
                   candidates: np.ndarray | None = None, *,
                   candidate_pool: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center picks, exact, with one pool pass per batch of picks.

    Unlike :func:`kcenter_greedy_reference`, which returns the picks alone, this returns a tuple
    ``(picks, radii)``: unpack it (``picks, _ = kcenter_greedy(...)``).

    Args:
        vectors: float32 array (N, D).
        budget: number of picks (fewer when the candidates run out).
        initial_centers: indices (M,) of points that are centers already (the labelled set), or a boolean
            mask (N,) of them.
        candidates: boolean mask (N,) of points that may be picked (default: all but the centers).
        candidate_pool: points examined per batch (default ``max(4096, 8 * budget)``).

    Returns:
        ``(picks, radii)``: int64 indices (B,) in pick order and float32 radii (B,): each pick's distance
        (not squared) to the nearest center at the time it was picked (the core-set covering radius).

    Raises:
        ValueError: ``initial_centers`` or ``candidates`` of the wrong kind, length or range.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    initial = _center_indices(initial_centers, len(vectors))
    allowed = _candidate_mask(candidates, len(vectors))
    allowed[initial] = False
    budget = min(int(budget), int(allowed.sum()))
    norms = np.einsum("ij,ij->i", vectors, vectors)
    # best[i]: squared distance to the nearest of the first epoch[i] picks (an upper bound of the true
    # distance to all centers; exact when epoch[i] == len(picks))
    best = _initial_distances(vectors, norms, initial)
    epoch = np.zeros(len(vectors), dtype=np.int64)
    pool_size = candidate_pool or max(4096, 8 * budget)
    picks: list[int] = []
    radii: list[float] = []

    def bring_up_to_date(rows: np.ndarray) -> None:
        stale = rows[epoch[rows] < len(picks)]
        if len(stale):
            _refresh_rows(vectors, norms, best, stale, vectors[picks[int(epoch[stale].min()):]])
            epoch[stale] = len(picks)

    growth = 1  # candidate pool multiplier: grows while stale bounds hide the farthest point
    while len(picks) < budget:
        masked = np.where(allowed, best, -1.0)
        available = int(allowed.sum())
        batch: list[int] = []
        size = min(pool_size * growth, available)
        if np.isfinite(masked).all() and available > 1:
            if size < available:
                order = np.argpartition(-masked, size)
                chosen, tau = order[:size], float(masked[order[size:]].max())  # stale: an upper bound
            else:
                chosen, tau = np.flatnonzero(allowed), -np.inf
            chosen = np.sort(chosen)  # ascending ids: argmax ties resolve as in the reference
            bring_up_to_date(chosen)
            pool_vectors, pool_norms = vectors[chosen], norms[chosen]
            values = best[chosen].copy()
            while len(picks) < budget:
                position = int(np.argmax(values))
                if values[position] <= tau or values[position] < 0:
                    break
                pick = int(chosen[position])
                picks.append(pick)
                radii.append(float(np.sqrt(values[position])))
                batch.append(pick)
                np.minimum(values, _squared_distances(pool_vectors, pool_norms, vectors[pick]), out=values)
                values[position] = -1.0
                alive = values > tau
                if alive.sum() * 2 < len(values):  # retire candidates that can no longer win this batch
                    best[chosen[~alive]] = np.maximum(values[~alive], 0.0)
                    epoch[chosen[~alive]] = len(picks)
                    chosen, pool_vectors, pool_norms = chosen[alive], pool_vectors[alive], pool_norms[alive]
                    values = values[alive]
                    if not len(values):
                        break
            best[chosen] = np.maximum(values, 0.0)
            epoch[chosen] = len(picks)
            if not batch and size < available:  # look deeper before falling back to a full pass
                growth *= 4
                continue
            growth = 1
        if not batch:
            # no candidate provably ahead (stale bounds, ties, or no center yet): exact global argmax
            bring_up_to_date(np.flatnonzero(allowed))
            masked = np.where(allowed, best, -1.0)
            pick = int(np.argmax(masked))
            radii.append(float(np.sqrt(best[pick])))
            picks.append(pick)
            batch = [pick]
        allowed[batch] = False
        best[batch] = 0.0
        epoch[batch] = len(picks)
    return np.asarray(picks, dtype=np.int64), np.asarray(radii, dtype=np.float32)


def kcenter_greedy_reference(vectors: np.ndarray, budget: int,
                             initial_centers: np.ndarray | None = None) -> np.ndarray:
    """Plain NumPy greedy k-center: one full distance pass over the pool per pick (the slow reference).

    Returns the picks alone, not the ``(picks, radii)`` tuple of :func:`kcenter_greedy`: compare
    ``kcenter_greedy(...)[0]`` with it.

    Args:
        vectors: float32 array (N, D).
        budget: number of picks.
        initial_centers: indices of points that are centers already, or a boolean mask (N,) of them.

    Returns:
        int64 indices (B,) in pick order (only the indices).

    Raises:
        ValueError: ``initial_centers`` of the wrong kind, length or range.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.einsum("ij,ij->i", vectors, vectors)
    initial = _center_indices(initial_centers, len(vectors))
    best = np.full(len(vectors), np.inf, dtype=np.float32)
    for index in initial:
        best = np.minimum(best, _squared_distances(vectors, norms, vectors[index]))
    taken = np.zeros(len(vectors), dtype=bool)
    taken[initial] = True
    picks = []
    for _ in range(min(int(budget), int((~taken).sum()))):
        pick = int(np.argmax(np.where(taken, -1.0, best)))
        picks.append(pick)
        taken[pick] = True
        best = np.minimum(best, _squared_distances(vectors, norms, vectors[pick]))
    return np.asarray(picks, dtype=np.int64)
