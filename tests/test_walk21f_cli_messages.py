"""What the CLI prints for config errors, for `bench predict` without --task, and for images over Pillow's
decompression-bomb warning limit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from radloop.app.cli import build_app

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _invoke(catalog, *args: str):
    return CliRunner().invoke(build_app(), [*args, "-w", str(catalog.workspace.root)], terminal_width=400,
                              env={"COLUMNS": "400"})


# ------------------------------------------------------------------------------------------ config errors
@pytest.mark.parametrize(("command", "config", "override", "expected"), [
    (["pretrain"], "ssl/simclr_cpu.yaml", "trainer.max_step=5",
     "unknown key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
    (["train"], "finetune/probe_cpu.yaml", "data.max_train_images=1",
     "with --set data.max_train_images=1: data.max_train_images=1: a probe head needs at least 2 training images"),
    (["round", "start"], "rounds/default.yaml", "strategy_param={a: 1}",
     "unknown key 'strategy_param' (did you mean 'strategy_params'?)"),
    (["index", "build"], "retrieval/index.yaml", "metric=cos", "(got 'cos'; did you mean 'cosine'?)"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_a_config_error_is_one_error_line(catalog, command, config, override, expected):
    file = CONFIGS / config
    result = _invoke(catalog, *command, "--config", str(file), "--set", override)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: invalid config {file}") and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Value error" not in result.output, result.output


# ------------------------------------------------------------------------------------------ bench predict --task
def _register(catalog, version: str, task: str) -> None:
    from radloop.core.registry import register_model

    folder = catalog.workspace.root / "models" / version
    folder.mkdir(parents=True)
    register_model(catalog, version, "detector" if task == "detection" else "probe", task, folder,
                   make_current=True)


def test_bench_predict_times_the_one_task_with_a_model_when_task_is_left_out(catalog, monkeypatch):
    """It always timed `findings`: a workspace with only a detector got "no current model for task 'findings'"
    where `radloop predict` used the detector."""
    import radloop.ssl.finetune_bench as finetune_bench

    timed: list[str] = []

    def fake_latency(catalog, task, **_):
        timed.append(task)
        return {"task": task}

    monkeypatch.setattr(finetune_bench, "predict_latency", fake_latency)
    nothing = _invoke(catalog, "bench", "predict")
    assert nothing.exit_code == 2 and "no model registered for task 'findings'" in nothing.output, nothing.output
    _register(catalog, "detect-1", "detection")
    result = _invoke(catalog, "bench", "predict", "--json")
    assert result.exit_code == 0 and timed == ["detection"], result.output
    refused = _invoke(catalog, "bench", "predict", "--task", "findings")
    assert refused.exit_code == 2 and "(tasks with models: detection; pass --task or --model)" in refused.output
    _register(catalog, "probe-1", "findings")
    assert _invoke(catalog, "bench", "predict").exit_code == 0 and timed == ["detection", "findings"]
    assert _invoke(catalog, "bench", "predict", "--task", "detection").exit_code == 0 and timed[-1] == "detection"


# ------------------------------------------------------------------------------------------ very large images
@pytest.fixture
def large_png(tmp_path, monkeypatch):
    """A 12 x 10 PNG with Pillow's warning limit at 100 pixels (the real one is ~89 megapixels)."""
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "large.png"
    PILImage.fromarray(np.full((10, 12), 128, np.uint8)).save(path)
    return path  # pytest restores the warnings filters after each test: the one note_large_images adds goes


def test_predict_notes_a_large_image_once_in_its_own_words(catalog, large_png):
    _register(catalog, "probe-1", "findings")
    result = _invoke(catalog, "predict", str(large_png))
    note = (f"note: {large_png}: 12 x 10 pixels (0.0 megapixels) is over Pillow's decompression-bomb warning limit "
            f"(0.0 megapixels); decoded anyway")
    assert result.output.count(note) == 1, result.output
    assert "DecompressionBombWarning" not in result.output


def test_search_notes_a_large_query_once_and_pillow_not_at_all(catalog, large_png, recwarn):
    result = _invoke(catalog, "search", "--image", str(large_png))
    assert result.output.count(f"note: {large_png}: 12 x 10 pixels") == 1, result.output
    assert not [w for w in recwarn if issubclass(w.category, PILImage.DecompressionBombWarning)]


def test_a_search_query_decoded_twice_shows_pillows_warning_no_more(large_png):
    """A search query is decoded for the catalog lookup, then to embed; a warnings filter changed in between
    (importing Lightning does) showed Pillow's two-line warning twice."""
    from radloop.app.options import note_large_images
    from radloop.core.ingest_worker import file_pixel_hash
    from radloop.ssl.pixels import read_image

    note_large_images([large_png])
    with warnings.catch_warnings(record=True) as shown:
        file_pixel_hash(large_png.read_bytes())  # the catalog lookup
        warnings.filterwarnings("ignore", message="something else")  # the registry of shown warnings is reset
        read_image(large_png)  # the embedding
    assert [w for w in shown if issubclass(w.category, PILImage.DecompressionBombWarning)] == []


def test_large_image_note_leaves_small_refused_and_non_images_alone(tmp_path, large_png):
    from radloop.core.render import large_image_note

    small = tmp_path / "small.png"
    PILImage.fromarray(np.zeros((5, 5), np.uint8)).save(small)
    huge = tmp_path / "huge.png"  # over twice the limit: Pillow refuses it, decoding says so
    PILImage.fromarray(np.zeros((20, 20), np.uint8)).save(huge)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert [large_image_note(path) for path in (small, huge, text, tmp_path / "missing.png")] == [None] * 4
    with pytest.warns(PILImage.DecompressionBombWarning):  # Pillow's own, which the commands filter out first
        assert large_image_note(large_png).startswith(f"{large_png}: 12 x 10 pixels")
