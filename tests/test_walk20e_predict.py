"""`radloop predict FILE_OR_FOLDER...`: new PNG/JPEG/DICOM files read as ingest renders them, predicted by a
registered model (probe: findings + region; detector: boxes in original pixels), equal to the Python API.

One module workspace: 24 real fracture radiographs, a random tiny encoder, a probe (task findings) and a detector
trained for two steps (task detection, score threshold 0 so that it always returns boxes).  The DICOM is the
real ``dicom_radiographs`` SIIM CR chest (skipped with the reason when ../shared/data is absent).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from conftest import data_path
from finetune_workspace import filled_catalog, fracture_coco, fresh_catalog

DICOM_NAME = "siim_cr_chest_pa_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, test_catalog_url):
    """(catalog, probe version, detector version, CLI env)."""
    from radloop.ssl.finetune_config import TrainConfig
    from radloop.ssl.finetune_jobs import run_training

    catalog = fresh_catalog(tmp_path_factory, test_catalog_url, "predict")
    filled_catalog(catalog, catalog.workspace.root / "encoder", seed=2, render_size=160)
    probe = run_training(catalog, TrainConfig.model_validate(
        {"name": "probe-predict", "head": "probe", "trainer": {"num_threads": 1}}), progress=False).version
    detector = run_training(catalog, TrainConfig.model_validate(
        {"name": "detect-predict", "head": "detect", "data": {"body_region": False, "max_eval_images": 4},
         "detect": {"min_size": 128, "max_size": 160, "batch_size": 2, "max_steps": 2, "fpn_channels": 16,
                    "score_threshold": 0.0, "detections_per_image": 5},
         "trainer": {"num_threads": 1}}), progress=False).version
    yield catalog, probe, detector, {"RADLOOP_DATABASE_URL": catalog.workspace.database_url}
    catalog.dispose()


def _cli(catalog, env, *args):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), ["predict", *map(str, args), "--workspace", str(catalog.workspace.root)],
                              env=env)


def _jpegs(count: int) -> list[Path]:
    coco, image_dir = fracture_coco()
    return [image_dir / entry["file_name"] for entry in sorted(coco["images"], key=lambda e: e["id"])[-count:]]


def _size(path: Path) -> tuple[int, int]:
    with PILImage.open(path) as image:
        return image.size


def _corners(boxes) -> list[float]:
    """x, y, w, h of every box, flat (JSON dicts or Box records)."""
    return [float(value) for b in boxes for value in ((b["x"], b["y"], b["w"], b["h"]) if isinstance(b, dict)
                                                      else (b.x, b.y, b.w, b.h))]


def test_folder_with_bad_files_predicts_the_rest_and_matches_the_python_api(trained, tmp_path):
    from radloop.ssl.predict import predictor_for_version

    catalog, probe, _, env = trained
    jpegs = _jpegs(2)
    folder = tmp_path / "batch"
    (folder / "wrist" / "deeper").mkdir(parents=True)
    os.symlink(jpegs[0], folder / "wrist" / "a.jpg")  # links: the real data is never copied
    os.symlink(jpegs[1], folder / "wrist" / "deeper" / "b.JPG")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("skipped like ingest skips it")
    (folder / ".hidden.png").write_bytes(b"skipped")
    os.symlink(folder / "wrist", folder / "wrist" / "deeper" / "loop")  # a loop, and a second link to a folder:
    os.symlink(folder / "wrist", folder / "also-wrist")  # each real folder is walked once
    out = tmp_path / "predictions.jsonl"
    result = _cli(catalog, env, folder, tmp_path / "gone.png", "--model", probe, "--json", "--out", out)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary == {"model": probe, "files": 5, "predicted": 2, "failed": 3, "out": str(out)}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4 and "3 of 5 files could not be predicted" in errors[-1]  # one line each, then a total
    assert any("broken.png:" in line and "PNG" in line for line in errors)
    assert any("empty.jpg: file is empty (0 bytes)" in line for line in errors)
    assert any("gone.png: no such file or folder" in line for line in errors)
    rows = {Path(row["file"]).name: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"a.jpg", "b.JPG", "broken.png", "empty.jpg", "gone.png"}
    predictor = predictor_for_version(catalog, probe)
    for name, source in (("a.jpg", jpegs[0]), ("b.JPG", jpegs[1])):
        row = rows[name]
        assert (row["width"], row["height"]) == _size(source) and row["model_version"] == probe
        [expected] = predictor.predict([source], original_sizes=[_size(source)])
        assert row["findings"] == pytest.approx(expected.choices, abs=1e-5)
        assert row["regions"] == pytest.approx(expected.regions, abs=1e-5) and row["boxes"] == []
        assert row["body_region"] == expected.body_region
    result = _cli(catalog, env, folder, "--out", tmp_path / "nowhere" / "p.jsonl")
    assert result.exit_code == 2 and "does not exist" in result.output  # refused before any work
    # the default model is the current one of --task (findings: the probe); the table names each file
    shown = _cli(catalog, env, folder / "wrist")
    assert shown.exit_code == 0, shown.output
    assert "a.jpg" in shown.stdout and "b.JPG" in shown.stdout and "fracture 0." in shown.stdout
    assert "2 of 2 files predicted" in shown.output


def test_a_dicom_is_predicted_as_its_ingested_render_is(trained, tmp_path):
    """The same DICOM, predicted from the file and (as the ML backend does) from the render ingest wrote."""
    from sqlalchemy import select

    from radloop.core.ingest import ingest_paths
    from radloop.core.schema import Image
    from radloop.ssl.predict import predictor_for_version, read_rendered

    catalog, probe, _, env = trained
    dicom = data_path("dicom_radiographs", DICOM_NAME)
    no_suffix = tmp_path / "IM0001"  # archives export DICOM without a suffix: recognised by content
    os.symlink(dicom, no_suffix)
    result = _cli(catalog, env, no_suffix, "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["predictions"]
    ingest_paths(catalog, [dicom], workers=1, progress=False, dataset="predict-dicom")
    with catalog.session() as session:
        image = session.scalars(select(Image).where(Image.dataset == "predict-dicom")).one()
        render, size = catalog.workspace.absolute(image.render_path), (image.width, image.height)
    pixels, original = read_rendered(no_suffix)
    assert original == size == (row["width"], row["height"])
    np.testing.assert_array_equal(pixels, np.asarray(PILImage.open(render)))  # the very pixels of the render
    [expected] = predictor_for_version(catalog, probe).predict([render], original_sizes=[size])
    assert row["findings"] == pytest.approx(expected.choices, abs=1e-5)
    assert row["regions"] == pytest.approx(expected.regions, abs=1e-5)


def test_detector_boxes_come_back_in_original_pixels(trained, tmp_path):
    """A 2600-px PNG is scaled to the 2048-px render the model sees; its boxes are in the 2600-px image's pixels."""
    from radloop.core.render import read_raster, render_files
    from radloop.ssl.predict import predictor_for_version

    catalog, _, detector, env = trained
    jpegs = _jpegs(3)
    result = _cli(catalog, env, *jpegs, "--task", "detection", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["predictions"]
    predictor = predictor_for_version(catalog, detector)
    expected = predictor.predict(jpegs, original_sizes=[_size(p) for p in jpegs])  # same files, same batch
    for row, prediction in zip(rows, expected):
        assert row["model_version"] == detector and row["boxes"]
        assert [b["label"] for b in row["boxes"]] == [b.label for b in prediction.boxes]
        assert _corners(row["boxes"]) == pytest.approx(_corners(prediction.boxes), abs=1e-3)
        assert [b["score"] for b in row["boxes"]] == pytest.approx([b.score for b in prediction.boxes], abs=1e-5)

    big = tmp_path / "big.png"
    with PILImage.open(jpegs[0]) as image:
        image.convert("L").resize((2600, 2600 * image.height // image.width)).save(big)
    width, height = _size(big)
    render_files(read_raster(big.read_bytes()).pixels, tmp_path / "render.png", tmp_path / "thumb.png")
    render = np.asarray(PILImage.open(tmp_path / "render.png"))
    assert max(render.shape) == 2048
    result = _cli(catalog, env, big, "--model", detector, "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["predictions"]
    assert (row["width"], row["height"]) == (width, height)
    [prediction] = predictor.predict([render], original_sizes=[(width, height)])
    assert row["boxes"] and _corners(row["boxes"]) == pytest.approx(_corners(prediction.boxes), abs=1e-3)
    [in_render_pixels] = predictor.predict([render], original_sizes=[(render.shape[1], render.shape[0])])
    scale = width / render.shape[1]
    assert scale > 1.2 and _corners(row["boxes"]) == pytest.approx(
        [value * scale for value in _corners(in_render_pixels.boxes)], rel=1e-3)
    assert all(0 <= b["x"] and b["x"] + b["w"] <= width + 1e-3 and b["y"] + b["h"] <= height + 1e-3
               for b in row["boxes"])


def test_model_errors_are_one_clear_line(trained, workspace, tmp_path):
    from radloop.core.catalog import Catalog

    catalog, _, _, env = trained
    [jpeg] = _jpegs(1)
    result = _cli(catalog, env, jpeg, "--task", "fracture")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "no model registered for task 'fracture'" in message and "detection, findings" in message
    assert "radloop train" in message
    result = _cli(catalog, env, jpeg, "--model", "nope")
    assert result.exit_code == 2 and "no model version 'nope'" in result.output
    encoder = catalog.current_model("encoder").version
    result = _cli(catalog, env, jpeg, "--model", encoder)
    assert result.exit_code == 2 and "is an encoder" in " ".join(result.output.split())
    (tmp_path / "empty").mkdir()
    result = _cli(catalog, env, tmp_path / "empty")
    assert result.exit_code == 2 and "no image files in" in result.output

    empty = Catalog.open(workspace)  # a fresh workspace: nothing registered yet
    try:
        result = _cli(empty, {"RADLOOP_DATABASE_URL": workspace.database_url}, jpeg)
    finally:
        empty.dispose()
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "no model registered for task 'findings'" in message and "radloop train --config" in message
    assert result.output.count("error:") == 1 and "Traceback" not in result.output


def test_evaluate_names_the_coco_images_it_could_not_find(trained, tmp_path):
    """A COCO file whose images are partly missing under --images is scored on the rest, and says so."""
    from radloop.ssl.finetune_evaluate import evaluate_model
    from radloop.ssl.finetune_data import DataError

    catalog, probe, _, env = trained
    coco, image_dir = fracture_coco()
    boxed = {a["image_id"] for a in coco["annotations"]}
    chosen = ([e for e in coco["images"] if e["id"] in boxed][:3]
              + [e for e in coco["images"] if e["id"] not in boxed][:3])
    ids = {e["id"] for e in chosen}
    subset = {"categories": coco["categories"], "images": chosen,
              "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    coco_file = tmp_path / "held_out.json"
    coco_file.write_text(json.dumps(subset))
    images = tmp_path / "images"
    images.mkdir()
    for entry in chosen[1:5]:  # the first and the last are not there
        os.symlink(image_dir / entry["file_name"], images / entry["file_name"])
    metrics = evaluate_model(catalog, probe, coco=coco_file, images=images)
    assert metrics["n_images"] == 4
    [note] = [n for n in metrics.get("notes", []) if "left out" in n]
    assert f"2 of 6 images of held_out.json left out: not under {images}" in note
    assert f"(e.g. {chosen[0]['file_name']})" in note and "scored on the 4 found" in note

    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["evaluate", "--model", probe, "--coco", str(coco_file), "--images",
                                              str(images), "--workspace", str(catalog.workspace.root), "--json"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert any("2 of 6 images" in n for n in json.loads(result.stdout)["notes"])
    for entry in chosen[1:5]:
        (images / entry["file_name"]).unlink()
    with pytest.raises(DataError, match="none of the 6 images of held_out.json is under"):
        evaluate_model(catalog, probe, coco=coco_file, images=images)
    result = CliRunner().invoke(build_app(), ["evaluate", "--model", probe, "--coco", str(coco_file), "--images",
                                              str(images), "--workspace", str(catalog.workspace.root)], env=env)
    assert result.exit_code == 2 and "pass --images FOLDER" in " ".join(result.output.split())
