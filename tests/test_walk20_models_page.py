"""The Models page's Metric picker starts on a quality metric, not on the first column by name (a count)."""

from __future__ import annotations


def test_metric_picker_prefers_auroc_then_map_over_counts():
    from radloop.app.page_models import default_metric

    columns = ["metric:ece", "metric:eval_images", "metric:labels_total", "metric:auroc.fracture", "metric:n.fracture"]
    assert default_metric(columns) == 3
    assert default_metric(["metric:eval_images", "metric:mar100", "metric:map50"]) == 2
    assert default_metric(["metric:eval_images", "metric:region_balanced_accuracy"]) == 1
    assert default_metric(["metric:eval_images", "metric:steps"]) == 0  # nothing known: the first, as before
    assert default_metric(["metric:auroc_macro"]) == 0
    assert default_metric(["metric:eval_images", "metric:apex"]) == 0  # "ap" only as a whole name or prefix.
