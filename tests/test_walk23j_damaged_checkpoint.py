"""Walkthrough 23j (storage): ``radloop pretrain`` resuming from a ``last.ckpt`` cut short by a crash or a full
disk: the file is named as damaged, with the earlier checkpoint to resume from (or starting again)."""

from __future__ import annotations

import pytest

from ssl_workspace import build_workspace
from test_walk21g_ssl_storage import _error_line, _pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_last_checkpoint_cut_short_is_named_damaged_with_the_checkpoint_to_resume_from(catalog, tmp_path):
    """Before: "checkpoints/last.ckpt is not a radloop pretraining checkpoint (RuntimeError)", as if it were some
    other file.  Now: it is damaged (cut short), and the whole step-N.ckpt beside it (--checkpoint) is named; with
    none there, --no-resume."""
    build_workspace(catalog, 8)
    run_dir = tmp_path / "run"
    first = _pretrain(catalog, run_dir)
    assert first.exit_code == 0, first.output
    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    earlier = sorted(folder.glob("step-*.ckpt"))
    assert earlier, sorted(path.name for path in folder.iterdir())

    again = _pretrain(catalog, run_dir)
    assert again.exit_code == 2, again.output
    message = _error_line(again.output)
    assert f"{last} is damaged (cut short" in message, message
    assert f"--checkpoint {earlier[-1]}" in message and "--no-resume" in message, message
    assert "not a radloop pretraining checkpoint" not in message

    for path in earlier:
        path.unlink()
    alone = _pretrain(catalog, run_dir)
    assert alone.exit_code == 2, alone.output
    message = _error_line(alone.output)
    assert f"{last} is damaged" in message and "no earlier step-N.ckpt" in message and "--no-resume" in message


def test_a_foreign_file_is_still_not_a_radloop_checkpoint(catalog, tmp_path):
    """A file that is no torch checkpoint at all keeps its own message (it is not called damaged)."""
    build_workspace(catalog, 8)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_text("notes, not a checkpoint\n")
    result = _pretrain(catalog, run_dir)
    assert result.exit_code == 2, result.output
    assert "is not a radloop pretraining checkpoint" in _error_line(result.output), result.output
