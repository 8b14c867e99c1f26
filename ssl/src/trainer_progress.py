"""Lightning progress reporting shared by pretraining, fine-tuning, detection training and embedding."""

from __future__ import annotations

import sys
import time

__all__ = ["LOG_LINES_WITHOUT_BAR", "log_line_callback", "trainer_callbacks"]

#: seconds between plain progress lines on stderr when no bar is drawn; ``None``: none.  The CLI sets it when
#: stderr is a file or a pipe (a cron job's log, CI), where a bar would be one line of carriage returns and no bar
#: left a long pretraining silent for hours; library callers (notebooks) keep the default, nothing.
LOG_LINES_WITHOUT_BAR: float | None = None


def trainer_callbacks(progress: bool) -> list:
    """Lightning callbacks: a progress bar on stderr (stdout carries ``--json`` output) when wanted.

    Lightning's own bars (its rich bar, or tqdm's) write to stdout; every bar here (training, validation,
    sanity check, prediction, test) writes to stderr.  Trainers built with these callbacks and
    ``enable_progress_bar=progress`` get no bar of Lightning's when ``progress`` is false; then a plain line every
    :data:`LOG_LINES_WITHOUT_BAR` seconds, when set.
    """
    if not progress:
        return [] if LOG_LINES_WITHOUT_BAR is None else [log_line_callback(LOG_LINES_WITHOUT_BAR)]
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

    class StderrProgressBar(TQDMProgressBar):
        def _bar(self, desc: str, position_offset: int = 0, leave: bool = True, **kwargs) -> Tqdm:
            return Tqdm(desc=desc, position=2 * self.process_position + position_offset, disable=self.is_disabled,
                        leave=leave, dynamic_ncols=True, file=sys.stderr, bar_format=self.BAR_FORMAT, **kwargs)

        def init_train_tqdm(self) -> Tqdm:
            return self._bar(self.train_description, smoothing=0)

        def on_train_start(self, trainer, pl_module) -> None:
            super().on_train_start(trainer, pl_module)
            done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            if not done:  # a fresh epoch: on_train_epoch_start gives the bar its total and description
                return
            # Resumed mid-epoch, Lightning skips on_train_epoch_start: the bar had no total (no ETA), counted
            # the restored batches as done in its first second (a wrong rate) and was called "Training".
            # Its total: the epoch's batches, or fewer when max_steps ends the run first (a resumed pretraining
            # run whose schedule was fitted to max_time gets the fitted step count as max_steps).
            total = trainer.num_training_batches
            accumulate = max(1, trainer.accumulate_grad_batches)
            if trainer.max_steps is not None and trainer.max_steps > 0:
                at_epoch_start = trainer.global_step - done // accumulate
                total = min(total, (trainer.max_steps - at_epoch_start) * accumulate)
            if done >= total:  # resumed at an epoch's end: leave the next epoch's bar to Lightning
                return
            bar = self.train_progress_bar
            bar.reset(total=convert_inf(total))
            bar.initial = bar.n = done
            bar.set_description(f"Epoch {trainer.current_epoch}")

        def init_predict_tqdm(self) -> Tqdm:
            return self._bar(self.predict_description, smoothing=0)

        def init_sanity_tqdm(self) -> Tqdm:
            return self._bar(self.sanity_check_description, leave=False)

        def init_validation_tqdm(self) -> Tqdm:
            has_main_bar = self.trainer.state.fn != "validate"
            return self._bar(self.validation_description, int(has_main_bar), leave=not has_main_bar)

        def init_test_tqdm(self) -> Tqdm:
            return self._bar("Testing")

    return [StderrProgressBar(refresh_rate=5)]


def log_line_callback(interval: float, clock=time.monotonic):
    """A Lightning callback printing one plain line to stderr at most every ``interval`` seconds (by ``clock``)
    while training or predicting: ``training: step 1200/5000 (24%), 3.10 steps/s, about 20 min left, loss 0.5312``."""
    from lightning.pytorch.callbacks import Callback

    class LogLines(Callback):
        def __init__(self) -> None:
            self.started = self.last = None
            self.is_not_first_rank = False

        def _line(self, what: str, done: int, total, unit: str, extra: str = "") -> None:
            now = clock()
            if self.is_not_first_rank:  # several processes: one line, from the first
                return
            if self.started is None:
                self.started = self.last = now
                self.first = done
                return
            if now - self.last < interval:
                return
            self.last = now
            rate = (done - self.first) / max(now - self.started, 1e-9)
            parts = [f"{what}: {unit} {done}" + (f"/{total} ({100 * done / total:.0f}%)" if total else "")]
            parts.append(f"{rate:.2f} {unit}s/s")
            if total and rate > 0:
                left = (total - done) / rate
                parts.append(f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left")
            print(", ".join(parts) + extra, file=sys.stderr, flush=True)

        def setup(self, trainer, pl_module, stage) -> None:
            self.is_not_first_rank = trainer.global_rank != 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
            loss = trainer.callback_metrics.get("loss", trainer.callback_metrics.get("train/loss"))
            extra = f", loss {float(loss):.4f}" if loss is not None else ""
            self._line("training", trainer.global_step, total, "step", extra)

        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
            batches = trainer.num_predict_batches
            total = sum(batches) if isinstance(batches, (list, tuple)) else None
            self._line("predicting", batch_idx + 1, total, "batch")

    return LogLines()
