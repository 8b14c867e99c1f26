"""Strategies that look at the embedding space: core-set k-center, TypiClust (cold start) and the
Cluster-Margin hybrid of uncertainty and diversity."""

from __future__ import annotations

import numpy as np

from radloop.retrieval.base import Interval, Options, SelectionInput, SelectionStrategy
from radloop.retrieval.kcenter import kcenter_greedy
from radloop.retrieval.uncertainty import RandomSelection, uncertainty_reason, uncertainty_scores


def kmeans_assign(vectors: np.ndarray, n_clusters: int, random_state: np.random.RandomState,
                  n_iter: int = 20) -> np.ndarray:
    """FAISS k-means (seeded); returns the cluster id (N,) of each row of ``vectors`` (N, D)."""
    import faiss

    n_clusters = max(1, min(int(n_clusters), len(vectors)))
    if n_clusters == 1:
        return np.zeros(len(vectors), dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kmeans = faiss.Kmeans(vectors.shape[1], n_clusters, niter=n_iter, seed=int(random_state.randint(2**31 - 1)),
                          verbose=False, max_points_per_centroid=256, min_points_per_centroid=1,
                          nredo=3 if len(vectors) * n_clusters * vectors.shape[1] <= 20_000_000 else 1)
    kmeans.train(vectors)
    _, assignment = kmeans.index.search(vectors, 1)
    return assignment[:, 0].astype(np.int64)


class KCenterSelection(SelectionStrategy):
    """Core-set greedy k-center (Sener & Savarese, ICLR 2018): each pick is the unlabelled sample
    farthest from every labelled or already-picked sample (exact, batched; see ``kcenter``).

    ``scores_``: each pick's distance to the nearest labelled or earlier-picked sample when it was picked
    (non-increasing: higher = picked earlier; a random first center at cold start scores like the second pick).

    Args:
        candidate_pool: points examined per batch of picks (>= 1; None: ``max(4096, 8 * budget)``).
    """

    name = "kcenter"
    needs = ("embeddings",)
    parameter_constraints = {"candidate_pool": Interval(1, allow_none=True)}

    def __init__(self, candidate_pool: int | None = None):
        self.candidate_pool = candidate_pool

    def _select(self, data: SelectionInput):
        candidates = np.zeros(data.n_samples, dtype=bool)
        candidates[data.pool] = True
        centers, first = data.labeled, np.empty(0, dtype=np.int64)
        if not len(centers):  # cold start: a seeded random first center, then greedy
            first = np.asarray([data.random_state.choice(data.pool)], dtype=np.int64)
            centers = first
        picks, radii = kcenter_greedy(data.embeddings, data.budget - len(first), centers, candidates,
                                      candidate_pool=self.candidate_pool)
        picks = np.concatenate([first, picks])
        reasons = ["random first center (nothing labelled yet)"] * len(first) + [
            f"distance to nearest labelled/picked {radius:.3f}" for radius in radii]
        # the random first center has no distance to anything: score it like the farthest pick (finite,
        # so that scores stay JSON/SQL friendly)
        radii = np.concatenate([np.full(len(first), radii.max() if len(radii) else 0.0, dtype=np.float32), radii])
        return picks, radii, reasons


def _typicality(vectors: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Inverse mean distance of each row to its ``n_neighbors`` nearest other rows (TypiClust)."""
    count = len(vectors)
    if count <= 1:
        return np.ones(count)
    neighbors = min(n_neighbors, count - 1)
    import faiss

    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    distances, _ = index.search(np.ascontiguousarray(vectors, dtype=np.float32), neighbors + 1)
    mean = np.sqrt(np.maximum(distances[:, 1:], 0.0)).mean(axis=1)
    return 1.0 / (mean + 1e-8)


class TypiClustSelection(SelectionStrategy):
    """TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022) for cold start.

    Clusters the embeddings into ``len(labelled) + budget`` clusters (at most ``max_clusters``); each pick
    goes to the cluster with the fewest labelled samples (ties: the larger cluster) and takes its most
    typical unlabelled sample (inverse mean distance to its ``n_neighbors`` nearest cluster mates).

    ``scores_``: the size of the cluster each pick came from (not a priority: picks are in the order above,
    clusters with fewer labels first).

    Args:
        max_clusters: cap on the number of k-means clusters (>= 1).
        n_neighbors: neighbours in the typicality estimate (>= 1).
        min_cluster_size: clusters smaller than this are used only when no larger one is left (on a small
            pool, where the mean cluster is about this small, the cut is half the mean cluster size) (>= 1).
    """

    name = "typiclust"
    needs = ("embeddings",)
    parameter_constraints = {"max_clusters": Interval(1), "n_neighbors": Interval(1), "min_cluster_size": Interval(1)}

    def __init__(self, max_clusters: int = 500, n_neighbors: int = 20, min_cluster_size: int = 5):
        self.max_clusters = max_clusters
        self.n_neighbors = n_neighbors
        self.min_cluster_size = min_cluster_size

    def _select(self, data: SelectionInput):
        count = min(data.budget, len(data.pool))
        n_clusters = min(len(data.labeled) + count, self.max_clusters, data.n_samples)
        assignment = kmeans_assign(data.embeddings, n_clusters, data.random_state)
        n_clusters = int(assignment.max()) + 1
        sizes = np.bincount(assignment, minlength=n_clusters)
        labelled_counts = np.bincount(assignment[data.labeled], minlength=n_clusters)
        # the paper drops clusters under 5 samples as outliers; when the budget is a large share of a small pool
        # the mean cluster is that small itself, and dropping them all left a few clusters picked over and over
        # (12 of 48 samples: 4 picks from each of 3 clusters); so only clusters under half the mean size count
        # as outliers then
        min_size = min(self.min_cluster_size, max(2, int(np.ceil(0.5 * data.n_samples / n_clusters))))
        unlabelled = np.zeros(data.n_samples, dtype=bool)
        unlabelled[data.pool] = True
        ranked: dict[int, list[int]] = {}
        picks, scores, reasons = [], [], []
        while len(picks) < count:
            remaining = np.bincount(assignment[unlabelled], minlength=n_clusters)
            usable = remaining > 0
            if (usable & (sizes >= min_size)).any():
                usable &= sizes >= min_size
            order = np.lexsort((-sizes, labelled_counts + np.where(usable, 0, 1 << 40)))
            cluster = int(order[0])
            if cluster not in ranked:
                members = np.flatnonzero(assignment == cluster)
                typicality = _typicality(data.embeddings[members], self.n_neighbors)
                ranked[cluster] = [int(members[i]) for i in np.argsort(-typicality, kind="stable")]
            pick = next(index for index in ranked[cluster] if unlabelled[index])
            unlabelled[pick] = False
            before = int(labelled_counts[cluster])
            labelled_counts[cluster] += 1
            picks.append(pick)
            scores.append(float(sizes[cluster]))
            where = f"cluster {cluster} of {n_clusters} (size {sizes[cluster]})"
            reasons.append(f"most typical unlabelled sample of {where}" if before == 0 else
                           f"most typical unlabelled sample of {where}, already holding {before} labelled: "
                           "every usable cluster is covered")
        return np.asarray(picks), np.asarray(scores), reasons


class ClusterMarginSelection(SelectionStrategy):
    """Hybrid of uncertainty and diversity after Cluster-Margin (Citovsky et al., NeurIPS 2021).

    Takes the ``candidate_factor * budget`` most uncertain unlabelled samples, clusters them (FAISS
    k-means, ``budget`` clusters) and picks round-robin over clusters from the smallest up, most uncertain
    first: uncertain samples, but never a batch of near-duplicates.  Without probabilities (cold start,
    no model yet) it picks the first batch with the ``cold_start`` strategy.

    ``scores_``: each pick's uncertainty (higher = more uncertain; picks are in round-robin order over the
    clusters, so scores are not sorted); at cold start, the cold-start strategy's scores.

    Args:
        candidate_factor: candidates per requested sample (>= 1).
        uncertainty: "margin", "least_confidence" or "entropy".
        cold_start: "typiclust", "kcenter" or "random" (the paper's seed set is uniform random).
    """

    name = "cluster_margin"
    needs = ("embeddings",)
    uses = ("probabilities",)
    COLD_STARTS = {"typiclust": TypiClustSelection, "kcenter": KCenterSelection, "random": RandomSelection}
    parameter_constraints = {"candidate_factor": Interval(1),
                             "uncertainty": Options(("margin", "least_confidence", "entropy")),
                             "cold_start": Options(tuple(COLD_STARTS))}

    def __init__(self, candidate_factor: int = 10, uncertainty: str = "margin", cold_start: str = "typiclust"):
        self.candidate_factor = candidate_factor
        self.uncertainty = uncertainty
        self.cold_start = cold_start

    def _select(self, data: SelectionInput):
        if data.probabilities is None:
            fallback = self.COLD_STARTS[self.cold_start]()
            picks, scores, reasons = fallback._select(data)
            return picks, scores, [f"cold start (no model): {reason}" for reason in reasons]
        count = min(data.budget, len(data.pool))
        uncertainty = uncertainty_scores(data.probabilities[data.pool], self.uncertainty)
        jitter = data.random_state.random_sample(len(data.pool))
        order = np.lexsort((jitter, -uncertainty))[:max(count, int(self.candidate_factor) * count)]
        candidates, candidate_scores = data.pool[order], uncertainty[order]
        assignment = kmeans_assign(data.embeddings[candidates], count, data.random_state, n_iter=10)
        sizes = np.bincount(assignment)
        queues = [list(np.flatnonzero(assignment == cluster)) for cluster in np.argsort(sizes, kind="stable")]
        picks, scores, reasons = [], [], []
        while len(picks) < count:
            for queue in queues:
                if queue and len(picks) < count:
                    position = queue.pop(0)  # candidates are sorted by uncertainty: most uncertain first
                    picks.append(int(candidates[position]))
                    scores.append(float(candidate_scores[position]))
                    reasons.append(f"{uncertainty_reason(self.uncertainty, candidate_scores[position])}, "
                                   f"cluster {int(assignment[position])}")
        return np.asarray(picks), np.asarray(scores), reasons
