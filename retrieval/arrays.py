"""Array checks shared by the indexes and the selection strategies (no scikit-learn: case search imports it)."""

from __future__ import annotations

import numpy as np

__all__ = ["as_float32"]


def _check_finite(name: str, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{name} contain NaN or infinite values in {len(rows)} row(s), "
                         f"e.g. rows {rows[:5].tolist()}")


def as_float32(name: str, values) -> np.ndarray:
    """``values`` as contiguous float32, refusing NaN/inf and values that overflow float32 (named as such)."""
    values = np.asarray(values)
    if values.dtype.kind in "biuf":
        _check_finite(name, values)
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(converted).all():
        rows = np.unique(np.nonzero(~np.isfinite(converted))[0])
        largest = float(np.abs(values.astype(np.float64)).max())
        raise ValueError(f"{name} overflow float32 in {len(rows)} row(s), e.g. rows {rows[:5].tolist()} "
                         f"(largest magnitude {largest:.3g} > {float(np.finfo(np.float32).max):.3g}): rescale them")
    return converted
