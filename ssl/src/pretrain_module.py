"""Lightning modules for self-supervised pretraining (MAE and SimCLR) and its data.

Lightning runs everything distributed (DDP, bf16-mixed, gradient accumulation, checkpoints): no home-made
distribution here.  The data module builds a :class:`~radloop.ssl.pretrain_data.StepBatchSampler` from the
trainer's restored ``global_step``, which makes resuming exact.  :class:`TimeFittedSchedule` ends the LR
schedule when ``trainer.max_time`` runs out rather than at ``max_steps`` (``trainer.fit_schedule_to_time``).
"""

from __future__ import annotations

import logging
import math
import time

import lightning as L
import torch
from torch import nn

from radloop.ssl.augment import RadiographViews
from radloop.ssl.encoders import PooledEncoder, build_backbone
from radloop.ssl.mae import MaskedAutoencoder
from radloop.ssl.pretrain_data import PixelStore, StepBatchSampler, ViewsDataset, collate_views, total_batches
from radloop.ssl.settings import PretrainConfig
from radloop.ssl.simclr import SimCLRModel

__all__ = ["PretrainDataModule", "SSLPretrainer", "TimeFittedSchedule", "warmup_cosine"]

logger = logging.getLogger(__name__)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from 0 to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class PretrainDataModule(L.LightningDataModule):
    """Cached (or streamed) catalog pixels -> seeded augmented views, batched by step."""

    def __init__(self, store: PixelStore, config: PretrainConfig, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.store, self.config, self.mean, self.std = store, config, mean, std

    def total_batches(self, world_size: int) -> int:
        return total_batches(self.config.trainer, len(self.store), self.config.data.batch_size, world_size)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        config = self.config
        trainer = self.trainer
        world_size = trainer.world_size if trainer else 1
        rank = trainer.global_rank if trainer else 0
        consumed = trainer.global_step * config.trainer.accumulate_grad_batches if trainer else 0
        sampler = StepBatchSampler(len(self.store), config.data.batch_size, self.total_batches(world_size),
                                   seed=config.seed, start_batch=consumed, rank=rank, world_size=world_size)
        views = RadiographViews(config.data.crop_size, config.augment, mean=self.mean, std=self.std)
        dataset = ViewsDataset(self.store, views, seed=config.seed)
        workers = config.data.num_workers
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_views,
                                           num_workers=workers, persistent_workers=False,
                                           pin_memory=torch.cuda.is_available())


