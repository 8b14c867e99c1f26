"""Lightning progress reporting shared by pretraining, fine-tuning, detection training and embedding."""

from __future__ import annotations

import sys

__all__ = ["trainer_callbacks"]


def trainer_callbacks(progress: bool) -> list:
    """Lightning callbacks: a progress bar on stderr (stdout carries ``--json`` output) when wanted.

    Lightning's own bars (its rich bar, or tqdm's) write to stdout; every bar here (training, validation,
    sanity check, prediction, test) writes to stderr.  Trainers built with these callbacks and
    ``enable_progress_bar=progress`` get no bar of Lightning's when ``progress`` is false.
    """
    if not progress:
        return []
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
