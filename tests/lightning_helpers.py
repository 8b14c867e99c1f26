"""Lightning callbacks the training tests share."""

from __future__ import annotations

import lightning as L


class StopAtStep(L.Callback):
    """Stop the run once ``trainer.global_step`` reaches ``step`` (an interruption, for resume tests)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class InterruptAtStep(L.Callback):
    """Ctrl-C once ``trainer.global_step`` reaches ``step`` (Lightning shuts down, then exits)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise KeyboardInterrupt