class SSLPretrainer(L.LightningModule):
    """MAE or SimCLR around a timm backbone; ``backbone`` is what gets exported.

    The schedule ends at ``scheduled_steps``: ``total_steps`` unless :meth:`fit_schedule` fixed fewer (a time
    budget, see :class:`TimeFittedSchedule`); a fitted schedule is saved in every checkpoint and restored on resume.

    Args:
        config: the resolved pretraining config.
        total_steps: optimizer steps in the whole run (for the cosine schedule).
        peak_lr: the schedule's peak LR (``optim.lr`` scaled to the effective batch: :func:`settings.peak_lr`);
            None: ``optim.lr``.
    """

    def __init__(self, config: PretrainConfig, total_steps: int, peak_lr: float | None = None) -> None:
        super().__init__()
        self.config = config
        self.total_steps = total_steps
        self.peak_lr = config.optim.lr if peak_lr is None else float(peak_lr)
        optim = config.optim
        self.scheduled_steps = total_steps
        self.warmup_steps = optim.warmup_steps if optim.warmup_steps is not None \
            else int(optim.warmup_fraction * total_steps)
        self.fitted_steps_per_second: float | None = None  # set once the schedule is fitted to a time budget
        self.save_hyperparameters({"config": config.model_dump(), "total_steps": total_steps})
        model = config.model
        self.backbone = build_backbone(model.timm_name, model.image_size, patch_size=model.patch_size, **model.kwargs)
        if config.method == "mae":
            mae = config.mae
            self.method: nn.Module = MaskedAutoencoder(
                self.backbone, decoder_dim=mae.decoder_dim, decoder_depth=mae.decoder_depth,
                decoder_heads=mae.decoder_heads, mask_ratio=mae.mask_ratio, norm_pix_loss=mae.norm_pix_loss)
        else:
            encoder = PooledEncoder(self.backbone, model.pooling)
            with torch.no_grad():
                embed_dim = int(encoder.eval()(torch.zeros(2, 1, config.data.crop_size, config.data.crop_size)).shape[-1])
            encoder.train()
            simclr = config.simclr
            self.method = SimCLRModel(encoder, embed_dim, projection_hidden_dim=simclr.projection_hidden_dim,
                                      projection_dim=simclr.projection_dim, temperature=simclr.temperature,
                                      decoupled=simclr.decoupled)
        if model.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)

    def _gather(self, projections: torch.Tensor) -> torch.Tensor:
        gathered = self.all_gather(projections, sync_grads=True)
        return gathered.reshape(-1, projections.shape[-1]) if gathered.ndim == 3 else gathered

    def training_step(self, views: list[torch.Tensor], batch_index: int) -> torch.Tensor | None:
        if not views:  # no image of the store could be read (logged by the data store)
            return None
        if self.config.model.channels_last:
            views = [view.contiguous(memory_format=torch.channels_last) for view in views]
        if self.config.method == "mae":
            # Masks depend only on (seed, step, rank, micro-batch): exact on resume.
            generator = torch.Generator().manual_seed(
                self.config.seed * 7919 + (self.global_step * self.config.trainer.accumulate_grad_batches
                                           + batch_index % self.config.trainer.accumulate_grad_batches)
                * max(1, self.trainer.world_size) + self.global_rank)
            loss, _, _ = self.method(views[0], generator=generator)
        else:
            gather = self._gather if (self.trainer.world_size > 1 and self.config.simclr.gather_across_devices) else None
            loss = self.method(views, gather=gather)
        # mean over the DDP processes (MAE's loss is per process; SimCLR's gathered loss is the same on all)
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=views[0].shape[0], sync_dist=True)
        return loss

    def configure_optimizers(self):
        optim = self.config.optim
        decay, no_decay = [], []
        for name, parameter in self.method.named_parameters():
            if not parameter.requires_grad:
                continue
            skip = parameter.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "mask_token"))
            (no_decay if skip else decay).append(parameter)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": optim.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=self.peak_lr, betas=optim.betas)
        # the lambda reads the schedule's length when called: a schedule fitted later applies from then on
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak LR at optimizer step ``step`` (warm-up, then cosine to ``scheduled_steps``)."""
        return warmup_cosine(step, self.scheduled_steps, self.warmup_steps, self.config.optim.min_lr_ratio)

    def fit_schedule(self, scheduled_steps: int, warmup_steps: int, steps_per_second: float) -> None:
        """Fix the schedule's end at ``scheduled_steps`` (at most ``total_steps``); it is not changed again."""
        self.scheduled_steps, self.warmup_steps = min(int(scheduled_steps), self.total_steps), int(warmup_steps)
        self.fitted_steps_per_second = float(steps_per_second)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["schedule"] = {"scheduled_steps": self.scheduled_steps, "warmup_steps": self.warmup_steps,
                                  "steps_per_second": self.fitted_steps_per_second}
        world_size = self.trainer.world_size
        checkpoint["batch"] = {"world_size": world_size, "peak_lr": self.peak_lr, "effective_batch_size":
                               self.config.data.batch_size * world_size * self.config.trainer.accumulate_grad_batches}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        schedule = checkpoint.get("schedule") or {}
        if schedule.get("steps_per_second") is not None:  # a resume continues the schedule that was fitted
            self.fit_schedule(schedule["scheduled_steps"], schedule["warmup_steps"], schedule["steps_per_second"])

    def on_train_start(self) -> None:
        self._clock = (time.time(), self.global_step)

    def on_train_batch_end(self, outputs, batch, batch_index: int) -> None:
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True)
        every = self.config.trainer.log_every_n_steps
        if self.global_rank == 0 and self.global_step % every == 0 and outputs is not None \
                and (batch_index + 1) % self.config.trainer.accumulate_grad_batches == 0:
            started, first_step = getattr(self, "_clock", (time.time(), 0))
            elapsed = time.time() - started
            images = (self.global_step - first_step) * self.config.data.batch_size \
                * self.config.trainer.accumulate_grad_batches * self.trainer.world_size
            logger.info("step %d/%d loss %.4f lr %.2e %.1f images/s", self.global_step, self.scheduled_steps,
                        float(outputs["loss"]), self.trainer.optimizers[0].param_groups[0]["lr"],
                        images / max(elapsed, 1e-9))


