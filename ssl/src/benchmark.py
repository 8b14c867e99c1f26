"""``radloop bench ssl``: how good are an encoder's embeddings for probing and case search?

For each encoder, the same architecture randomly initialized, and raw pixels (64x64 thumbnails, PCA to 128):

- linear probe (standardized features, class-balanced logistic regression, L2 strength by 3-fold CV on the
  training labels) trained on 1%, 10%, 100% of the train-split labels (random stratified subsets,
  ``repeats`` of them below 100%), scored on the held-out val+test images: fracture present -> AUROC, body region -> balanced accuracy;
- kNN precision@10: for each held-out image, the share of its 10 nearest train-split images (cosine) with
  the same label (what case search and diversity selection rely on).

Splits are the catalog's study-level ``Study.split``; labels come from :func:`radloop.core.targets.image_targets`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from radloop.core.catalog import Catalog
from radloop.core.targets import ImageTargets, image_targets
from radloop.ssl.encoders import EncoderBundle, embed_images, random_encoder
from radloop.ssl.finetune_metrics import CLASSES_NOT_IN_TRUTH, balanced_accuracy
from radloop.ssl.pixels import UnreadableImage, read_image, resize_square

__all__ = ["benchmark_encoders", "knn_precision_at_k", "linear_probe_scores", "raw_pixel_features"]

logger = logging.getLogger(__name__)
EVALUATION_SPLITS = ("val", "test")


def _embed_paths(bundle: EncoderBundle, paths: Sequence[str], batch_size: int,
                 device: str | None = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Unnormalized embeddings (N, D) and a readable mask (N,); unreadable images get zero rows."""
    vectors = np.zeros((len(paths), bundle.embed_dim), dtype=np.float32)
    readable = np.ones(len(paths), dtype=bool)
    chunk = max(batch_size, 256)
    for start in range(0, len(paths), chunk):
        part = list(paths[start:start + chunk])
        try:
            vectors[start:start + len(part)] = embed_images(bundle, part, batch_size=batch_size, normalize=False,
                                                            device=device)
        except UnreadableImage:
            for offset, path in enumerate(part):
                try:
                    vectors[start + offset] = embed_images(bundle, [path], normalize=False, device=device)[0]
                except UnreadableImage as error:
                    logger.warning("skipping unreadable image: %s", error)
                    readable[start + offset] = False
    return vectors, readable


