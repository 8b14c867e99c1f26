"""Small metric helpers shared by the parts (scikit-learn is a core dependency; no torch here)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

__all__ = ["CLASSES_NOT_IN_TRUTH", "balanced_accuracy"]

#: scikit-learn's warning when a prediction names a class absent from the truth (a small held-out split):
#: the score is still well defined (the mean recall over the classes present), so the warning is noise.
CLASSES_NOT_IN_TRUTH = "y_pred contains classes not in y_true"


def balanced_accuracy(truth: Sequence, predicted: Sequence) -> float:
    """scikit-learn's balanced accuracy (mean recall over the classes in ``truth``), without its warning about
    predicted classes missing from ``truth``; other warnings pass through."""
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CLASSES_NOT_IN_TRUTH, category=UserWarning)
        return float(balanced_accuracy_score(truth, predicted))
