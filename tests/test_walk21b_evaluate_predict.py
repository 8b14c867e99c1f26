"""Walkthrough 21b: `radloop evaluate --coco` scores a model on the pixels it trained on and `radloop predict`
gives it (each file rendered in memory as ingest renders it), and `radloop predict` finds the model a user means.

One module workspace: 24 real fracture radiographs rendered at 96 px, a random tiny encoder, a probe, a fine-tuned
classifier and a detector (two steps, score threshold 0 so that it always returns boxes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from finetune_workspace import filled_catalog, fracture_coco, fresh_catalog, register_random_encoder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, test_catalog_url):
    """(catalog, {head: version}, CLI env)."""
    from radloop.ssl.finetune_config import TrainConfig
    from radloop.ssl.finetune_jobs import run_training

    catalog = fresh_catalog(tmp_path_factory, test_catalog_url, "evaluate")
    filled_catalog(catalog, catalog.workspace.root / "encoder", seed=2, render_size=96)
    jobs = {"probe": {"name": "probe-eval", "head": "probe"},
            "finetune": {"name": "clf-eval", "head": "finetune", "make_current": False,
                         "data": {"body_region": False, "max_eval_images": 2},
                         "finetune": {"max_steps": 2, "batch_size": 4, "augment": False, "calibrate": False}},
            "detect": {"name": "det-eval", "head": "detect", "data": {"body_region": False, "max_eval_images": 2},
                       "detect": {"min_size": 96, "max_size": 128, "batch_size": 2, "max_steps": 2,
                                  "fpn_channels": 16, "score_threshold": 0.0, "detections_per_image": 5}}}
    versions = {head: run_training(catalog, TrainConfig.model_validate({**job, "trainer": {"num_threads": 1}}),
                                   progress=False).version for head, job in jobs.items()}
    yield catalog, versions, {"RADLOOP_DATABASE_URL": catalog.workspace.database_url}
    catalog.dispose()


def _cli(catalog, env, *args):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), [*map(str, args), "--workspace", str(catalog.workspace.root)], env=env)


@pytest.fixture(scope="module")
def big_coco(trained, tmp_path_factory):
    """A COCO file with one 2600-px-wide PNG (a real radiograph scaled up, its fracture box scaled with it)."""
    coco, image_dir = fracture_coco()
    boxed = {a["image_id"]: a for a in coco["annotations"]}
    entry = next(e for e in sorted(coco["images"], key=lambda e: e["id"]) if e["id"] in boxed)
    folder = tmp_path_factory.mktemp("coco")
    with PILImage.open(image_dir / entry["file_name"]) as image:
        scale = 2600 / image.width
        big = image.convert("L").resize((2600, round(image.height * scale)))
    big.save(folder / "big.png")
    x, y, w, h = boxed[entry["id"]]["bbox"]
    (folder / "held_out.json").write_text(json.dumps({
        "categories": coco["categories"],
        "images": [{"id": 1, "file_name": "big.png", "width": big.width, "height": big.height}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": boxed[entry["id"]]["category_id"],
                         "bbox": [x * scale, y * scale, w * scale, h * scale]}]}))
    return folder / "held_out.json", folder / "big.png"


@pytest.mark.parametrize("head", ["probe", "finetune", "detect"])
def test_a_large_image_gets_the_same_prediction_in_evaluate_coco_as_in_predict(trained, big_coco, head,
                                                                                 monkeypatch):
    """evaluate --coco used to read the original (2600 px) where training and predict see the 2048-px render."""
    import radloop.ssl.predict as predict_module

    catalog, versions, env = trained
    coco_file, big = big_coco
    seen, inputs = [], []
    load = predict_module.predictor_for_version

    def recording(*args, **kwargs):
        predictor = load(*args, **kwargs)
        plain = predictor.predict

        def predict(images, *rest, **options):
            results = plain(images, *rest, **options)
            seen.extend(results)
            inputs.extend(images)
            return results

        predictor.predict = predict
        return predictor

    monkeypatch.setattr(predict_module, "predictor_for_version", recording)
    evaluated = _cli(catalog, env, "evaluate", "--model", versions[head], "--coco", coco_file, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["n_images"] == 1
    [in_evaluate] = seen
    [pixels] = inputs  # the render `radloop predict` and the catalog give the model, not the 2600-px original
    assert isinstance(pixels, np.ndarray) and np.array_equal(pixels, predict_module.read_rendered(big)[0])
    assert max(pixels.shape) == 2048
    monkeypatch.setattr(predict_module, "predictor_for_version", load)
    predicted = _cli(catalog, env, "predict", big, "--model", versions[head], "--json")
    assert predicted.exit_code == 0, predicted.output
    [row] = json.loads(predicted.stdout)["predictions"]
    assert row["findings"] == pytest.approx(in_evaluate.choices, abs=1e-6)
    assert row["regions"] == pytest.approx(in_evaluate.regions, abs=1e-6)
    corners = [value for b in row["boxes"] for value in (b["x"], b["y"], b["w"], b["h"], b["score"])]
    assert corners == pytest.approx([value for b in in_evaluate.boxes for value in (b.x, b.y, b.w, b.h, b.score)],
                                    abs=1e-4)
    if head == "detect":  # in the original's pixels: beyond the 2048-px render
        assert corners and row["width"] == 2600 and max(b.x + b.w for b in in_evaluate.boxes) <= 2600 + 1e-3


def test_an_unreadable_coco_image_is_left_out_with_a_note(trained, big_coco, tmp_path):
    """A broken file among a COCO file's images used to stop the whole evaluation."""
    catalog, versions, env = trained
    coco_file, big = big_coco
    coco = json.loads(coco_file.read_text())
    (tmp_path / "big.png").symlink_to(big)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    coco["images"].append({"id": 2, "file_name": "broken.png", "width": 100, "height": 100})
    (tmp_path / "held_out.json").write_text(json.dumps(coco))
    result = _cli(catalog, env, "evaluate", "--model", versions["probe"], "--coco", tmp_path / "held_out.json",
                  "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n_images"] == 1
    assert any(note.startswith("1 of 2 images left out: unreadable") and "broken.png" in note
               for note in metrics["notes"]), metrics["notes"]
    (tmp_path / "big.png").unlink()
    (tmp_path / "big.png").write_bytes(b"")
    result = _cli(catalog, env, "evaluate", "--model", versions["probe"], "--coco", tmp_path / "held_out.json")
    assert result.exit_code == 2 and "none of the 2 images could be read" in " ".join(result.output.split())


