"""Walkthrough 23j (storage): an exported encoder on a full disk (``save_encoder``) and its files cut short or
garbled (``load_encoder``, and the CLI's one error line)."""

from __future__ import annotations

import errno
import json

import pytest
from typer.testing import CliRunner

from radloop.app.cli import build_app
from radloop.ssl.encoders import ENCODER_CONFIG_FILE, ENCODER_WEIGHTS_FILE, load_encoder, random_encoder, save_encoder
from storage_faults import DISK_FULL, safetensors_disk_full

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _export(folder, seed: int):
    bundle = random_encoder("test_resnet", 32, seed=seed)
    return save_encoder(bundle.model.backbone, folder, timm_name="test_resnet", image_size=32, method="simclr")


def test_a_full_disk_while_exporting_an_encoder_is_an_oserror_and_keeps_the_previous_files(tmp_path):
    """safetensors on a full disk raises ``SafetensorError('... No space left on device (os error 28)')``, no
    OSError: before, that traceback escaped pretraining's export-failure handling with half a weights file
    written; now an OSError naming encoder.safetensors and the cause, the previous export untouched."""
    first = _export(tmp_path, seed=0)
    with safetensors_disk_full(), pytest.raises(OSError) as caught:
        _export(tmp_path, seed=1)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(tmp_path / ENCODER_WEIGHTS_FILE))
    assert caught.value.strerror == f"{DISK_FULL}: could not write the weights file {ENCODER_WEIGHTS_FILE}"
    assert sorted(path.name for path in tmp_path.iterdir()) == [ENCODER_CONFIG_FILE, ENCODER_WEIGHTS_FILE]
    assert load_encoder(tmp_path).version == first.version


def _cut_weights(folder):
    weights = folder / ENCODER_WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return weights


def _cut_config(folder):
    config = folder / ENCODER_CONFIG_FILE
    config.write_text(config.read_text()[:40])
    return config


def _garble_config(folder):
    config = folder / ENCODER_CONFIG_FILE
    config.write_text(json.dumps({"timm_name": "test_resnet"}))
    return config


@pytest.mark.parametrize("damage", [_cut_weights, _cut_config, _garble_config])
def test_a_damaged_encoder_file_is_a_valueerror_naming_it(tmp_path, damage):
    """Before: a cut-short encoder.safetensors raised a SafetensorError traceback; a cut-short or garbled
    encoder.json a multi-line pydantic error naming no file.  Now a ValueError naming the file and what to do."""
    _export(tmp_path, seed=0)
    damaged = damage(tmp_path)
    with pytest.raises(ValueError) as caught:
        load_encoder(tmp_path)
    message = str(caught.value)
    assert str(damaged) in message and "\n" not in message, message
    assert "damaged" in message and "rerun the radloop pretrain command" in message, message


@pytest.mark.parametrize("damage", [_cut_weights, _cut_config])
def test_the_cli_prints_a_damaged_encoder_as_one_line(tmp_path, damage):
    """``radloop reexport-encoder`` (as ``search``, ``embed``: every command loading an encoder folder) prints
    the damaged file as one error line, exit code 2, no traceback."""
    source = tmp_path / "encoder"
    _export(source, seed=0)
    damaged = damage(source)
    result = CliRunner().invoke(build_app(), ["reexport-encoder", str(source), "--out", str(tmp_path / "copy")],
                                terminal_width=400, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(damaged) in lines[0], result.output
