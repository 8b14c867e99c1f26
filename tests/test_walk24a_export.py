"""`radloop export` / :func:`radloop.core.dataset_export.export_dataset` on a real fracture-set subset: the CSV
labels and COCO boxes are what ``image_targets`` (the targets `radloop train` uses) says, pixel for pixel the
source COCO boxes; Label Studio's newest version wins; filters, splits, the output folder rules, --json, and an
interrupted export leaving nothing."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
from ingest_data import fracture_subset
from sqlalchemy import select
from typer.testing import CliRunner

from radloop.app.cli import build_app
from radloop.core import dataset_export
from radloop.core.dataset_export import ExportError, export_dataset
from radloop.core.ingest import ingest_paths
from radloop.core.schema import Annotation, Image, Report, WeakLabel
from radloop.core.targets import image_targets
from radloop.core.vocabulary import FINDINGS


@pytest.fixture
def fractures(tmp_path, catalog):
    """20 fracture-set images (18 boxed, 2 without boxes) ingested from COCO; the source COCO."""
    yolo, coco_path = fracture_subset(tmp_path / "fracture", count=20)
    summary = ingest_paths(catalog, [coco_path], images_dir=yolo / "train" / "images", dataset="fracture",
                           workers=1, progress=False)
    assert summary.images_added == 20 and summary.errors == 0
    return catalog, json.loads(coco_path.read_text())


def _cli(catalog, *args: str):
    env = {"RADLOOP_DATABASE_URL": catalog.workspace.database_url}
    return CliRunner().invoke(build_app(), ["export", *args, "--workspace", str(catalog.workspace.root)], env=env)


def _rows(out: Path) -> list[dict]:
    with (out / "labels.csv").open(newline="") as table:
        return list(csv.DictReader(table))


def _coco_boxes(out: Path) -> dict[str, list[tuple]]:
    """radloop image id -> sorted (category name, x, y, w, h) of the exported COCO file."""
    coco = json.loads((out / "boxes.coco.json").read_text())
    names = {category["id"]: category["name"] for category in coco["categories"]}
    image_of = {image["id"]: image["radloop_image_id"] for image in coco["images"]}
    boxes = defaultdict(list)
    for annotation in coco["annotations"]:
        boxes[image_of[annotation["image_id"]]].append((names[annotation["category_id"]], *annotation["bbox"]))
    return {image_id: sorted(found) for image_id, found in boxes.items()}


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_labels_and_boxes_are_the_training_targets_and_the_source_boxes(fractures, tmp_path):
    catalog, source = fractures
    summary = export_dataset(catalog, tmp_path / "out")
    out = tmp_path / "out"
    rows, boxes = _rows(out), _coco_boxes(out)
    targets = {target.image_id: target for target in image_targets(catalog)}
    assert [row["image_id"] for row in rows] == sorted(targets) and summary.images == 20
    for row in rows:
        target = targets[row["image_id"]]
        assert {name: row[f"expert_{name}"] for name in FINDINGS} == {
            name: "" if name not in target.labels else str(target.labels[name]) for name in FINDINGS}
        assert (row["study_id"], row["split"], row["body_region"]) == (target.study_id, target.split,
                                                                      target.body_region or "")
        assert (int(row["width"]), int(row["height"])) == (target.width, target.height)
        assert Path(row["render_path"]).is_absolute() and Path(row["render_path"]).is_file()
        assert Path(row["source_path"]).is_absolute() and Path(row["source_path"]).is_file()
        assert boxes.get(row["image_id"], []) == sorted((b.label, b.x, b.y, b.w, b.h) for b in target.boxes)
    # pixel for pixel the boxes of the source COCO file (every class there is a fracture)
    file_of = {image["id"]: image["file_name"] for image in source["images"]}
    expected = defaultdict(list)
    for annotation in source["annotations"]:
        if annotation["category_id"] != 0:
            expected[file_of[annotation["image_id"]]].append(("fracture", *annotation["bbox"]))
    by_file = {Path(row["source_path"]).name: boxes.get(row["image_id"], []) for row in rows}
    assert {name: sorted(found) for name, found in expected.items()} == {
        name: found for name, found in by_file.items() if found}
    assert sum(1 for row in rows if row["expert_fracture"] == "0") == 2  # the two unboxed images: no fracture
    coco = json.loads((out / "boxes.coco.json").read_text())
    assert all(image["file_name"] == row["render_path"] for image, row in zip(coco["images"], rows))
    provenance = json.loads((out / "export.json").read_text())
    assert provenance["counts"]["images"] == 20 and provenance["catalog_schema_version"] == catalog.schema_version()
    assert provenance["counts"]["boxes"] == {"fracture": sum(len(found) for found in expected.values())}
    assert sorted(path.name for path in out.iterdir()) == ["boxes.coco.json", "export.json", "labels.csv"]


def _label_studio(catalog, image_id: str, annotation: int, version: int, *, boxes=(), fracture=None) -> None:
    common = dict(image_id=image_id, source="labelstudio", external_id=f"ls:1:{annotation}", version=version,
                  meta={"ls_annotation_id": annotation})
    with catalog.session() as session:  # one version per commit: later versions come later
        if fracture is not None:
            session.add(Annotation(kind="choice", label="fracture", **{**common, "meta": {"value": fracture}}))
        for x, y, w, h in boxes:
            session.add(Annotation(kind="box", label="fracture", x=x, y=y, w=w, h=h, **common))


def test_the_newest_label_studio_version_wins_as_in_training(fractures, tmp_path):
    catalog, _ = fractures
    first, second = sorted(target.image_id for target in image_targets(catalog) if target.boxes)[:2]
    _label_studio(catalog, first, 7, 1, boxes=[(5, 6, 70, 80)], fracture=1)
    _label_studio(catalog, first, 7, 2, boxes=[(15.5, 16.25, 70, 80)], fracture=1)  # the box moved
    _label_studio(catalog, second, 8, 1, boxes=[(1, 2, 3, 4)], fracture=1)
    _label_studio(catalog, second, 8, 2, fracture=0)  # then: no fracture
    export_dataset(catalog, tmp_path / "out", labels="expert")
    rows = {row["image_id"]: row for row in _rows(tmp_path / "out")}
    boxes = _coco_boxes(tmp_path / "out")
    assert boxes[first] == [("fracture", 15.5, 16.25, 70.0, 80.0)]
    assert second not in boxes and rows[second]["expert_fracture"] == "0"
    targets = {target.image_id: target for target in image_targets(catalog)}
    for image_id in (first, second):
        assert boxes.get(image_id, []) == sorted((b.label, b.x, b.y, b.w, b.h) for b in targets[image_id].boxes)
    assert not any(name.startswith("weak_") for name in rows[first])


def test_splits_and_filters_choose_the_rows(fractures, tmp_path):
    catalog, _ = fractures
    targets = image_targets(catalog)
    split = min(t.split for t in targets)  # the study splits come from the workspace's key: look, not assume
    other = _cli(catalog, "--out", str(tmp_path / "split"), "--split", split)
    assert other.exit_code == 0, other.output
    assert {row["split"] for row in _rows(tmp_path / "split")} == {split}
    assert len(_rows(tmp_path / "split")) == sum(1 for t in targets if t.split == split) > 0
    region = targets[0].body_region
    chosen = _cli(catalog, "--out", str(tmp_path / "region"), "--filter", f"body_region={region}", "--split", "train")
    assert chosen.exit_code == 0, chosen.output
    expected = sorted(t.image_id for t in targets if t.body_region == region and t.split == "train")
    assert len(expected) < len(targets)
    assert [row["image_id"] for row in _rows(tmp_path / "region")] == expected
    provenance = json.loads((tmp_path / "region" / "export.json").read_text())
    assert provenance["selection"] == {"dataset": None, "splits": ["train"], "filters": {"body_region": [region]}}
    assert provenance["command"][:2] == ["radloop", "export"]
    none = _cli(catalog, "--out", str(tmp_path / "none"), "--dataset", "other")
    assert none.exit_code == 0 and _rows(tmp_path / "none") == []


@pytest.mark.parametrize("args, message", [
    (["--filter", "colour=red"], "unknown filter 'colour'"),
    (["--filter", "body_region=moon"], "unknown body_region 'moon'"),
    (["--filter", "wrist"], "must look like key=value"),
    (["--split", "holdout"], "--split 'holdout': one of train, val, test"),
    (["--labels", "silver"], "--labels 'silver': one of expert, weak, both"),
    (["--labels", "expert", "--with-evidence"], "not with --labels expert"),
])
def test_a_bad_option_is_one_error_line_and_exit_2(fractures, tmp_path, args, message):
    catalog, _ = fractures
    result = _cli(catalog, "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == 2 and message in _one_line(result.output)
    assert not (tmp_path / "out").exists()


def test_a_non_empty_folder_is_refused_unless_overwrite(fractures, tmp_path):
    catalog, _ = fractures
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    refused = _cli(catalog, "--out", str(out))
    assert refused.exit_code == 2 and "is not empty" in _one_line(refused.output)
    assert [path.name for path in out.iterdir()] == ["mine.txt"]
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(catalog, out)
    replaced = _cli(catalog, "--out", str(out), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sorted(path.name for path in out.iterdir()) == ["boxes.coco.json", "export.json", "labels.csv"]
    (tmp_path / "file").write_text("x")
    assert "is a file" in _one_line(_cli(catalog, "--out", str(tmp_path / "file")).output)
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_json_is_strict_json_on_stdout_without_a_bar(fractures, tmp_path):
    catalog, _ = fractures
    result = _cli(catalog, "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 20 and summary["splits"] == json.loads(
        (tmp_path / "out" / "export.json").read_text())["counts"]["splits"]
    assert result.stderr == ""


def test_an_interrupted_export_leaves_no_folder(fractures, tmp_path, monkeypatch):
    catalog, _ = fractures
    real = dataset_export.image_targets

    def stop(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset_export, "image_targets", stop)
    result = _cli(catalog, "--out", str(tmp_path / "out"))
    assert result.exit_code == 130 and "nothing was written" in _one_line(result.output)
    assert not (tmp_path / "out").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def _report(catalog, image_id: str, text: str, mentions: list[tuple[str, str, str]]) -> None:
    """A report on ``image_id``'s study with weak labels (finding, status, evidence) of rules version r2 (and an
    older version r1 saying the opposite)."""
    with catalog.session() as session:
        study_id = session.scalar(select(Image.study_id).where(Image.id == image_id))
        session.add(Report(id="CXR1", study_id=study_id, content_hash="h", dataset="fracture", text=text))
        session.flush()
        for finding, status, evidence in mentions:
            session.add(WeakLabel(report_id="CXR1", finding=finding, status="negative" if status == "positive"
                                  else "positive", evidence=evidence, rules_version="r1"))
        for finding, status, evidence in mentions:
            session.add(WeakLabel(report_id="CXR1", finding=finding, status=status, evidence=evidence,
                                  rules_version="r2"))


def test_weak_labels_without_text_and_evidence_only_redacted(fractures, tmp_path):
    catalog, _ = fractures
    image_id = image_targets(catalog)[0].image_id
    text = "Seen by Dr. Jane Doe. Acute fracture of the radius. No effusion. Possible nodule."
    _report(catalog, image_id, text, [("fracture", "positive", "Seen by Dr. Jane Doe. Acute fracture of the radius."),
                                      ("effusion", "negative", "No effusion."),
                                      ("nodule", "uncertain", "Possible nodule."),
                                      ("nodule", "negative", "no nodule")])
    result = _cli(catalog, "--out", str(tmp_path / "plain"), "--labels", "weak")
    assert result.exit_code == 0, result.output
    row = next(row for row in _rows(tmp_path / "plain") if row["image_id"] == image_id)
    assert (row["weak_fracture"], row["weak_effusion"], row["weak_nodule"], row["weak_device"]) == (
        "positive", "negative", "uncertain", "")
    assert not any(name.startswith("expert_") for name in row)
    written = "".join(path.read_text() for path in (tmp_path / "plain").iterdir())
    assert "Jane" not in written and "radius" not in written  # no report text by default
    assert json.loads((tmp_path / "plain" / "export.json").read_text())["rules_versions"] == ["r2"]
    result = _cli(catalog, "--out", str(tmp_path / "evidence"), "--with-evidence")
    assert result.exit_code == 0, result.output
    (line,) = (tmp_path / "evidence" / "weak_labels.jsonl").read_text().splitlines()
    study = json.loads(line)
    assert study["rules_version"] == "r2" and len(study["mentions"]) == 4
    assert study["mentions"][0]["evidence"] == "Seen by Dr. [NAME]. Acute fracture of the radius."
    assert "Jane" not in "".join(path.read_text() for path in (tmp_path / "evidence").iterdir())


def test_pages_of_a_few_images_write_the_same_files(fractures, tmp_path, monkeypatch):
    """A large catalog is read a page at a time (IN_CHUNK images): pages of 3 give the files one page gives."""
    catalog, _ = fractures
    keep = sorted(target.image_id for target in image_targets(catalog))[1:]
    export_dataset(catalog, tmp_path / "whole")
    export_dataset(catalog, tmp_path / "whole-listed", image_ids=keep)
    monkeypatch.setattr(dataset_export, "IN_CHUNK", 3)
    export_dataset(catalog, tmp_path / "paged")
    export_dataset(catalog, tmp_path / "paged-listed", image_ids=keep)
    for whole, paged in (("whole", "paged"), ("whole-listed", "paged-listed")):
        for name in ("labels.csv", "boxes.coco.json"):
            assert (tmp_path / whole / name).read_text() == (tmp_path / paged / name).read_text()
    assert len(_rows(tmp_path / "paged-listed")) == 19
    assert json.loads((tmp_path / "paged" / "boxes.coco.json").read_text())["images"][-1]["id"] == 20


def test_a_missing_render_is_counted_and_noted(fractures, tmp_path):
    catalog, _ = fractures
    target = image_targets(catalog)[0]
    catalog.workspace.absolute(target.render_path).unlink()
    result = _cli(catalog, "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["missing_renders"] == 1
    assert "1 exported images have no render file" in _one_line(result.stderr)
    assert json.loads((tmp_path / "out" / "export.json").read_text())["counts"]["missing_renders"] == 1


def test_coco_boxes_are_in_the_pixels_of_the_rendered_file(tmp_path, catalog):
    """An original over 2048 px is rendered scaled down; COCO readers take a box in the pixels of its file_name, so
    ``bbox`` is in the render's pixels (it once was in the original's: boxes off by the scale) and ``bbox_original``
    keeps the catalog's numbers."""
    import numpy as np
    from PIL import Image as PILImage

    from bright_boxes import write_bright_images

    true_box = (1500, 600, 300, 300)
    folder = write_bright_images(tmp_path / "big", {(3000, 1500): true_box})
    assert ingest_paths(catalog, [folder], dataset="big", workers=1, progress=False).images_added == 1
    with catalog.session() as session:
        image = session.scalars(select(Image)).one()
        session.add(Annotation(image_id=image.id, source="labelstudio", kind="box", label="fracture", x=1500.0,
                               y=600.0, w=300.0, h=300.0, external_id="1", version=1))
    export_dataset(catalog, tmp_path / "out")
    coco = json.loads((tmp_path / "out" / "boxes.coco.json").read_text())
    [entry], [annotation] = coco["images"], coco["annotations"]
    assert (entry["original_width"], entry["original_height"]) == (3000, 1500)
    render = PILImage.open(entry["file_name"])
    assert (entry["width"], entry["height"]) == render.size == (2048, 1024)
    assert annotation["bbox_original"] == [1500.0, 600.0, 300.0, 300.0]
    x, y, w, h = annotation["bbox"]
    assert (x, y, w, h) == pytest.approx([1500 * 2048 / 3000, 600 * 1024 / 1500, 300 * 2048 / 3000, 300 * 1024 / 1500])
    pixels = np.asarray(render.convert("L"), dtype=np.float32)
    inside = pixels[round(y) + 2:round(y + h) - 2, round(x) + 2:round(x + w) - 2]
    assert inside.min() > 200 and pixels[:, : round(x) - 2].max() < 50  # the box sits on the bright square
