"""Validation-based epoch selection for fine-tuning: score every epoch, keep the best epoch's weights.

The network is a :class:`radloop.ssl.finetune.FindingsClassifier` (finding logits first in its output); the
selection state goes into the job's checkpoint, so a resumed run still returns the best epoch of the whole run.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from radloop.ssl.finetune_images import normalize_pixels

__all__ = ["BestEpoch"]


class BestEpoch(L.Callback):
    """Scores the findings on validation images after every training epoch and keeps the best epoch's weights.

    The score is the mean AUROC over the findings that have both classes among the validation images; the
    earliest epoch wins ties.  :meth:`restore` loads the kept weights into the network.
    """

    def __init__(self, pixels: torch.Tensor, targets: np.ndarray, mean: float, std: float, batch_size: int) -> None:
        self.pixels, self.targets = pixels, np.asarray(targets)
        self.mean, self.std, self.batch_size = mean, std, batch_size
        self.scores: list[float | None] = []
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def score(self, net: nn.Module, device: torch.device) -> float | None:
        from sklearn.metrics import roc_auc_score

        was_training = net.training
        net.eval()
        logits = []
        for start in range(0, len(self.pixels), self.batch_size):
            batch = normalize_pixels(self.pixels[start:start + self.batch_size], self.mean, self.std)
            logits.append(net(batch.to(device))[0].float().cpu().numpy())
        net.train(was_training)
        logits_all = np.concatenate(logits) if logits else np.zeros((0, self.targets.shape[1]), np.float32)
        aurocs = []
        for column in range(self.targets.shape[1]):
            known = self.targets[:, column] >= 0
            if len(np.unique(self.targets[known, column])) == 2:
                aurocs.append(roc_auc_score(self.targets[known, column], logits_all[known, column]))
        return float(np.mean(aurocs)) if aurocs else None

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        score = self.score(module.net, module.device)
        self.scores.append(score)
        best = self.scores[self.best_epoch - 1] if self.best_epoch else None
        if score is not None and (best is None or score > best):
            self.best_epoch = len(self.scores)
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.net.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """Kept in the job's checkpoint: a resumed run still returns the best epoch of the whole run."""
        return {"scores": list(self.scores), "best_epoch": self.best_epoch, "best_state": self._best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scores = list(state_dict.get("scores", []))
        self.best_epoch = state_dict.get("best_epoch")
        self._best_state = state_dict.get("best_state")

    def restore(self, net: nn.Module) -> None:
        if self._best_state is not None:
            net.load_state_dict(self._best_state)

    def summary(self) -> dict[str, Any]:
        return {"metric": "mean AUROC of the findings", "images": int(len(self.pixels)),
                "scores": [None if s is None else round(s, 4) for s in self.scores], "best_epoch": self.best_epoch}
