"""Boxes <-> Label Studio percent coordinates (exact round trip) and degenerate boxes."""

from __future__ import annotations

import random

import pytest

from radloop.core.boxes import BoxError, box_from_ls_percent, box_to_ls_percent, sanitize_box, sanitize_boxes
from radloop.core.records import Box


def test_pixel_percent_pixel_round_trip_is_exact():
    rng = random.Random(0)
    for _ in range(20000):
        width, height = rng.randint(1, 4096), rng.randint(1, 4096)
        x, y = round(rng.uniform(0, width), 3), round(rng.uniform(0, height), 3)
        box = Box("fracture", x, y, round(rng.uniform(0, width - x), 3), round(rng.uniform(0, height - y), 3))
        back = box_from_ls_percent(box_to_ls_percent(box, width, height), width, height, "fracture")
        assert back == box


def test_percent_pixel_percent_round_trip_and_known_values():
    value = box_to_ls_percent(Box("fracture", 50, 25, 100, 50), 200, 100)
    assert value == {"x": 25.0, "y": 25.0, "width": 50.0, "height": 50.0, "rotation": 0.0}
    rng = random.Random(1)
    for _ in range(2000):
        width, height = rng.randint(1, 4096), rng.randint(1, 4096)
        percent = {"x": rng.uniform(0, 90), "y": rng.uniform(0, 90), "width": rng.uniform(0.1, 10),
                   "height": rng.uniform(0.1, 10)}
        again = box_to_ls_percent(box_from_ls_percent(percent, width, height, "fracture"), width, height)
        for key in percent:  # pixels are kept to 1e-4 px
            assert again[key] == pytest.approx(percent[key], abs=1e-4 * 100 / min(width, height))


def test_bad_ls_values_raise():
    with pytest.raises(BoxError, match="rotated"):
        box_from_ls_percent({"x": 1, "y": 1, "width": 2, "height": 2, "rotation": 30}, 100, 100, "fracture")
    with pytest.raises(BoxError, match="lacks width"):
        box_from_ls_percent({"x": 1, "y": 1, "height": 2}, 100, 100, "fracture")
    with pytest.raises(BoxError, match="image size"):
        box_to_ls_percent(Box("fracture", 1, 1, 1, 1), 0, 100)


def test_degenerate_boxes_are_dropped_or_clipped_with_reasons():
    assert sanitize_box(Box("fracture", 10, 10, 0, 5), 100, 100)[1].startswith("zero or negative area")
    clean, reason = sanitize_box(Box("fracture", 150, 10, 20, 20), 100, 100)
    assert clean is None and "outside the 100x100 image" in reason
    clean, reason = sanitize_box(Box("fracture", -5, 90, 20, 20), 100, 100)
    assert clean == Box("fracture", 0.0, 90.0, 15.0, 10.0) and "clipped" in reason
    assert sanitize_box(Box("fracture", 1, 2, 3, 4), 100, 100) == (Box("fracture", 1, 2, 3, 4), None)
    kept, messages = sanitize_boxes([Box("fracture", 1, 2, 3, 4), Box("fracture", 0, 0, -1, 3)], 100, 100,
                                    context="I-1")
    assert kept == [Box("fracture", 1, 2, 3, 4)]
    assert messages == ["I-1: fracture box dropped: zero or negative area (w=-1, h=3)"]


def test_predicted_boxes_survive_the_label_studio_adapter_exactly():
    """A detector box -> Label Studio prediction JSON -> submitted annotation -> the same pixel box."""
    ls_adapter = pytest.importorskip("radloop.labeling.ls_adapter")
    from radloop.labeling.ls_config import build_label_config, parse_label_config

    config = parse_label_config(build_label_config())
    geometry = ls_adapter.ImageGeometry(width=3000, height=2500, render_width=2048, render_height=1707)
    boxes = (Box("fracture", 1234.567, 89.125, 456.789, 1000.001, score=0.9),
             Box("fracture", 0.0, 0.0, 3000.0, 2500.0, score=0.4))
    record = ls_adapter.PredictionRecord(model_version="det-1", choices={"fracture": 0.9}, boxes=boxes)
    predicted = ls_adapter.prediction_to_ls(record, geometry, config)
    annotation = {"id": 7, "task": 3, "created_at": "2026-11-26T00:00:00Z", "result": predicted["result"]}
    parsed = ls_adapter.parse_annotation(annotation, config, geometry)
    assert not parsed.problems
    assert [(b.x, b.y, b.w, b.h) for b in parsed.boxes] == [(b.x, b.y, b.w, b.h) for b in boxes]
