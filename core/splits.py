"""Deterministic study-level train/val/test assignment (80/10/10), so that no patient study straddles splits."""

from __future__ import annotations

import hashlib

__all__ = ["SPLITS", "split_for_study"]

SPLITS = ("train", "val", "test")


def split_for_study(study_id: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Split of a study from a hash of its id: stable across runs and machines, ~``fractions`` overall."""
    bucket = int(hashlib.sha256(study_id.encode("utf-8")).hexdigest()[:8], 16) / 0x1_0000_0000
    if bucket < fractions[0]:
        return "train"
    if bucket < fractions[0] + fractions[1]:
        return "val"
    return "test"
