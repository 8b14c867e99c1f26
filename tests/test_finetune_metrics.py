"""Held-out metrics: balanced accuracy on a split that misses a class stays quiet."""

from __future__ import annotations

import warnings

import pytest

from radloop.ssl.finetune_metrics import balanced_accuracy, region_metrics


def test_region_balanced_accuracy_on_a_split_missing_a_predicted_class_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        metrics = region_metrics(["wrist", "wrist", "hand"], ["wrist", "ankle", "hand"])
    # mean recall over the classes present: wrist 1/2, hand 1/1
    assert metrics["region_balanced_accuracy"] == pytest.approx(0.75) and metrics["n.region"] == 3


def test_balanced_accuracy_lets_other_warnings_through():
    # one class only in the truth and in the prediction: scikit-learn's own warnings are not ours to hide
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        balanced_accuracy(["a", "a"], ["a", "b"])
    assert not [w for w in caught if "not in y_true" in str(w.message)]
