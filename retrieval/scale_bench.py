"""Scale benchmarks: index build/recall/throughput/memory and selection time on embedding-like vectors.

Uniform random vectors make recall meaningless (every point is about equally far from every other), so
the synthetic vectors are clustered: ``n_clusters`` Gaussian centres, points = centre + isotropic noise,
L2-normalised, all from one seed.  Real embeddings can be given instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from radloop.retrieval.index import IndexConfig, IndexManager


def clustered_vectors(count: int, dim: int, *, n_clusters: int = 1000, noise: float = 0.6, seed: int = 0,
                      block: int = 100_000) -> np.ndarray:
    """Seeded, clustered, L2-normalised float32 vectors (count, dim), generated blockwise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    vectors = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, block):
        stop = min(count, start + block)
        rows = vectors[start:stop]
        rows[:] = rng.standard_normal((stop - start, dim), dtype=np.float32)
        rows *= noise
        rows += centers[rng.integers(0, n_clusters, stop - start)]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return vectors


def _timed(function: Callable, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_retrieval(vectors: np.ndarray, queries: np.ndarray, *, k: int = 10, config: IndexConfig | None = None,
                    single_queries: int = 2000, repeats: int = 3,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Build the index radloop chooses, then measure recall@k against exact search and throughput.

    Args:
        vectors: (N, D) database vectors.
        queries: (Q, D) query vectors (not in the database).
        k: neighbours per query.
        config: index configuration (automatic choice unless ``factory`` is set).
        single_queries: queries timed one at a time.
        repeats: timed passes of exact and batched search (the best is reported).
        progress: called with a short status line per stage.
    """
    import faiss

    say = progress or (lambda _message: None)
    count, dim = vectors.shape
    ids = [f"v{i}" for i in range(count)]
    say(f"building the index for {count:,} x {dim}")
    manager, build_s = _timed(IndexManager.build, vectors, ids, "bench", config, progress)
    say(f"{manager.factory} built in {build_s:.1f} s (memory {manager.memory_bytes() / 2**20:.0f} MB); "
        f"exact search of {len(queries)} queries")
    exact = faiss.IndexFlatIP(dim) if manager.config.metric == "cosine" else faiss.IndexFlatL2(dim)
    for start in range(0, count, 100_000):  # as the index sees them (cosine: L2-normalised), a block at a time
        exact.add(manager._prepare(vectors[start:start + 100_000]))
    prepared = manager._prepare(queries)
    # best of `repeats` timed passes (timeit's convention) for exact and approximate search alike
    exact_runs = [_timed(exact.search, prepared, k) for _ in range(repeats)]
    (_, truth), exact_s = exact_runs[0][0], min(seconds for _, seconds in exact_runs)
    del exact
    say(f"exact: {len(queries) / exact_s:.1f} queries/s")
    exact_index = manager.factory.startswith("Flat")  # small collections: radloop chooses exact search itself
    kind = "radloop's (exact) index" if exact_index else "approximate search"
    if exact_index:
        say(f"{count:,} vectors: radloop chooses an exact Flat index at this size, so its 'speed-up' over exact "
            "search is only overhead and noise; benchmark approximate search with --n 200000 or more")
    say(f"{kind}, batched")
    manager.search(queries, k)  # warm-up: pages the index and the re-ranking vectors in
    batched_runs = [_timed(manager.search, queries, k) for _ in range(repeats)]
    result, batched_s = batched_runs[0][0], min(seconds for _, seconds in batched_runs)
    say(f"batched: {len(queries) / batched_s:.1f} queries/s")
    label_of = {value: label for label, value in enumerate(ids)}
    found = [[label_of[value] for value in row] for row in result.ids]
    recall = float(np.mean([len(set(row) & set(expected)) / k for row, expected in zip(found, truth.tolist())]))
    say(f"{kind}, one query at a time")
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        singles = queries[:single_queries]
        start = time.perf_counter()
        for query in singles:
            manager.search(query, k)
        single_s = time.perf_counter() - start
    finally:
        faiss.omp_set_num_threads(threads)
    memory = manager.memory_bytes()
    return {
        "n": count, "dim": dim, "factory": manager.factory, "nprobe": getattr(
            faiss.try_extract_index_ivf(manager.index), "nprobe", None),
        "queries": len(queries), "recall_at_10" if k == 10 else f"recall_at_{k}": round(recall, 4),
        "qps_batched": round(len(queries) / batched_s, 1), "qps_single": round(len(singles) / single_s, 1),
        "qps_exact": round(len(queries) / exact_s, 1),
        "speedup_batched_vs_exact": round(exact_s / batched_s, 1),
        "memory_mb": round(memory / 2**20, 1), "flat_memory_mb": round(count * dim * 4 / 2**20, 1),
        "build_s": round(build_s, 2), "threads": threads, "repeats": repeats, "rerank": bool(manager.config.rerank),
        "calibration": manager.calibration, "exact_index": exact_index,
    }


#: Strata of the synthetic ``groups`` (as many as body regions in a typical musculoskeletal set).
N_GROUPS = 8
#: Share of samples whose synthetic report says nothing (weak label unknown).
UNKNOWN_WEAK_LABELS = 0.3


def synthetic_groups(vectors: np.ndarray, n_groups: int = N_GROUPS, *, seed: int = 0) -> np.ndarray:
    """(N,) int64 stratum per vector: the nearest of ``n_groups`` seeded random directions, so strata follow
    the geometry of the space (as body regions do) rather than being noise."""
    directions = np.random.default_rng(seed).standard_normal((vectors.shape[1], n_groups), dtype=np.float32)
    return (vectors @ directions).argmax(axis=1).astype(np.int64)


def synthetic_weak_labels(probabilities: np.ndarray, *, unknown: float = UNKNOWN_WEAK_LABELS,
                          seed: int = 0) -> np.ndarray:
    """(N,) float report weak labels: a seeded random class per sample, NaN (the report says nothing) for a
    share ``unknown`` of them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, probabilities.shape[1], len(probabilities)).astype(np.float64)
    labels[rng.random(len(labels)) < unknown] = np.nan
    return labels


def bench_selection(vectors: np.ndarray, budget: int, *, strategies: tuple[str, ...] = ("kcenter", "cluster_margin"),
                    n_classes: int = 5, labelled: int = 0, seed: int = 0, reference: bool = True,
                    groups: np.ndarray | None = None, weak_labels: np.ndarray | None = None,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Time strategies on ``vectors`` (N, D) and, in the same run, the plain NumPy k-center reference.

    Probabilities for uncertainty-based strategies come from a seeded random linear softmax model over the
    vectors (what a linear probe produces); ``labelled`` random samples are labelled beforehand.  Strategies
    that need strata (``stratified``) or report weak labels (``report_disagreement``) get ``groups`` /
    ``weak_labels`` when given, else synthetic ones (:func:`synthetic_groups`, :func:`synthetic_weak_labels`),
    built once outside the timings; ``result["synthetic"]`` says which were made up.  The reference is timed only
    with ``kcenter`` among ``strategies`` (``result["reference_skipped"]`` says so otherwise).
    """
    from radloop.retrieval.kcenter import kcenter_greedy_reference
    from radloop.retrieval.strategies import get_strategy

    say = progress or (lambda _message: None)
    rng = np.random.default_rng(seed)
    count, dim = vectors.shape
    mask = np.zeros(count, dtype=bool)
    mask[rng.choice(count, labelled, replace=False)] = True
    logits = vectors @ rng.standard_normal((dim, n_classes), dtype=np.float32) * 3.0
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    chosen = {name: get_strategy(name) for name in strategies}  # unknown names fail before any timing
    needed = {need for strategy in chosen.values() for need in strategy.needs}
    synthetic: dict[str, object] = {}
    if "groups" in needed and groups is None:
        groups = synthetic_groups(vectors, seed=seed)
        synthetic["groups"] = f"{N_GROUPS} strata (nearest of {N_GROUPS} random directions)"
    if "weak_labels" in needed and weak_labels is None:
        weak_labels = synthetic_weak_labels(probabilities, seed=seed)
        synthetic["weak_labels"] = f"random classes, {UNKNOWN_WEAK_LABELS:.0%} unknown"
    seconds, picks = {}, {}
    for name, strategy in chosen.items():
        say(f"{name}: selecting {budget} of {count:,}")
        extra = {key: value for key, value in (("groups", groups), ("weak_labels", weak_labels))
                 if key in strategy.needs}
        picks[name], seconds[name] = _timed(strategy.select, budget, embeddings=vectors, labeled_mask=mask,
                                            probabilities=probabilities, random_state=seed, **extra)
        say(f"{name}: {seconds[name]:.2f} s")
    result = {"n": count, "dim": dim, "budget": budget, "labelled": labelled,
              "seconds": {name: round(value, 4) for name, value in seconds.items()}}
    if synthetic:
        result["synthetic"] = synthetic
    if reference and "kcenter" not in picks:
        # its picks and speed-up compare with `kcenter` only: without it the reference (4 min at 1M) buys nothing
        result["reference_skipped"] = "kcenter is not among the strategies timed"
        say("reference: skipped (it is compared with kcenter, which is not among the strategies)")
    elif reference:
        say("reference: plain NumPy k-center greedy (one full pass per pick)")
        initial = np.flatnonzero(mask)
        first = picks["kcenter"][:1] if not len(initial) else np.empty(0, np.int64)
        # cold start: the strategy's seeded random first center, then the same greedy from there
        expected, result["reference_kcenter_s"] = _timed(kcenter_greedy_reference, vectors, budget - len(first),
                                                         np.concatenate([initial, first]))
        expected = np.concatenate([first, expected])
        say(f"reference: {result['reference_kcenter_s']:.2f} s")
        reference_s = result["reference_kcenter_s"]
        result["reference_kcenter_s"] = round(reference_s, 4)
        result["kcenter_same_picks"] = float(np.mean(picks["kcenter"] == expected))
        # from the unrounded times: at small sizes both round to 0.00 s
        result["kcenter_speedup"] = round(reference_s / max(seconds["kcenter"], 1e-9), 2)
    return result