class TimeFittedSchedule(L.Callback):
    """Make the warm-up + cosine schedule end when ``trainer.max_time`` runs out instead of at ``max_steps``.

    ``max_steps`` laid out at a guessed speed is cut short by ``max_time`` on a slower (or busier) machine,
    leaving the encoder at its peak LR.  This callback times the steps from the end of the first one (start-up
    excluded) until the warm-up has ended and at least ``min_timed_steps`` steps and ``min_timed_fraction`` of
    ``max_time`` were timed, or until ``early_fraction`` of ``max_time`` has passed, whichever comes first.  It
    then fixes the schedule's end (:meth:`SSLPretrainer.fit_schedule`) at the steps that fit in ``margin`` of
    the time left, never more than ``max_steps``, and stops the run there: the last checkpoint is the fully
    decayed one.  A warm-up not finished by then is shortened in proportion.  The clock is Lightning's
    :class:`~lightning.pytorch.callbacks.Timer` (which keeps the time of a resumed run's earlier part); on
    several processes rank 0's measurement is used by all.

    Args:
        margin: fraction of the remaining time planned for (the rest absorbs slower steps and checkpoints).
        min_timed_steps: fewest timed steps before fitting.
        min_timed_fraction: fewest timed seconds before fitting at the end of the warm-up, as a fraction of
            ``max_time``.
        early_fraction: fit then at the latest (fraction of ``max_time`` elapsed), even inside the warm-up.
    """

    def __init__(self, margin: float = 0.9, min_timed_steps: int = 2, min_timed_fraction: float = 0.05,
                 early_fraction: float = 0.15) -> None:
        self.margin, self.min_timed_steps = margin, min_timed_steps
        self.min_timed_fraction, self.early_fraction = min_timed_fraction, early_fraction

    def on_train_start(self, trainer: L.Trainer, pl_module: SSLPretrainer) -> None:
        from lightning.pytorch.callbacks import Timer

        self._timer = next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)
        self._started: tuple[int, float] | None = None
        self._last_step = trainer.global_step
        if self._timer is None or self._timer.time_remaining() is None:
            logger.warning("fit_schedule_to_time without trainer.max_time: the schedule stays %d steps",
                           pl_module.scheduled_steps)
            self._timer = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: SSLPretrainer, outputs, batch,
                           batch_index: int) -> None:
        step = trainer.global_step
        if self._timer is None or pl_module.fitted_steps_per_second is not None or step == self._last_step:
            return  # no budget, already fitted, or inside an accumulation (no optimizer step)
        self._last_step = step
        elapsed, remaining = self._timer.time_elapsed(), self._timer.time_remaining()
        if self._started is None:
            self._started = (step, elapsed)
            return
        duration = elapsed + remaining
        timed_steps, timed_seconds = step - self._started[0], elapsed - self._started[1]
        ready = timed_steps >= self.min_timed_steps and timed_seconds > 0 and (
            (step >= pl_module.warmup_steps and timed_seconds >= self.min_timed_fraction * duration)
            or elapsed >= self.early_fraction * duration)
        if not trainer.strategy.broadcast(ready):  # rank 0 decides: every process must stop at the same step
            return
        rate = timed_steps / timed_seconds
        scheduled = min(pl_module.total_steps, step + max(1, math.floor(self.margin * remaining * rate)))
        rate, scheduled = trainer.strategy.broadcast((rate, scheduled))
        warmup = pl_module.warmup_steps
        if step < warmup:
            warmup = max(step, round(warmup * scheduled / pl_module.total_steps))
        pl_module.fit_schedule(scheduled, warmup, rate)
        trainer.fit_loop.epoch_loop.max_steps = scheduled
        # the scheduler has already set the next step's LR: set it from the fitted schedule
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base_lr * pl_module.lr_factor(scheduler.last_epoch)
        try:  # Lightning's tqdm bar (public property), if shown: its total was max_steps' batches
            bar = trainer.progress_bar_callback.train_progress_bar
        except (AttributeError, TypeError):  # no bar, a bar of another kind, or none created yet
            bar = None
        if bar is not None and hasattr(bar, "total"):
            bar.total = scheduled * trainer.accumulate_grad_batches
        if trainer.is_global_zero:
            logger.info("schedule fitted to time: %d steps at %.3g steps/s (at step %d, %.0f s of max_time left; "
                        "max_steps %d)", scheduled, rate, step, remaining, pl_module.total_steps)

    def on_train_end(self, trainer: L.Trainer, pl_module: SSLPretrainer) -> None:
        if self._timer is None or pl_module.fitted_steps_per_second is not None or not trainer.is_global_zero:
            return
        if trainer.global_step >= pl_module.scheduled_steps:
            return  # max_steps came first: the schedule ran to its end anyway
        lr = trainer.optimizers[0].param_groups[0]["lr"] / max(pl_module.peak_lr, 1e-30)
        logger.warning("max_time ran out after %d steps, before the schedule could be fitted to it (too little time "
                       "for a warm-up and a few timed steps): the encoder stopped at %.2f x the peak LR; give "
                       "trainer.max_time more time", trainer.global_step, lr)
