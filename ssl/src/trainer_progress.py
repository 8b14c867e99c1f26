"""Lightning progress reporting shared by pretraining, fine-tuning and detection training."""

from __future__ import annotations

import sys

__all__ = ["trainer_callbacks"]


def trainer_callbacks(progress: bool) -> list:
    """Lightning callbacks: a progress bar on stderr (stdout carries ``--json`` output) when wanted."""
    if not progress:
        return []
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    class StderrProgressBar(TQDMProgressBar):
        def init_train_tqdm(self) -> Tqdm:
            return Tqdm(desc=self.train_description, position=2 * self.process_position, disable=self.is_disabled,
                        leave=True, dynamic_ncols=True, file=sys.stderr, smoothing=0, bar_format=self.BAR_FORMAT)

    return [StderrProgressBar(refresh_rate=5)]
