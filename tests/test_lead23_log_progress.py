"""Without a progress bar (stderr a log file or pipe: cron, CI), long training and embedding print a plain line
at most once a minute instead of nothing for hours (walk 23a turned the bars off there)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from radloop.ssl import trainer_progress


def _trainer(step, max_steps=100, rank=0, metrics=None):
    return SimpleNamespace(global_step=step, max_steps=max_steps, global_rank=rank,
                           callback_metrics=metrics or {}, num_predict_batches=[40])


def test_lines_name_the_step_rate_time_left_and_loss(capsys):
    import torch

    clock = iter([0.0, 30.0, 61.0, 62.0, 130.0])
    callback = trainer_progress.log_line_callback(60.0, clock=lambda: next(clock))
    callback.setup(_trainer(0), None, "fit")
    for step in (10, 13, 16, 17, 24):
        callback.on_train_batch_end(_trainer(step, metrics={"train/loss": torch.tensor(0.53125)}), None, None,
                                    None, step)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["training: step 16/100 (16%), 0.10 steps/s, about 14 min left, loss 0.5312",
                     "training: step 24/100 (24%), 0.11 steps/s, about 12 min left, loss 0.5312"]


def test_only_the_first_process_prints(capsys):
    clock = iter([0.0, 100.0])
    callback = trainer_progress.log_line_callback(60.0, clock=lambda: next(clock))
    callback.setup(_trainer(0, rank=1), None, "predict")
    for batch in (0, 5):
        callback.on_predict_batch_end(_trainer(0, rank=1), None, None, None, batch)
    assert capsys.readouterr().err == ""


def test_trainer_callbacks_without_a_bar(monkeypatch):
    monkeypatch.setattr(trainer_progress, "LOG_LINES_WITHOUT_BAR", None)
    assert trainer_progress.trainer_callbacks(False) == []
    monkeypatch.setattr(trainer_progress, "LOG_LINES_WITHOUT_BAR", 60.0)
    [callback] = trainer_progress.trainer_callbacks(False)
    assert type(callback).__name__ == "LogLines"


@pytest.mark.parametrize("terminal", [False])
def test_the_cli_turns_log_lines_on_when_stderr_is_no_terminal(terminal, tmp_path):
    code = ("import sys; from radloop.app import cli; cli.build_app = lambda: (lambda: None); cli.main(); "
            "from radloop.ssl import trainer_progress as t; print(t.LOG_LINES_WITHOUT_BAR)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "60.0"
