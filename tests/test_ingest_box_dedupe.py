"""Boxes an image already has from another source are not stored twice: the fracture set's COCO and YOLO
exports of the same images (real data, copied at test time), and synthetic YOLO folders on a small PNG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from ingest_data import fracture_subset
from radloop.core.boxes import same_box
from radloop.core.ingest import ingest_paths
from radloop.core.schema import Annotation, Image
from radloop.core.targets import image_targets


def _boxes(catalog) -> list[Annotation]:
    with catalog.session() as session:
        return list(session.scalars(select(Annotation).where(Annotation.kind == "box")))


def test_yolo_after_coco_of_the_same_images_adds_no_box_twice(tmp_path, catalog):
    yolo, coco_path = fracture_subset(tmp_path / "fracture", count=20)
    coco = json.loads(coco_path.read_text())
    expected = len([a for a in coco["annotations"] if a["category_id"] != 0])
    first = ingest_paths(catalog, [coco_path], images_dir=yolo / "train" / "images", dataset="fracture",
                         workers=1, progress=False)
    assert first.images_added == 20 and first.annotations_added == expected > 0
    assert first.boxes_skipped_duplicate == 0
    before = len(_boxes(catalog))
    targets_before = {t.image_id: len(t.boxes) for t in image_targets(catalog, dataset="fracture")}

    second = ingest_paths(catalog, [yolo], dataset="fracture", workers=2, progress=False)
    yolo_lines = sum(1 for path in (yolo / "train" / "labels").glob("*.txt")
                     for line in path.read_text().splitlines() if line.strip())
    assert second.images_skipped_existing == 20 and second.images_added == 0 and second.errors == 0
    # every YOLO box of this set is a COCO box (the YOLO txt files only lost some): none is stored again
    assert second.annotations_added == 0 and second.boxes_skipped_duplicate > 0
    assert second.boxes_skipped_duplicate <= yolo_lines
    assert len(_boxes(catalog)) == before == expected
    assert {t.image_id: len(t.boxes) for t in image_targets(catalog, dataset="fracture")} == targets_before

    again = ingest_paths(catalog, [yolo], dataset="fracture", workers=1, progress=False)
    assert again.annotations_added == 0 and len(_boxes(catalog)) == before


def _yolo(folder: Path, pixels: np.ndarray, name: str, lines: list[str], *, compress_level: int = 6) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "data.yaml").write_text("names: ['fracture', 'foreign body']\n")
    PILImage.fromarray(pixels).save(folder / "images" / f"{name}.png", compress_level=compress_level)
    (folder / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_a_second_source_adds_only_its_new_boxes(tmp_path, catalog):
    """Same image (same bytes, then a re-saved pixel duplicate) in three YOLO folders: a box equal up to
    rounding to a stored one (same label) is skipped; a different box, or the same place with another label,
    is added; re-running a source adds nothing."""
    pixels = np.random.default_rng(3).integers(0, 256, size=(100, 200), dtype=np.uint8)  # 200 x 100 px
    first = _yolo(tmp_path / "first", pixels, "hand", ["0 0.5 0.5 0.2 0.2"])  # x 80..120, y 40..60
    second = _yolo(tmp_path / "second", pixels, "hand", [
        "0 0.5025 0.5 0.2 0.21",     # 0.5 px right, 0.5 px taller: the same box
        "0 0.2 0.2 0.1 0.1",         # elsewhere: a new box
        "1 0.5 0.5 0.2 0.2",         # same place, foreign body: a new box
    ])
    copy = _yolo(tmp_path / "copy", pixels, "hand_copy", [  # other bytes, same pixels: a duplicate file
        "0 0.5 0.5 0.2 0.2",         # the first box again
        "0 0.5 0.5 0.12 0.12",       # inside it, IoU 0.36: a new box
    ], compress_level=0)

    one = ingest_paths(catalog, [first], workers=1, progress=False)
    assert one.images_added == 1 and one.annotations_added == 1 and one.boxes_skipped_duplicate == 0
    two = ingest_paths(catalog, [second], workers=1, progress=False)
    assert two.images_skipped_existing == 1 and two.annotations_added == 2 and two.boxes_skipped_duplicate == 1
    three = ingest_paths(catalog, [copy], workers=1, progress=False)
    assert three.images_skipped_duplicate == 1
    assert three.annotations_added == 1 and three.boxes_skipped_duplicate == 1

    boxes = _boxes(catalog)
    with catalog.session() as session:
        assert len(session.scalars(select(Image)).all()) == 1
    assert len({box.image_id for box in boxes}) == 1
    stored = sorted((box.source, box.label, box.x, box.y, box.w, box.h) for box in boxes)
    assert stored == [("yolo:copy", "fracture", 88.0, 44.0, 24.0, 12.0),
                      ("yolo:first", "fracture", 80.0, 40.0, 40.0, 20.0),
                      ("yolo:second", "foreign_body", 80.0, 40.0, 40.0, 20.0),
                      ("yolo:second", "fracture", 30.0, 15.0, 20.0, 10.0)]
    for folder in (first, second, copy):
        rerun = ingest_paths(catalog, [folder], workers=1, progress=False)
        assert rerun.annotations_added == 0
    assert len(_boxes(catalog)) == 4


def test_two_sources_in_one_run_store_each_box_once(tmp_path, catalog):
    pixels = np.random.default_rng(5).integers(0, 256, size=(100, 200), dtype=np.uint8)
    a = _yolo(tmp_path / "a", pixels, "wrist", ["0 0.5 0.5 0.2 0.2"])
    b = _yolo(tmp_path / "b", pixels, "wrist", ["0 0.5 0.5 0.2 0.2", "0 0.8 0.8 0.1 0.1"])
    summary = ingest_paths(catalog, [a, b], workers=1, progress=False)
    assert summary.images_added == 1 and summary.annotations_added == 2 and summary.boxes_skipped_duplicate == 1
    assert len(_boxes(catalog)) == 2


@pytest.mark.parametrize(("a", "b", "same"), [
    ((10, 10, 100, 50), (10.4, 9.6, 100.3, 50.2), True),    # rounding
    ((10, 10, 100, 50), (14, 10, 100, 50), True),           # IoU 0.92
    ((10, 10, 100, 50), (25, 10, 100, 50), False),          # IoU 0.74
    ((10, 10, 3, 3), (11.5, 11.5, 3, 3), True),             # tiny: IoU 0.14, but every edge within 2 px
    ((10, 10, 3, 3), (13, 10, 3, 3), False),                # tiny, beside it
])
def test_same_box(a, b, same):
    assert same_box(a, b) is same and same_box(b, a) is same