def test_a_coco_file_without_image_sizes_or_with_a_broken_box_is_read_or_named(trained, big_coco, tmp_path):
    """A COCO file without images' width/height (optional for many exporters) used to stop evaluate with a
    KeyError traceback, and so did an annotation without a usable bbox."""
    catalog, versions, env = trained
    coco_file, big = big_coco
    coco = json.loads(coco_file.read_text())
    (tmp_path / "big.png").symlink_to(big)
    for entry in coco["images"]:
        del entry["width"], entry["height"]
    (tmp_path / "sizeless.json").write_text(json.dumps(coco))
    result = _cli(catalog, env, "evaluate", "--model", versions["detect"], "--coco", tmp_path / "sizeless.json",
                  "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    expected = json.loads(_cli(catalog, env, "evaluate", "--model", versions["detect"], "--coco", coco_file,
                               "--json").stdout)
    assert metrics["n_images"] == 1 and metrics["map50"] == pytest.approx(expected["map50"])
    coco["annotations"][0]["bbox"] = [1, 2, 3]
    (tmp_path / "broken.json").write_text(json.dumps(coco))
    result = _cli(catalog, env, "evaluate", "--model", versions["probe"], "--coco", tmp_path / "broken.json")
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "annotation #0 (id 1) has no usable category_id, bbox" in message
    assert "Traceback" not in result.output
    (tmp_path / "none.json").write_text(json.dumps({"categories": coco["categories"], "images": []}))
    result = _cli(catalog, env, "evaluate", "--model", versions["probe"], "--coco", tmp_path / "none.json")
    assert result.exit_code == 2 and "lists no images: nothing to evaluate on" in " ".join(result.output.split())
    (tmp_path / "list.json").write_text("[]")
    result = _cli(catalog, env, "evaluate", "--model", versions["probe"], "--coco", tmp_path / "list.json")
    assert result.exit_code == 2 and "cannot read COCO file" in result.output


def test_predict_without_task_uses_the_only_head_when_there_is_no_findings_model(trained, workspace, tmp_path):
    """A workspace whose only head is a detector (or a job with its own task): `radloop predict FILE` used to
    refuse ("no model registered for task 'findings'") although there is one model it can only mean."""
    from radloop.core.catalog import Catalog
    from radloop.core.registry import register_model

    catalog, versions, _env = trained
    other = Catalog.open(workspace)
    try:
        register_random_encoder(other, tmp_path / "encoder")
        source = catalog.workspace.models_dir / versions["detect"]
        register_model(other, versions["detect"], kind="detector", task="detection", path=source,
                       make_current=True)
        env = {"RADLOOP_DATABASE_URL": workspace.database_url}
        coco, image_dir = fracture_coco()
        jpeg = Path(image_dir) / min(coco["images"], key=lambda e: e["id"])["file_name"]
        result = _cli(other, env, "predict", jpeg, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["model"] == versions["detect"]
        refused = _cli(other, env, "predict", jpeg, "--task", "findings")
        assert refused.exit_code == 2 and "no model registered for task 'findings'" in " ".join(refused.output.split())
    finally:
        other.dispose()
