"""COCO and YOLO detection-set ingest on a small subset of the real fracture set (copied at test time)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from ingest_data import fracture_subset
from radloop.core.ingest import ingest_paths
from radloop.core.ingest_sources import RawBox
from radloop.core.schema import Annotation, Image, Study
from radloop.core.targets import image_targets

CLASS_REGIONS = {"elbow positive": "elbow", "fingers positive": "fingers", "forearm fracture": "forearm",
                 "humerus fracture": "humerus", "humerus": "humerus", "shoulder fracture": "shoulder",
                 "wrist positive": "wrist"}


def _iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    return inter / (aw * ah + bw * bh - inter)


@pytest.fixture
def subset(tmp_path):
    return fracture_subset(tmp_path / "fracture", count=20)


def test_coco_boxes_become_fracture_annotations(subset, catalog):
    yolo, coco_path = subset
    coco = json.loads(coco_path.read_text())
    summary = ingest_paths(catalog, [coco_path], images_dir=yolo / "train" / "images", dataset="fracture",
                           workers=2, progress=False)
    expected = [a for a in coco["annotations"] if a["category_id"] != 0]
    assert summary.images_added == 20 and summary.errors == 0
    assert summary.annotations_added == len(expected) > 0
    names = {c["id"]: c["name"] for c in coco["categories"]}
    file_of = {image["id"]: image["file_name"] for image in coco["images"]}
    with catalog.session() as session:
        images = {Path(image.source_path).name: image for image in session.scalars(select(Image))}
        boxes = session.scalars(select(Annotation)).all()
    by_image = defaultdict(list)
    for box in boxes:
        assert box.kind == "box" and box.label == "fracture" and box.source == f"coco:{coco_path.name}"
        by_image[box.image_id].append(box)
    for annotation in expected:
        image = images[file_of[annotation["image_id"]]]
        assert image.meta["box_source"] == f"coco:{coco_path.name}"
        assert image.body_region == CLASS_REGIONS[names[annotation["category_id"]]]
        match = [b for b in by_image[image.id] if b.source_label == names[annotation["category_id"]]
                 and (b.x, b.y, b.w, b.h) == pytest.approx(tuple(annotation["bbox"]), abs=0.01)]
        assert match, f"box {annotation['bbox']} of {image.external_id} missing"
    targets = {t.image_id: t for t in image_targets(catalog, dataset="fracture")}
    assert len(targets) == 20
    assert sum(t.fracture for t in targets.values()) == len({a["image_id"] for a in expected})
    assert sum(1 for t in targets.values() if t.fracture == 0) == 2  # exhaustive boxes: no box = negative
    again = ingest_paths(catalog, [coco_path], images_dir=yolo / "train" / "images", dataset="fracture",
                         workers=1, progress=False)
    assert again.images_added == 0 and again.annotations_added == 0 and again.images_skipped_existing == 20


def test_yolo_polygons_and_boxes_match_coco(subset, catalog):
    yolo, coco_path = subset
    coco = json.loads(coco_path.read_text())
    summary = ingest_paths(catalog, [yolo], dataset="fracture", workers=2, progress=False)
    assert summary.images_added == 20 and summary.errors == 0 and summary.annotations_added > 0
    names = {c["id"]: c["name"] for c in coco["categories"]}
    file_of = {image["id"]: image["file_name"] for image in coco["images"]}
    with catalog.session() as session:
        images = {Path(image.source_path).name: image for image in session.scalars(select(Image))}
        yolo_boxes = defaultdict(list)
        for box in session.scalars(select(Annotation)):
            assert box.source == "yolo:yolo" and box.label == "fracture"
            yolo_boxes[box.image_id].append(box)
        studies = {study.id for study in session.scalars(select(Study))}
    matched = 0
    for annotation in coco["annotations"]:
        image = images[file_of[annotation["image_id"]]]
        candidates = [b for b in yolo_boxes[image.id] if b.source_label == names[annotation["category_id"]]]
        if candidates:  # YOLO txt files lost some boxes (dataset README); those present must agree with COCO
            best = max(_iou((b.x, b.y, b.w, b.h), tuple(annotation["bbox"])) for b in candidates)
            assert best > 0.8, (image.external_id, annotation["bbox"])
            matched += 1
    assert matched >= 10
    # Roboflow copies of one source image (<stem>.rf.<hash>) share a study: never split across train/test.
    stems = {name.split(".rf.")[0] for name in images}
    assert len(studies) == len(stems)
    # Then the COCO json on the same images: no new images; its boxes that YOLO already gave are duplicates
    # (one per YOLO box), the ones the YOLO txt files lost are added.
    yolo_count = sum(len(boxes) for boxes in yolo_boxes.values())
    both = ingest_paths(catalog, [coco_path], images_dir=yolo / "train" / "images", dataset="fracture",
                        workers=1, progress=False)
    assert both.images_added == 0 and both.boxes_skipped_duplicate == yolo_count
    assert both.annotations_added + both.boxes_skipped_duplicate == len(
        [a for a in coco["annotations"] if a["category_id"] != 0])
    assert ingest_paths(catalog, [yolo], workers=1, progress=False).annotations_added == 0


def test_bad_yolo_lines_and_missing_coco_images_are_errors(subset, catalog):
    yolo, coco_path = subset
    label = sorted((yolo / "train" / "labels").glob("*.txt"))[0]
    label.write_text(label.read_text() + "\n9 0.5 0.5 0.1 0.1\n0 0.5 0.5\n")
    coco = json.loads(coco_path.read_text())
    coco["images"].append(dict(coco["images"][0], id=99999, file_name="not_there.jpg"))
    coco_path.write_text(json.dumps(coco))
    summary = ingest_paths(catalog, [yolo, coco_path], images_dir=yolo / "train" / "images", dataset="fracture",
                           workers=1, progress=False)
    reasons = [sample["reason"] for sample in summary.error_samples]
    assert summary.errors == 3 and summary.images_added == 20
    assert any("bad YOLO line" in reason for reason in reasons)
    assert any("missing" in reason for reason in reasons)


def test_unboxed_copy_of_a_source_image_gets_its_study_region(subset, catalog):
    yolo, coco_path = subset
    coco = json.loads(coco_path.read_text())
    boxed_ids = {a["image_id"] for a in coco["annotations"] if a["category_id"] != 0}
    original = next(image for image in coco["images"] if image["id"] in boxed_ids)
    source_stem = original["file_name"].split(".rf.")[0]
    copy_name = f"{source_stem}.rf.{'0' * 32}.jpg"
    images_dir = yolo / "train" / "images"
    # An augmented copy of the same radiograph (mirrored: another picture, not a duplicate), no boxes.
    with PILImage.open(images_dir / original["file_name"]) as source_image:
        source_image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT).save(images_dir / copy_name, quality=95)
    coco["images"].append(dict(original, id=123456, file_name=copy_name))
    coco_path.write_text(json.dumps(coco))
    ingest_paths(catalog, [coco_path], images_dir=images_dir, dataset="fracture", workers=1, progress=False)
    with catalog.session() as session:
        by_name = {Path(image.source_path).name: image for image in session.scalars(select(Image))}
        copy, source = by_name[copy_name], by_name[original["file_name"]]
        assert copy.study_id == source.study_id
        assert copy.body_region == source.body_region is not None
        assert copy.meta["body_region_from"] == "study"
        assert session.get(Study, copy.study_id).body_region == source.body_region


@pytest.mark.parametrize(("raw", "expected"), [
    (RawBox("elbow positive", -10.0, -4.0, 50.0, 20.0), (0.0, 0.0, 40.0, 16.0)),         # COCO, left/top cut off
    (RawBox("elbow positive", 80.0, 90.0, 50.0, 20.0), (80.0, 90.0, 20.0, 10.0)),        # right/bottom cut off
    (RawBox("elbow positive", -10.0, 90.0, 120.0, 20.0), (0.0, 90.0, 100.0, 10.0)),      # wider than the image
    (RawBox("elbow positive", -0.05, 0.2, 0.3, 0.1, normalized=True), (0.0, 20.0, 25.0, 10.0)),  # YOLO
    (RawBox("elbow positive", -20.0, 10.0, 100.0, 40.0, reference_width=200.0, reference_height=200.0),
     (0.0, 5.0, 40.0, 20.0)),                                                            # COCO at another size
])
def test_box_partly_outside_the_image_keeps_only_its_inside_part(raw, expected):
    assert raw.to_pixels(100, 100) == expected


def test_ingested_box_sticking_out_left_and_top_is_clipped_not_shifted(tmp_path, catalog):
    folder = tmp_path / "yolo"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "data.yaml").write_text("names: ['fracture']\n")
    PILImage.new("L", (200, 100), 90).save(folder / "images" / "edge.png")
    # centre (0.05, 0.1), size 0.3 x 0.4: spans x -0.1..0.2 and y -0.1..0.3 of the image
    (folder / "labels" / "edge.txt").write_text("0 0.05 0.1 0.3 0.4\n")
    summary = ingest_paths(catalog, [folder], dataset="edge", workers=1, progress=False)
    assert summary.images_added == 1 and summary.annotations_added == 1
    with catalog.session() as session:
        [box] = session.scalars(select(Annotation).where(Annotation.kind == "box"))
        assert (box.x, box.y, box.w, box.h) == pytest.approx((0.0, 0.0, 40.0, 30.0))


def _yolo_set(folder: Path, boxed: list[str], unboxed: list[str], foreign: tuple[str, ...] = ()) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "data.yaml").write_text("names: ['wrist positive', 'foreign body']\n")
    for name in boxed + unboxed + list(foreign):  # pixels differ between names (equal pixels would be one image)
        PILImage.new("L", (64, 48), ord(name)).save(folder / "images" / f"{name}.png")
        if name in boxed or name in foreign:
            (folder / "labels" / f"{name}.txt").write_text(f"{int(name in foreign)} 0.5 0.5 0.2 0.2\n")
    return folder


def _fracture_labels(catalog) -> dict[str, int | None]:
    from radloop.core.targets import image_labels

    with catalog.session() as session:
        names = dict(session.execute(select(Image.id, Image.external_id)).all())
    labels = image_labels(catalog)
    return {names[image_id]: labels.get(image_id, {}).get("fracture") for image_id in names}


def test_unboxed_images_of_a_non_exhaustive_set_stay_unknown(tmp_path, catalog):
    folder = _yolo_set(tmp_path / "set", boxed=["a", "b"], unboxed=["c", "d"], foreign=("g",))
    summary = ingest_paths(catalog, [folder], dataset="partial", workers=1, progress=False, unboxed="unknown")
    assert summary.images_added == 5 and summary.annotations_added == 3 and summary.images_unboxed_unknown == 3
    # "g" has a foreign-body box only: kept, but no fracture box does not mean no fracture either
    assert _fracture_labels(catalog) == {"a": 1, "b": 1, "c": None, "d": None, "g": None}
    with catalog.session() as session:
        marks = {name: (meta.get("box_source"), meta.get("unboxed_source"))
                 for name, meta in session.execute(select(Image.external_id, Image.meta))}
        [foreign_box] = session.scalars(select(Annotation).where(Annotation.label == "foreign_body"))
    unknown = (None, "yolo:set")
    assert marks == {"a": ("yolo:set", None), "b": ("yolo:set", None), "c": unknown, "d": unknown, "g": unknown}
    assert foreign_box.source == "yolo:set"
    # a later run of the same set with the default (a resumed ingest, say) adds nothing and makes no negative
    again = ingest_paths(catalog, [folder], dataset="partial", workers=1, progress=False)
    assert again.images_added == 0 and again.images_unboxed_unknown == 0
    assert _fracture_labels(catalog) == {"a": 1, "b": 1, "c": None, "d": None, "g": None}
    # the default, as before: an unboxed image of a detection set is a negative
    other = _yolo_set(tmp_path / "full", boxed=["e"], unboxed=["f"])
    summary = ingest_paths(catalog, [other], dataset="full", workers=1, progress=False)
    assert summary.images_unboxed_unknown == 0
    labels = _fracture_labels(catalog)
    assert (labels["e"], labels["f"]) == (1, 0)


def test_unboxed_takes_negative_or_unknown_only(tmp_path, catalog):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    folder = _yolo_set(tmp_path / "set", boxed=["a"], unboxed=["b"])
    with pytest.raises(ValueError, match="unboxed must be one of negative, unknown, not 'maybe'"):
        ingest_paths(catalog, [folder], workers=1, progress=False, unboxed="maybe")
    result = CliRunner().invoke(build_app(), ["ingest", str(folder), "--unboxed", "maybe", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 2 and "maybe" in result.output
    result = CliRunner().invoke(build_app(), ["ingest", str(folder), "--unboxed", "unknown", "-j", "1", "--json",
                                      "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images_unboxed_unknown"] == 1
