"""``trainer.fit_schedule_to_time``: the LR schedule ends when ``max_time`` runs out, not at ``max_steps``.

The runs use Lightning's Timer on a step clock (every optimizer step "takes" a fixed number of seconds), so the
budgets, the measured rate and the fitted totals are exact, whatever the load on the machine.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.trainer.states import RunningStage

from lightning_helpers import StopAtStep
from ssl_workspace import build_workspace

from radloop.core.config import ConfigError, load_config
from radloop.ssl.pretrain import pretrain
from radloop.ssl.pretrain_module import warmup_cosine
from radloop.ssl.settings import PretrainConfig

#: timm's tiny test network: the runs take about a second
LR, MIN_LR_RATIO = 1e-3, 0.01
TINY = ["method=simclr", "model.timm_name=test_resnet", "model.image_size=32", "simclr.projection_hidden_dim=64",
        "simclr.projection_dim=16", "data.crop_size=32", "data.batch_size=8", "data.cache_size=40",
        "trainer.checkpoint_every_n_steps=1000", "trainer.enable_progress_bar=false", "trainer.num_threads=1",
        "trainer.loggers=[csv]", "trainer.log_every_n_steps=1", f"optim.lr={LR}", f"optim.min_lr_ratio={MIN_LR_RATIO}"]
#: 100 steps planned, 20 s of budget at 1 s a step: the warm-up (5 steps) would end at 5 s, 15 % of the
#: budget (3 s) comes first: fitted at step 3 with 17 s left -> 3 + floor(0.9 * 17) = 18 steps
BUDGET = ["trainer.max_steps=100", "trainer.max_time=00:00:00:20"]
FITTED_AT, FITTED_STEPS = 3, 18

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class StepClock(Timer):
    """Lightning's Timer on a clock that advances ``seconds_per_step`` per optimizer step (plus ``startup``
    seconds on the first step of each (re)start, which the schedule fitting must not count)."""

    def __init__(self, seconds: float, seconds_per_step: float = 1.0, startup: float = 0.0) -> None:
        super().__init__(duration={"seconds": seconds}, interval="step")
        self.seconds_per_step, self.startup = seconds_per_step, startup
        self._trainer, self._first_step = None, 0

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._trainer, self._first_step = trainer, trainer.global_step

    def time_elapsed(self, stage: str = RunningStage.TRAINING) -> float:
        if RunningStage(stage) != RunningStage.TRAINING:
            return 0.0
        steps = self._trainer.global_step - self._first_step if self._trainer is not None else 0
        return self._offset + (self.startup if steps else 0.0) + steps * self.seconds_per_step


def _config(*extra: str) -> PretrainConfig:
    return load_config(None, PretrainConfig, TINY + BUDGET + list(extra))


def _logged_lrs(run_dir) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return [float(row["train/lr"]) for row in csv.DictReader(handle) if row.get("train/lr")]


def _final_lr(run_dir) -> float:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return state["optimizer_states"][0]["param_groups"][0]["lr"]


def test_fitted_schedule_decays_fully_and_stops_before_max_time(catalog, tmp_path, caplog):
    build_workspace(catalog, 16)
    clock = StepClock(20, startup=4.0)  # a slow first step: excluded from the rate, counted in the budget
    with caplog.at_level(logging.INFO, logger="radloop.ssl.pretrain_module"):
        result = pretrain(catalog, _config("trainer.fit_schedule_to_time=true"), tmp_path / "run",
                          register=False, callbacks=[clock])
    # 4 s start-up + 1 s a step: at step 3 (7 s > 3 s) 13 s are left -> 3 + floor(0.9 * 13) = 14 steps at 1 step/s
    assert result.steps == result.scheduled_steps == 14 and result.total_steps == 100
    assert clock.time_elapsed() == 4 + 14 < 20  # it stopped itself, before max_time
    assert "schedule fitted to time: 14 steps at 1 steps/s" in caplog.text
    assert _final_lr(tmp_path / "run") == pytest.approx(MIN_LR_RATIO * LR)
    # warm-up over the planned 100 steps (5) until the fit at step 3, which ends it there; cosine to step 14
    # (the lr logged after step k is the one of step k + 1)
    expected = [warmup_cosine(step, 100, 5, MIN_LR_RATIO) for step in range(1, 3)] \
        + [warmup_cosine(step, 14, 3, MIN_LR_RATIO) for step in range(3, 15)]
    assert _logged_lrs(tmp_path / "run") == pytest.approx([LR * factor for factor in expected])
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 14


def test_fit_at_the_end_of_the_warm_up_keeps_it(catalog, tmp_path):
    build_workspace(catalog, 16)
    # 40 s: 15 % (6 s) comes after the 3-step warm-up, which is timed from step 1 to 3 (2 s >= 5 % of 40 s)
    result = pretrain(catalog, _config("optim.warmup_steps=3", "trainer.max_time=00:00:00:40",
                                       "trainer.fit_schedule_to_time=true"),
                      tmp_path / "run", register=False, callbacks=[StepClock(40)])
    assert result.steps == result.scheduled_steps == 3 + int(0.9 * 37)
    expected = [warmup_cosine(step, 100, 3, MIN_LR_RATIO) for step in range(1, 3)] \
        + [warmup_cosine(step, 36, 3, MIN_LR_RATIO) for step in range(3, 37)]
    assert _logged_lrs(tmp_path / "run") == pytest.approx([LR * factor for factor in expected])


def test_without_the_setting_max_time_still_cuts_the_schedule(catalog, tmp_path, caplog):
    """Default behaviour unchanged: the schedule is laid out over max_steps and max_time stops it midway."""
    build_workspace(catalog, 16)
    with caplog.at_level(logging.INFO, logger="radloop.ssl.pretrain_module"):
        result = pretrain(catalog, _config(), tmp_path / "run", register=False, callbacks=[StepClock(20)])
    assert result.steps == 20 and result.scheduled_steps == result.total_steps == 100
    assert "schedule fitted" not in caplog.text
    assert _logged_lrs(tmp_path / "run")[-1] == pytest.approx(LR * warmup_cosine(20, 100, 5, MIN_LR_RATIO))
    assert _logged_lrs(tmp_path / "run")[-1] > 0.5 * LR  # left near its peak


def test_a_budget_spent_before_the_fit_is_said(catalog, tmp_path, caplog):
    """max_time used up by the start-up before a few steps could be timed: the run says the schedule was never fitted
    (the encoder stopped at warm-up LR) instead of passing silently."""
    build_workspace(catalog, 16)
    with caplog.at_level(logging.INFO, logger="radloop.ssl.pretrain_module"):
        result = pretrain(catalog, _config("trainer.fit_schedule_to_time=true"), tmp_path / "run", register=False,
                          callbacks=[StepClock(20, startup=19.5, seconds_per_step=1.0)])
    assert result.steps < 3 and result.scheduled_steps == result.total_steps
    assert "schedule fitted" not in caplog.text
    assert "max_time ran out after" in caplog.text and "before the schedule could be fitted" in caplog.text


def test_resume_keeps_the_fitted_total(catalog, tmp_path):
    build_workspace(catalog, 16)
    config = _config("trainer.fit_schedule_to_time=true", "trainer.checkpoint_every_n_steps=2")
    straight = pretrain(catalog, config, tmp_path / "straight", register=False, callbacks=[StepClock(20)])
    assert straight.steps == straight.scheduled_steps == FITTED_STEPS
    run = tmp_path / "resumed"
    first = pretrain(catalog, config, run, register=False, callbacks=[StepClock(20), StopAtStep(6)])
    assert first.steps == 6 and first.scheduled_steps == FITTED_STEPS
    # a faster machine now (0.1 s a step): fitting again would plan more steps; the checkpoint's total is kept
    resumed = pretrain(catalog, config, run, register=False, callbacks=[StepClock(20, seconds_per_step=0.1)])
    assert resumed.resumed_from.endswith("last.ckpt")
    assert resumed.steps == resumed.scheduled_steps == FITTED_STEPS
    assert resumed.version == straight.version  # the same schedule: the same weights
    assert _final_lr(run) == pytest.approx(MIN_LR_RATIO * LR)
    # a finished fitted run: rerun, nothing more is trained; longer settings are refused naming its end
    again = pretrain(catalog, config, run, register=False, callbacks=[StepClock(20)])
    assert again.steps == again.scheduled_steps == FITTED_STEPS
    with pytest.raises(ValueError, match=f"finished its {FITTED_STEPS}-step schedule"):
        pretrain(catalog, _config("trainer.fit_schedule_to_time=true", "trainer.checkpoint_every_n_steps=2",
                                  "trainer.max_steps=200"), run, register=False)


def test_a_run_resumed_before_the_fit_is_fitted_after_it(catalog, tmp_path):
    build_workspace(catalog, 16)
    config = _config("trainer.fit_schedule_to_time=true", "trainer.checkpoint_every_n_steps=2")
    run = tmp_path / "run"
    first = pretrain(catalog, config, run, register=False, callbacks=[StepClock(20), StopAtStep(2)])
    assert first.steps == 2 and first.scheduled_steps == 100  # not fitted yet
    # resumed with 2 s spent: timed from step 3, fitted at step 5 (5 s >= 2 s) with 15 s left -> 5 + 13
    resumed = pretrain(catalog, config, run, register=False, callbacks=[StepClock(20)])
    assert resumed.steps == resumed.scheduled_steps == 18
    assert _final_lr(run) == pytest.approx(MIN_LR_RATIO * LR)


def _script_two_processes(root: str, out: str, records: str) -> None:
    """One rank of a 2-process DDP run whose ranks' clocks disagree (rank 1's runs 4x faster)."""
    from lightning.pytorch.utilities import rank_zero_only

    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace

    catalog = Catalog.open(resolve_workspace(root), create=False)
    config = _config("trainer.fit_schedule_to_time=true", "trainer.accelerator=cpu", "trainer.devices=2",
                     "trainer.strategy=ddp", "data.batch_size=4")
    clock = StepClock(20, seconds_per_step=1.0 if int(os.environ.get("LOCAL_RANK", "0")) == 0 else 0.25)
    result = pretrain(catalog, config, out, register=False, callbacks=[clock])
    Path(records).mkdir(parents=True, exist_ok=True)
    (Path(records) / f"result-{rank_zero_only.rank}.json").write_text(json.dumps(result.to_json()))


def test_every_process_stops_at_rank_zeros_fitted_total(catalog, tmp_path):
    """Each process fitting on its own clock would stop at its own step and leave the other waiting in a
    collective (a hang, killed by the timeout): rank 0's measurement is used by both."""
    build_workspace(catalog, 16)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if catalog.workspace.database_url:
        env["RADLOOP_DATABASE_URL"] = catalog.workspace.database_url
    process = subprocess.Popen([sys.executable, __file__, str(catalog.workspace.root), str(tmp_path / "run"),
                                str(tmp_path / "records")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the 2-process run hung (killed after 240 s):\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    results = [json.loads((tmp_path / "records" / f"result-{rank}.json").read_text()) for rank in range(2)]
    assert [(result["steps"], result["scheduled_steps"]) for result in results] == [(FITTED_STEPS, FITTED_STEPS)] * 2


def test_the_setting_needs_max_time():
    with pytest.raises(ConfigError, match="fit_schedule_to_time fits the schedule into trainer.max_time"):
        load_config(None, PretrainConfig, TINY + ["trainer.max_steps=100", "trainer.fit_schedule_to_time=true"])
    assert not load_config(None, PretrainConfig, TINY + BUDGET).trainer.fit_schedule_to_time  # off by default


def test_the_demo_fits_its_pretraining_to_its_minutes():
    from radloop.app.demo import _default_config, pretrain_overrides

    config = load_config(_default_config("ssl/simclr_cpu.yaml"), PretrainConfig, pretrain_overrides(2.5))
    assert config.trainer.fit_schedule_to_time and config.trainer.max_time == "00:00:02:30"
    assert config.trainer.max_steps == 150


if __name__ == "__main__":  # a Lightning DDP launch re-runs this file once per extra process
    _script_two_processes(*sys.argv[1:])


def test_the_progress_bar_total_follows_the_fitted_schedule(catalog, tmp_path):
    """The training bar first counts to max_steps, then, once the schedule is fitted, to the fitted total."""
    from lightning.pytorch.callbacks import Callback

    class BarTotals(Callback):
        def __init__(self) -> None:
            self.totals: list = []

        def on_train_batch_end(self, trainer, *_args) -> None:
            self.totals.append(trainer.progress_bar_callback.train_progress_bar.total)

    build_workspace(catalog, 16)
    seen = BarTotals()
    result = pretrain(catalog, _config("trainer.fit_schedule_to_time=true", "trainer.enable_progress_bar=true"),
                      tmp_path / "run", register=False, callbacks=[StepClock(20), seen])
    assert result.steps == result.scheduled_steps == FITTED_STEPS
    assert seen.totals[0] == 100 and seen.totals[-1] == FITTED_STEPS


def test_a_resumed_fitted_run_counts_to_the_fitted_total(catalog, tmp_path):
    """Resumed mid-epoch after the fit, the bar counts from the restored step to the fitted total (the run's
    max_steps), not to the planned max_steps' batches."""
    from lightning.pytorch.callbacks import Callback

    class Bars(Callback):
        def __init__(self) -> None:
            self.rows: list = []

        def on_train_batch_end(self, trainer, *_args) -> None:
            bar = trainer.progress_bar_callback.train_progress_bar
            self.rows.append((trainer.global_step, bar.initial, bar.total))

    build_workspace(catalog, 16)
    config = _config("trainer.fit_schedule_to_time=true", "trainer.checkpoint_every_n_steps=2",
                     "trainer.enable_progress_bar=true")
    first, resumed = Bars(), Bars()
    pretrain(catalog, config, tmp_path / "run", register=False, callbacks=[StepClock(20), StopAtStep(6), first])
    result = pretrain(catalog, config, tmp_path / "run", register=False,
                      callbacks=[StepClock(20, seconds_per_step=0.1), resumed])
    assert result.resumed_from and result.steps == FITTED_STEPS
    assert first.rows[-1][2] == FITTED_STEPS
    assert {(initial, total) for _, initial, total in resumed.rows} == {(6, FITTED_STEPS)}
