"""Linear probe on frozen encoder embeddings: calibrated multi-label findings + body region.

Embeddings are centred and scaled to unit RMS coordinate (L2-normalised embeddings have tiny coordinates that
would otherwise make any fixed ``C`` over-regularise).  One L2-regularised logistic
regression per finding (class-balanced weights, so rare findings are not
ignored), followed by Platt scaling fitted on cross-validated decision values so that the reported
probabilities are calibrated despite the re-weighting (Platt 1999; Niculescu-Mizil & Caruana 2005).  The
calibration never reverses the probe's ranking: where the cross-validated values carry no signal (a fitted slope
at or below zero, common with a few dozen labels and a weak encoder), the probabilities fall back to the labelled
share of the finding, ordered by the logits (slope :data:`MIN_PLATT_SLOPE`).  Body
region is a multinomial logistic regression.  The learned state is plain arrays, saved as safetensors +
JSON (no pickle) and applied with numpy at prediction time (microseconds per image).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

PROBE_WEIGHTS = "probe.safetensors"
PROBE_CONFIG = "probe.json"
#: Smallest Platt slope: a fitted slope at or below zero would turn the probe's ranking upside down.
MIN_PLATT_SLOPE = 1e-3

__all__ = ["LinearProbe", "ProbeError"]


class ProbeError(ValueError):
    """Training data a probe cannot learn from (no labels, a single class everywhere, bad shapes)."""


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -60.0, 60.0)))


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class LinearProbe:
    """Calibrated logistic-regression probe (scikit-learn estimator conventions).

    Args:
        C: inverse L2 regularisation strength.
        class_weight: ``"balanced"`` or None (class imbalance handling for each finding).
        calibration_folds: folds for the cross-validated Platt scaling; 0 disables calibration.
        max_iter: solver iterations.
        random_state: seed for the calibration folds.

    Attributes (after ``fit``):
        findings_: findings that were trained (both classes present).
        skipped_: finding -> reason for findings that could not be trained.
        mean_, scale_: (D,) standardisation of the embeddings.
        coef_: (T, D) float32 weights on standardised embeddings; ``intercept_``: (T,); ``calibration_``: (T, 2) Platt (a, b).
        regions_: body-region names (empty when no region labels); ``region_coef_`` (R, D),
        ``region_intercept_`` (R,).
    """

    def __init__(self, C: float = 0.1, class_weight: str | None = "balanced", calibration_folds: int = 3,
                 max_iter: int = 2000, random_state: int = 0) -> None:
        self.C = C
        self.class_weight = class_weight
        self.calibration_folds = calibration_folds
        self.max_iter = max_iter
        self.random_state = random_state

    def _logistic(self, class_weight: str | None):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, class_weight=class_weight, max_iter=self.max_iter)

    def _platt(self, decision: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
        from sklearn.linear_model import LogisticRegression

        calibrator = LogisticRegression(C=1e6, max_iter=1000)
        calibrator.fit(decision[:, None], labels, sample_weight=weights)
        slope, intercept = float(calibrator.coef_[0, 0]), float(calibrator.intercept_[0])
        if slope > MIN_PLATT_SLOPE:
            return slope, intercept
        # No usable signal in the cross-validated values (or a reversed one): the calibrated probability is the
        # labelled share (the intercept-only fit), kept in the logits' order by a tiny positive slope.
        share = float(np.clip(np.average(labels, weights=weights), 1e-6, 1 - 1e-6))
        return MIN_PLATT_SLOPE, float(np.log(share / (1 - share)))

    def _fit_finding(self, embeddings: np.ndarray, labels: np.ndarray, weights: np.ndarray):
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        model = self._logistic(self.class_weight)
        model.fit(embeddings, labels, sample_weight=weights)
        calibration = (1.0, 0.0)
        minority = int(min(labels.sum(), len(labels) - labels.sum()))
        folds = min(self.calibration_folds, minority)
        if folds >= 2:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
            decision = cross_val_predict(self._logistic(self.class_weight), embeddings, labels, cv=splitter,
                                         method="decision_function", params={"sample_weight": weights})
            calibration = self._platt(decision, labels, weights)
        return model.coef_[0], float(model.intercept_[0]), calibration

    def fit(self, embeddings: np.ndarray, targets: np.ndarray, findings: list[str],
            regions: list[str | None] | None = None, sample_weight: np.ndarray | None = None) -> "LinearProbe":
        """Fit the probe.

        Args:
            embeddings: (N, D) float array.
            targets: (N, T) int array, 1 present / 0 absent / -1 unknown (rows are ignored per finding).
            findings: the T finding names (columns of ``targets``).
            regions: optional body region per row (None: unknown).
            sample_weight: optional (N,) weights (e.g. < 1 for report-derived weak labels).

        Raises:
            ProbeError: shape mismatch, no labelled rows at all, or no finding with both classes.
        """
        embeddings = np.asarray(embeddings, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.int64).reshape(len(embeddings), -1)
        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise ProbeError(f"embeddings must be a non-empty (N, D) array, got shape {embeddings.shape}")
        if targets.shape[1] != len(findings):
            raise ProbeError(f"targets have {targets.shape[1]} columns for {len(findings)} findings")
        weights = np.ones(len(embeddings)) if sample_weight is None else np.asarray(sample_weight, float)
        self.mean_ = embeddings.mean(axis=0).astype(np.float32)
        # One isotropic scale (RMS of the centred coordinates), not per-dimension: near-constant dimensions
        # of an embedding would otherwise be blown up and make the probe brittle.
        rms = float(np.sqrt(((embeddings - self.mean_) ** 2).mean())) or 1.0
        self.scale_ = np.full(embeddings.shape[1], rms, dtype=np.float32)
        embeddings = (embeddings - self.mean_) / self.scale_
        self.findings_, self.skipped_ = [], {}
        coefs, intercepts, calibrations = [], [], []
        for column, finding in enumerate(findings):
            known = targets[:, column] >= 0
            labels = targets[known, column]
            if len(labels) == 0:
                self.skipped_[finding] = "no labelled images"
                continue
            if labels.min() == labels.max():
                value = "present" if labels[0] == 1 else "absent"
                self.skipped_[finding] = (f"one class only: all {len(labels)} labelled images are {value}; "
                                          "label at least one image of the other class")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                coef, intercept, calibration = self._fit_finding(embeddings[known], labels, weights[known])
            self.findings_.append(finding)
            coefs.append(coef)
            intercepts.append(intercept)
            calibrations.append(calibration)
        if not self.findings_:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.skipped_.items())
            raise ProbeError(f"no finding can be trained ({reasons})")
        dim = embeddings.shape[1]
        self.coef_ = np.asarray(coefs, dtype=np.float32).reshape(-1, dim)
        self.intercept_ = np.asarray(intercepts, dtype=np.float32)
        self.calibration_ = np.asarray(calibrations, dtype=np.float32).reshape(-1, 2)
        self._fit_regions(embeddings, regions, weights)
        return self

    def _fit_regions(self, embeddings: np.ndarray, regions: list[str | None] | None, weights: np.ndarray) -> None:
        dim = embeddings.shape[1]
        self.regions_: list[str] = []
        self.region_coef_ = np.zeros((0, dim), dtype=np.float32)
        self.region_intercept_ = np.zeros((0,), dtype=np.float32)
        if regions is None:
            return
        known = np.array([region is not None for region in regions])
        names = sorted({region for region in regions if region is not None})
        if len(names) < 2:
            if names:
                self.skipped_["body_region"] = f"one class only: every labelled image is {names[0]!r}"
            return
        labels = np.array([names.index(region) for region in np.asarray(regions, dtype=object)[known]])
        model = self._logistic("balanced")
        model.fit(embeddings[known], labels, sample_weight=weights[known])
        self.regions_ = names
        self.region_coef_ = model.coef_.astype(np.float32)
        self.region_intercept_ = model.intercept_.astype(np.float32)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("LinearProbe is not fitted; call fit() or LinearProbe.load()")

    def _standardize(self, embeddings: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return (np.asarray(embeddings, dtype=np.float32) - self.mean_) / self.scale_

    def decision_function(self, embeddings: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (N, T)."""
        return self._standardize(embeddings) @ self.coef_.T + self.intercept_

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, T) float32, columns in ``findings_`` order."""
        logits = self.decision_function(embeddings)
        slopes = np.maximum(self.calibration_[:, 0], MIN_PLATT_SLOPE)  # probes saved before the floor existed
        return _sigmoid(slopes * logits + self.calibration_[:, 1]).astype(np.float32)

    def predict_region_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """Body-region probabilities (N, R) float32, columns in ``regions_`` order (R may be 0)."""
        self._check_fitted()
        if not self.regions_:
            return np.zeros((len(embeddings), 0), dtype=np.float32)
        logits = self._standardize(embeddings) @ self.region_coef_.T + self.region_intercept_
        return _softmax(logits).astype(np.float32)

    def save(self, folder: str | Path) -> Path:
        """Write ``probe.safetensors`` + ``probe.json`` into ``folder``."""
        from safetensors.numpy import save_file

        self._check_fitted()
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "intercept": self.intercept_,
                  "calibration": self.calibration_, "region_coef": self.region_coef_,
                  "region_intercept": self.region_intercept_}
        # safetensors writes the raw buffer: Fortran-ordered arrays (scikit-learn's coef_) must be made C-ordered
        save_file({name: np.ascontiguousarray(array, dtype=np.float32) for name, array in arrays.items()},
                  str(target / PROBE_WEIGHTS))
        meta = {"findings": self.findings_, "regions": self.regions_, "skipped": self.skipped_,
                "params": {"C": self.C, "class_weight": self.class_weight,
                           "calibration_folds": self.calibration_folds, "max_iter": self.max_iter,
                           "random_state": self.random_state}}
        (target / PROBE_CONFIG).write_text(json.dumps(meta, indent=2))
        return target

    @classmethod
    def load(cls, folder: str | Path) -> "LinearProbe":
        """Read a probe written by :meth:`save`."""
        from safetensors.numpy import load_file

        source = Path(folder)
        meta = json.loads((source / PROBE_CONFIG).read_text())
        arrays = load_file(str(source / PROBE_WEIGHTS))
        probe = cls(**meta["params"])
        probe.findings_, probe.regions_, probe.skipped_ = meta["findings"], meta["regions"], meta["skipped"]
        probe.mean_, probe.scale_ = arrays["mean"], arrays["scale"]
        probe.coef_, probe.intercept_ = arrays["coef"], arrays["intercept"]
        probe.calibration_ = arrays["calibration"]
        probe.region_coef_, probe.region_intercept_ = arrays["region_coef"], arrays["region_intercept"]
        return probe
