"""Walkthrough 23e (storage): trained heads' model files (``save_artifact``) on a full disk, and cut short by a
crash (``read_artifact``)."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from radloop.ssl import artifacts
from radloop.ssl.artifacts import read_artifact, save_artifact
from storage_faults import DISK_FULL, safetensors_disk_full

WEIGHTS, CONFIG = "head.safetensors", "head.json"


def _module(value: float) -> torch.nn.Module:
    module = torch.nn.Linear(4, 2)
    torch.nn.init.constant_(module.weight, value)
    return module


def test_a_full_disk_while_exporting_a_model_keeps_the_previous_files_whole(tmp_path):
    """safetensors on a real full disk raises ``SafetensorError('Error while serializing: I/O error: No space
    left on device (os error 28)')``, no OSError: before, `radloop train` ended in that traceback with half a
    weights file written over the folder's own; now an OSError naming the file and saying disk full, the
    previous weights and config untouched, and no temporary file."""
    save_artifact(_module(1.0), tmp_path, WEIGHTS, CONFIG, {"round": 1})
    with safetensors_disk_full(), pytest.raises(OSError) as caught:
        save_artifact(_module(2.0), tmp_path, WEIGHTS, CONFIG, {"round": 2})
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(tmp_path / WEIGHTS))
    assert caught.value.strerror == f"{DISK_FULL}: could not write the weights file {WEIGHTS}"
    assert sorted(path.name for path in tmp_path.iterdir()) == [CONFIG, WEIGHTS]
    state, meta = read_artifact(tmp_path, WEIGHTS, CONFIG)
    assert meta == {"round": 1} and float(state["weight"][0, 0]) == 1.0


def test_a_full_disk_while_writing_the_config_keeps_the_previous_weights(tmp_path, monkeypatch):
    """The weights fit but the JSON does not: neither file is replaced (the new weights never sit beside the
    old config)."""
    save_artifact(_module(1.0), tmp_path, WEIGHTS, CONFIG, {"round": 1})
    real_fsync = artifacts.os.fsync
    calls = []

    def second_fsync_fails(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(artifacts.os, "fsync", second_fsync_fails)
    with pytest.raises(OSError) as caught:
        save_artifact(_module(2.0), tmp_path, WEIGHTS, CONFIG, {"round": 2})
    assert caught.value.filename == str(tmp_path / CONFIG) and caught.value.strerror.startswith(DISK_FULL)
    monkeypatch.undo()
    state, meta = read_artifact(tmp_path, WEIGHTS, CONFIG)
    assert meta == {"round": 1} and float(state["weight"][0, 0]) == 1.0
    assert sorted(path.name for path in tmp_path.iterdir()) == [CONFIG, WEIGHTS]


@pytest.mark.parametrize("damaged", [WEIGHTS, CONFIG])
def test_a_model_file_cut_short_by_a_crash_is_named_as_damaged(tmp_path, damaged):
    """A weights file or JSON sidecar cut in half (a crash, a copy stopped midway): before, a ``SafetensorError``
    traceback for the weights (a JSONDecodeError for the config, naming no file); now a ValueError naming the
    file, which the commands print as one line."""
    save_artifact(_module(1.0), tmp_path, WEIGHTS, CONFIG, {"round": 1, "labels": ["a", "b"]})
    path = tmp_path / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError) as caught:
        read_artifact(tmp_path, WEIGHTS, CONFIG)
    assert f"the model file {path} is damaged" in str(caught.value) and "train again" in str(caught.value)
    assert not isinstance(caught.value, json.JSONDecodeError)