def raw_pixel_features(paths: Sequence[str], train_mask: np.ndarray, *, size: int = 64, components: int = 128,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pixel baseline: ``size`` x ``size`` thumbnails, PCA to ``components`` fitted on the train rows."""
    from sklearn.decomposition import PCA

    pixels = np.zeros((len(paths), size * size), dtype=np.float32)
    readable = np.ones(len(paths), dtype=bool)
    for row, path in enumerate(paths):
        try:
            image = torch.from_numpy(read_image(path))
        except UnreadableImage as error:
            logger.warning("skipping unreadable image: %s", error)
            readable[row] = False
            continue
        pixels[row] = resize_square(image, size).flatten().numpy()
    fit_rows = train_mask & readable
    pca = PCA(n_components=min(components, int(fit_rows.sum()), size * size), random_state=seed)
    pca.fit(pixels[fit_rows])
    return pca.transform(pixels).astype(np.float32), readable


def _subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Stratified random subset (indices) of ``fraction`` of the rows, at least one per class."""
    chosen = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        take = max(1, int(round(fraction * len(rows))))
        chosen.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


#: Inverse L2 strengths tried by the probe's inner cross-validation (on the training labels only).
PROBE_CS = (0.01, 0.03, 0.1, 0.3, 1.0)
#: Used when a label subset is too small for 3-fold cross-validation.
DEFAULT_C = 0.1


def _fit_probe(features: np.ndarray, labels: np.ndarray, metric: str, seed: int):
    """Standardize + logistic regression; C chosen by 3-fold CV on the given labels when each class has >= 3."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, counts = np.unique(labels, return_counts=True)
    if counts.min() >= 3:
        model = LogisticRegressionCV(Cs=list(PROBE_CS), cv=3, class_weight="balanced", max_iter=3000,
                                     scoring="roc_auc" if metric == "auroc" else "balanced_accuracy",
                                     random_state=seed)
    else:
        model = LogisticRegression(C=DEFAULT_C, class_weight="balanced", max_iter=3000)
    with warnings.catch_warnings():
        # scikit-learn 1.8 announces API changes of LogisticRegressionCV on every fit: noise in a benchmark
        warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
        # a CV fold's validation labels may miss a class the probe predicts: balanced accuracy is still defined
        warnings.filterwarnings("ignore", message=CLASSES_NOT_IN_TRUTH, category=UserWarning)
        return make_pipeline(StandardScaler(), model).fit(features, labels)


def linear_probe_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
                        metric: str, fractions: Sequence[float], repeats: int, seed: int) -> dict[str, dict[str, float]]:
    """Logistic-regression probe per label fraction: {fraction: {"mean", "std", "n_labels"}}.

    The L2 strength is picked by 3-fold cross-validation on the training labels of each subset (never on
    the held-out images), falling back to ``C = 0.1`` for subsets too small to split.
    """
    from sklearn.metrics import roc_auc_score

    results: dict[str, dict[str, float]] = {}
    for fraction in fractions:
        scores, sizes = [], []
        for repeat in range(1 if fraction >= 1.0 else repeats):
            rng = np.random.default_rng(seed + repeat)
            rows = np.arange(len(train_y)) if fraction >= 1.0 else _subset(train_y, fraction, rng)
            if len(np.unique(train_y[rows])) < 2:
                continue
            probe = _fit_probe(train_x[rows], train_y[rows], metric, seed)
            if metric == "auroc":
                scores.append(roc_auc_score(test_y, probe.predict_proba(test_x)[:, 1]))
            else:
                scores.append(balanced_accuracy(test_y, probe.predict(test_x)))
            sizes.append(len(rows))
        results[f"{fraction:g}"] = {"mean": round(float(np.mean(scores)), 4) if scores else float("nan"),
                                    "std": round(float(np.std(scores)), 4) if scores else float("nan"),
                                    "n_labels": int(np.mean(sizes)) if sizes else 0}
    return results


def knn_precision_at_k(database_x: np.ndarray, database_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray,
                       k: int = 10) -> float:
    """Mean share of each query's ``k`` nearest database rows (cosine) that carry the query's label."""
    database = database_x / np.linalg.norm(database_x, axis=1, keepdims=True).clip(1e-12)
    queries = query_x / np.linalg.norm(query_x, axis=1, keepdims=True).clip(1e-12)
    similarity = queries @ database.T
    neighbours = np.argpartition(-similarity, kth=min(k, len(database_y) - 1), axis=1)[:, :k]
    return round(float((database_y[neighbours] == query_y[:, None]).mean()), 4)


def _evaluate(features: np.ndarray, readable: np.ndarray, targets: list[ImageTargets], *, fractions: Sequence[float],
              repeats: int, seed: int) -> dict[str, Any]:
    split = np.array([t.split for t in targets])
    train = (split == "train") & readable
    held_out = np.isin(split, EVALUATION_SPLITS) & readable
    result: dict[str, Any] = {"probe": {}, "knn_precision_at_10": {}}
    tasks = {
        "fracture": (np.array([-1 if t.fracture is None else t.fracture for t in targets]), "auroc"),
        "body_region": (np.array([t.body_region or "" for t in targets]), "balanced_accuracy"),
    }
    for task, (labels, metric) in tasks.items():
        known = labels != (-1 if labels.dtype.kind in "iu" else "")
        rows_train, rows_test = train & known, held_out & known
        if rows_train.sum() < 2 or rows_test.sum() < 2:
            continue
        result["probe"][f"{task}_{metric}"] = linear_probe_scores(
            features[rows_train], labels[rows_train], features[rows_test], labels[rows_test], metric=metric,
            fractions=fractions, repeats=repeats, seed=seed)
        result["knn_precision_at_10"][task] = knn_precision_at_k(
            features[rows_train], labels[rows_train], features[rows_test], labels[rows_test])
    return result


def benchmark_encoders(catalog: Catalog, bundles: Sequence[EncoderBundle], *, fractions: Sequence[float] = (0.01, 0.1, 1.0),
                       repeats: int = 5, seed: int = 0, baselines: bool = True, batch_size: int = 64,
                       progress: bool = True, device: str | None = "cpu") -> dict[str, Any]:
    """Probe and kNN figures for every encoder (and its random-init twin, and raw pixels).

    ``device`` embeds the images there (``None``: CUDA when available); probes always fit on the CPU.

    Raises:
        ValueError: no held-out (val/test) or no train-split labelled images in the catalog.
    """
    from tqdm import tqdm

    targets = image_targets(catalog)
    splits = [t.split for t in targets]
    if "train" not in splits or not any(s in EVALUATION_SPLITS for s in splits):
        raise ValueError("bench ssl needs train-split images (labels) and val/test images (evaluation)")
    paths = [str(catalog.workspace.absolute(t.render_path)) for t in targets]
    candidates: list[tuple[str, EncoderBundle | None]] = [(b.version, b) for b in bundles]
    if baselines:
        seen = set()
        for bundle in bundles:
            config = bundle.config
            key = (config.timm_name, config.image_size, config.patch_size, config.pooling, config.flip_average)
            if key not in seen:
                seen.add(key)
                twin = random_encoder(config.timm_name, config.image_size, patch_size=config.patch_size,
                                      mean=config.mean, std=config.std, pooling=config.pooling,
                                      flip_average=config.flip_average, seed=seed,
                                      **config.model_kwargs)
                candidates.append((twin.version, twin))
        candidates.append(("raw_pixels_64_pca128", None))
    counts = {"train": splits.count("train"), "held_out": sum(s in EVALUATION_SPLITS for s in splits),
              "fracture_labelled": sum(t.fracture is not None for t in targets),
              "body_region_labelled": sum(bool(t.body_region) for t in targets)}
    results: dict[str, Any] = {"images": counts, "fractions": list(fractions), "repeats": repeats, "encoders": {}}
    for name, bundle in tqdm(candidates, desc="bench ssl", disable=not progress):
        started = time.time()
        if bundle is None:
            features, readable = raw_pixel_features(paths, np.array(splits) == "train", seed=seed)
            meta = {"method": "raw_pixels"}
        else:
            features, readable = _embed_paths(bundle, paths, batch_size, device)
            meta = {"method": bundle.config.method, "timm_name": bundle.config.timm_name,
                    "image_size": bundle.config.image_size, "embed_dim": bundle.embed_dim}
        logger.info("bench ssl: %s: %d images embedded in %.0f s; probing", name, len(paths), time.time() - started)
        evaluation = _evaluate(features, readable, targets, fractions=fractions, repeats=repeats, seed=seed)
        results["encoders"][name] = {**meta, **evaluation, "unreadable": int((~readable).sum()),
                                     "seconds": round(time.time() - started, 1)}
        logger.info("bench ssl: %s done in %.0f s", name, time.time() - started)
    return results
