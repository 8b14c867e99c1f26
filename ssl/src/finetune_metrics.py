"""Held-out metrics: AUROC / average precision per finding, calibration error, region accuracy, box mAP@0.5.

Classification metrics come from scikit-learn, box mAP from torchmetrics (COCO-style, IoU 0.5).  A metric
that is undefined on the data (no held-out labels, or one class only) is reported as ``None`` and explained
in ``notes`` rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radloop.core.metrics import CLASSES_NOT_IN_TRUTH, balanced_accuracy  # re-exported (benchmark, tests)
from radloop.core.records import Box

__all__ = ["CLASSES_NOT_IN_TRUTH", "balanced_accuracy", "box_map50", "classification_metrics", "expected_calibration_error", "region_metrics"]


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width bins (Guo et al. 2017), binary labels pooled.

    Args:
        labels: (M,) 0/1.
        probabilities: (M,) predicted probability of 1.
    """
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(probabilities, edges[1:-1], right=True), 0, n_bins - 1)
    error = 0.0
    for index in range(n_bins):
        members = bins == index
        if members.any():
            error += members.mean() * abs(labels[members].mean() - probabilities[members].mean())
    return float(error)


def classification_metrics(targets: np.ndarray, probabilities: np.ndarray, findings: Sequence[str]) -> dict:
    """``auroc.<finding>``, ``ap.<finding>``, ``prevalence.<finding>``, ``n.<finding>``, pooled ``ece``.

    Args:
        targets: (N, T) 1 / 0 / -1 (unknown rows are skipped per finding).
        probabilities: (N, T) predicted probabilities, same column order as ``findings``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    targets = np.asarray(targets)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    result: dict = {}
    notes: list[str] = []
    pooled_labels, pooled_probabilities = [], []
    for column, finding in enumerate(findings):
        known = targets[:, column] >= 0
        labels, scores = targets[known, column], probabilities[known, column]
        result[f"n.{finding}"] = int(known.sum())
        result[f"prevalence.{finding}"] = float(labels.mean()) if labels.size else None
        pooled_labels.append(labels)
        pooled_probabilities.append(scores)
        if labels.size == 0 or labels.min() == labels.max():
            result[f"auroc.{finding}"] = result[f"ap.{finding}"] = None
            if labels.size == 0:
                notes.append(f"{finding}: no labelled held-out images (0 of {len(targets)}); AUROC/AP undefined")
            else:
                value = "present" if labels[0] == 1 else "absent"
                notes.append(f"{finding}: held-out labels have one class only (all {labels.size} images {value}); "
                             "AUROC/AP undefined")
            continue
        result[f"auroc.{finding}"] = float(roc_auc_score(labels, scores))
        result[f"ap.{finding}"] = float(average_precision_score(labels, scores))
    all_labels = np.concatenate(pooled_labels) if pooled_labels else np.zeros(0)
    all_probabilities = np.concatenate(pooled_probabilities) if pooled_probabilities else np.zeros(0)
    result["ece"] = expected_calibration_error(all_labels, all_probabilities) if all_labels.size else None
    if notes:
        result["notes"] = notes
    return result


def region_metrics(true_regions: Sequence[str | None], predicted: Sequence[str | None]) -> dict:
    """Body-region balanced accuracy and accuracy over images whose region is known."""
    pairs = [(t, p) for t, p in zip(true_regions, predicted) if t is not None]
    if not pairs:
        return {"region_balanced_accuracy": None, "region_accuracy": None, "n.region": 0}
    truth = [t for t, _ in pairs]
    guess = [p if p is not None else "<none>" for _, p in pairs]
    accuracy = float(np.mean([t == p for t, p in zip(truth, guess)]))
    # one region in the truth: the mean recall is that region's recall, the accuracy; scikit-learn would warn
    # about its confusion matrix's shape when the predictions name that region only, too
    balanced = accuracy if len(set(truth)) == 1 else balanced_accuracy(truth, guess)
    return {"region_balanced_accuracy": balanced, "region_accuracy": accuracy, "n.region": len(pairs)}


def _to_xyxy(boxes: Sequence[Box], labels: list[str]):
    import torch

    kept = [box for box in boxes if box.label in labels]
    coordinates = torch.tensor([[b.x, b.y, b.x + b.w, b.y + b.h] for b in kept], dtype=torch.float32)
    return (coordinates.reshape(-1, 4), torch.tensor([labels.index(b.label) for b in kept], dtype=torch.int64),
            torch.tensor([b.score if b.score is not None else 1.0 for b in kept], dtype=torch.float32))


def box_map50(predictions: Sequence[Sequence[Box]], ground_truth: Sequence[Sequence[Box]],
              labels: Sequence[str] = ("fracture",)) -> dict:
    """COCO-style mean average precision at IoU 0.5 (``map50``) and recall at 100 detections (``mar100``).

    Images without ground-truth boxes count (their detections are false positives).
    """
    from torchmetrics.detection import MeanAveragePrecision

    labels = list(labels)
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5],
                                  class_metrics=False, backend="pycocotools")
    preds, targets = [], []
    for predicted, truth in zip(predictions, ground_truth):
        boxes, classes, scores = _to_xyxy(predicted, labels)
        preds.append({"boxes": boxes, "labels": classes, "scores": scores})
        boxes, classes, _ = _to_xyxy(truth, labels)
        targets.append({"boxes": boxes, "labels": classes})
    n_truth = int(sum(len(t["boxes"]) for t in targets))
    if n_truth == 0:
        return {"map50": None, "mar100": None, "n_boxes": 0,
                "notes": ["no ground-truth boxes in the held-out images; mAP undefined"]}
    metric.update(preds, targets)
    values = metric.compute()
    return {"map50": float(values["map"]), "mar100": float(values["mar_100"]), "n_boxes": n_truth}
