"""``radloop pretrain``: train an encoder on the workspace's images, export it, register it.

Run folder layout (``--out``, default ``<workspace>/models/runs/<config name>``)::

    config.yaml              resolved config of the run
    checkpoints/last.ckpt    Lightning checkpoint every ``trainer.checkpoint_every_n_steps`` (exact resume)
    logs/metrics.csv, tb/    CSV and TensorBoard logs
    encoder/                 encoder.safetensors + encoder.json + config.yaml (the exported encoder)

Multi-GPU / multi-node: set ``trainer.devices``, ``trainer.num_nodes`` and ``trainer.strategy=ddp`` and
launch with torchrun or SLURM ``srun`` (see ssl/README.md); Lightning does the distribution.

The checks before training (:mod:`radloop.ssl.pretrain_checks`) and the messages after a stop
(:mod:`radloop.ssl.pretrain_interrupts`) live beside this module; their public names import from here as well.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from radloop.core.catalog import Catalog
from radloop.core.config import save_resolved_config
from radloop.ssl.pretrain_checks import check_resume, require_layer_sync_support, resume_checkpoint
from radloop.ssl.pretrain_interrupts import (
    PretrainStorageError, export_failed, interrupted, interrupted_before_training, write_failed,
)
from radloop.ssl.settings import PretrainConfig, peak_lr

__all__ = ["PretrainResult", "PretrainStorageError", "check_resume", "pretrain", "register_encoder",
           "registered_encoder_in", "require_accelerator", "require_layer_sync_support"]

logger = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """What a pretraining run produced."""

    run_dir: str
    encoder_dir: str | None
    version: str | None
    steps: int
    total_steps: int
    seconds: float
    images: int
    skipped: dict[str, str] = field(default_factory=dict)
    final_loss: float | None = None
    resumed_from: str | None = None
    registered: bool = False
    scheduled_steps: int | None = None  # where the LR schedule ends: total_steps, or fewer fitted to max_time
    effective_batch_size: int | None = None  # images per optimizer step over every process
    peak_lr: float | None = None  # optim.lr scaled to effective_batch_size by optim.lr_scaling

    def to_json(self) -> dict[str, Any]:
        result = asdict(self)
        result["skipped"] = len(self.skipped)
        return result


def register_encoder(catalog: Catalog, bundle_dir: Path, version: str, config: dict, metrics: dict,
                     *, make_current: bool = True) -> bool:
    """Add the encoder to the catalog's model registry (kind="encoder", task="encoder"); False if present."""
    from radloop.core.registry import RegistryError, register_model

    try:
        register_model(catalog, version, kind="encoder", task="encoder", path=bundle_dir, config=config,
                       metrics=metrics, make_current=make_current)
    except RegistryError as error:
        logger.warning("%s", error)
        return False
    return True


def _warm_start(module, source: Path) -> None:
    """Load weights from a Lightning checkpoint (all of them) or an encoder folder (the backbone)."""
    import torch

    if source.is_dir() or source.suffix in (".json", ".safetensors"):
        from radloop.ssl.encoders import load_encoder

        module.backbone.load_state_dict(load_encoder(source).model.backbone.state_dict())
    elif source.is_file():
        state = torch.load(source, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    else:
        raise ValueError(f"model.init_from {source} is neither a checkpoint nor an encoder folder")
    logger.info("warm start from %s", source)


def _loggers(config: PretrainConfig, run_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = []
    if "csv" in config.trainer.loggers:
        # a resumed run keeps the earlier metrics: Lightning would delete logs/metrics.csv, so it is moved
        # aside first (logs/metrics-<n>.csv, oldest first)
        from lightning.pytorch.utilities import rank_zero_only

        existing = run_dir / "logs" / "metrics.csv"
        if rank_zero_only.rank == 0 and existing.is_file():  # once, not by every DDP process
            number = 1 + len(list(existing.parent.glob("metrics-*.csv")))
            try:
                existing.rename(existing.with_name(f"metrics-{number}.csv"))
            except FileNotFoundError:  # moved by a concurrent launch of the same run
                pass
        loggers.append(CSVLogger(str(run_dir), name="logs", version="",
                                 flush_logs_every_n_steps=config.trainer.log_every_n_steps))
    if "tensorboard" in config.trainer.loggers:
        loggers.append(TensorBoardLogger(str(run_dir), name="tb", version=""))
    return loggers


def require_accelerator(accelerator: str) -> None:
    """Fail with what to do when a config or option asks for a GPU this machine does not have.

    Raises:
        ValueError: an unknown accelerator, or ``gpu``/``cuda`` without a visible CUDA device.
    """
    import torch

    name = str(accelerator).lower()
    if name not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise ValueError(f"unknown accelerator {accelerator!r}: use cpu, gpu or auto")
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"accelerator {accelerator!r} but no CUDA GPU is visible on this machine: use a CPU "
                         "config (configs/ssl/*_cpu.yaml) or --set trainer.accelerator=cpu (embed: --accelerator cpu)")


def registered_encoder_in(catalog: Catalog, encoder_dir: Path) -> str | None:
    """The version ``encoder_dir`` holds when the catalog's registry points that version at this folder, else None
    (no encoder there, an unreadable ``encoder.json``, or a version not registered for it)."""
    from radloop.core.registry import RegistryError, get_model
    from radloop.ssl.encoders import ENCODER_CONFIG_FILE

    try:
        version = json.loads((encoder_dir / ENCODER_CONFIG_FILE).read_text())["version"]
        record = get_model(catalog, str(version))
    except (OSError, ValueError, KeyError, TypeError, RegistryError):
        return None
    return str(version) if record.folder(catalog).resolve() == encoder_dir.resolve() else None


def _keep_earlier_export(catalog: Catalog, encoder_dir: Path, registered: str) -> Path:
    """Move the encoder this run exported earlier (e.g. when it was stopped, then resumed) out of the way, to
    ``encoder-<version>`` beside it, and point the registry there: it stays loadable, with its embeddings."""
    from radloop.core.registry import move_model_folder

    kept = encoder_dir.with_name(f"{encoder_dir.name}-{registered}")
    if kept.exists():
        raise _overwrite_refused(encoder_dir, registered, f"this run (its earlier export's folder {kept} is taken)")
    encoder_dir.rename(kept)
    move_model_folder(catalog, registered, kept)
    logger.info("the encoder %s this run exported earlier was moved to %s", registered, kept)
    return kept


def _overwrite_refused(encoder_dir: Path, registered: str, detail: str, hint: str = "") -> ValueError:
    return ValueError(f"{encoder_dir} holds encoder {registered}, registered in the catalog: {detail} would overwrite "
                      f"its weights under its name (its embeddings and searches would silently use other weights); "
                      f"pretrain into a new folder with --out NEW_FOLDER{hint}")



def pretrain(catalog: Catalog, config: PretrainConfig, run_dir: str | Path, *, resume: bool | str = True,
             register: bool = True, callbacks: list | None = None) -> PretrainResult:
    """Train, export and register an encoder.

    Args:
        catalog: the workspace catalog (images are read from it).
        config: a validated :class:`PretrainConfig`.
        run_dir: run folder (checkpoints, logs, exported encoder).
        resume: True: continue from ``run_dir/checkpoints/last.ckpt`` when it exists; a path: from that
            checkpoint; False: start fresh.
        register: register the exported encoder in the catalog.
        callbacks: extra Lightning callbacks (e.g. early stopping, profiling).

    Raises:
        ValueError: no (readable) images to train on; ``run_dir/encoder`` holds a registered encoder and a run
            that is not this run resumed would write another version there (refused before training): one
            folder, one version.  A resumed run that ends with other weights (stopped early, then trained on)
            moves its earlier export to ``run_dir/encoder-<version>`` first and re-points the registry.
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.utilities import rank_zero_only

    from radloop.ssl.checkpoint_io import SameFolderCheckpointIO, remove_partial_checkpoints
    from radloop.ssl.distributed import destroy_process_group_at_exit
    from radloop.ssl.encoders import encoder_version, save_encoder
    from radloop.ssl.pretrain_data import PixelStore, catalog_images
    from radloop.ssl.pretrain_module import PretrainDataModule, SSLPretrainer, TimeFittedSchedule
    from radloop.ssl.precision import effective_precision
    from radloop.ssl.trainer_progress import trainer_callbacks

    started = time.time()
    require_accelerator(config.trainer.accelerator)
    require_layer_sync_support(config.trainer)
    # absolute: the registry stores a relative folder as workspace-relative, so `--out runs/x` run from elsewhere
    # would register a folder that does not exist (every later command would fail to load the current encoder)
    run_dir = Path(run_dir).absolute()
    resume_from = resume_checkpoint(run_dir, resume)
    ckpt_path = None if resume_from is None else str(resume_from)
    encoder_dir = run_dir / "encoder"
    registered = registered_encoder_in(catalog, encoder_dir)
    same_run = ckpt_path is not None and Path(ckpt_path).resolve().parent == (run_dir / "checkpoints").resolve()
    if registered and not same_run:  # refused before training: a fresh run cannot end with the same weights
        raise _overwrite_refused(encoder_dir, registered, "a new run" if ckpt_path is None else
                                 f"a run resumed from {ckpt_path}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = config.data
    items = catalog_images(catalog, datasets=data.datasets, splits=data.splits, limit=data.limit)
    if not items:
        raise ValueError(f"no catalog images match datasets={data.datasets} splits={data.splits}: "
                         "ingest images first (`radloop ingest ...`)")
    cache_size = data.cache_size or round(1.25 * data.crop_size)
    try:
        store = PixelStore(items, cache_size=cache_size, cache=data.cache, threads=config.trainer.num_threads or 2,
                           progress=config.trainer.enable_progress_bar and rank_zero_only.rank == 0)
    except KeyboardInterrupt:  # before Lightning's own handler: say what a rerun does, not "resume" blindly
        raise KeyboardInterrupt(interrupted_before_training(run_dir, resume)) from None
    if len(store) < data.batch_size:
        raise ValueError(f"only {len(store)} readable images (skipped {len(store.skipped)}); "
                         f"need at least one batch of {data.batch_size}")
    if data.mean is None or data.std is None:
        mean, std = store.statistics()
        config = config.model_copy(update={"data": data.model_copy(update={"mean": [mean], "std": [std]})})
    if rank_zero_only.rank == 0:  # every DDP process runs this function: one writer
        save_resolved_config(config, run_dir / "config.yaml")
        remove_partial_checkpoints(run_dir / "checkpoints")

    checkpoints = ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="step-{step}",
                                  auto_insert_metric_name=False,
                                  every_n_train_steps=config.trainer.checkpoint_every_n_steps, save_last=True,
                                  save_top_k=1, monitor=None)
    trainer_settings = config.trainer
    time_fit = [TimeFittedSchedule()] if trainer_settings.fit_schedule_to_time else []
    destroy_process_group_at_exit()  # several devices: Lightning leaves the DDP process group alive
    trainer = L.Trainer(
        accelerator=trainer_settings.accelerator, devices=trainer_settings.devices,
        num_nodes=trainer_settings.num_nodes, strategy=trainer_settings.strategy,
        precision=effective_precision(trainer_settings.precision, trainer_settings.accelerator),
        accumulate_grad_batches=trainer_settings.accumulate_grad_batches,
        max_epochs=1, max_time=trainer_settings.max_time, gradient_clip_val=trainer_settings.gradient_clip_val,
        log_every_n_steps=trainer_settings.log_every_n_steps,
        # the progress bar goes to stderr: stdout carries `radloop pretrain --json`'s output
        callbacks=[checkpoints, *time_fit, *trainer_callbacks(trainer_settings.enable_progress_bar),
                   *(callbacks or [])],
        logger=_loggers(config, run_dir) or False, use_distributed_sampler=False,
        plugins=[SameFolderCheckpointIO()],  # never half-written, never through a small /tmp
        enable_progress_bar=trainer_settings.enable_progress_bar, enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=trainer_settings.deterministic,
        sync_batchnorm=trainer_settings.sync_batchnorm)
    datamodule = PretrainDataModule(store, config, config.data.mean, config.data.std)
    total_batches = datamodule.total_batches(trainer.world_size)
    total_steps = total_batches // trainer_settings.accumulate_grad_batches
    trainer.fit_loop.epoch_loop.max_steps = total_steps
    effective_batch = data.batch_size * trainer.world_size * trainer_settings.accumulate_grad_batches
    lr = peak_lr(config.optim, effective_batch)
    if rank_zero_only.rank == 0:
        scaled = "" if config.optim.lr_scaling == "none" else (
            f" (optim.lr {config.optim.lr:.3g} for {config.optim.reference_batch_size} images, "
            f"{config.optim.lr_scaling} scaling)")
        logger.info("effective batch %d (data.batch_size %d x %d processes x %d accumulated), peak LR %.3g%s",
                    effective_batch, data.batch_size, trainer.world_size, trainer_settings.accumulate_grad_batches,
                    lr, scaled)
    module = SSLPretrainer(config, total_steps, peak_lr=lr)
    if config.model.init_from:
        _warm_start(module, Path(config.model.init_from))

    if ckpt_path and (fitted := check_resume(ckpt_path, config, total_steps, run_dir, world_size=trainer.world_size,
                                             effective_batch_size=effective_batch, lr=lr)):
        trainer.fit_loop.epoch_loop.max_steps = fitted  # the module restores the fitted schedule itself

    def stopped_by(error: OSError, doing: str) -> PretrainStorageError:
        return write_failed(error, doing, trainer.global_step, run_dir, resume, checkpoints.last_model_path,
                            trainer_settings.checkpoint_every_n_steps, module.scheduled_steps)

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:  # Lightning's answer to Ctrl-C: a graceful shutdown, then sys.exit(1)
        if trainer.interrupted:
            raise KeyboardInterrupt(interrupted(trainer.global_step, run_dir, resume, checkpoints.last_model_path,
                                                trainer_settings.checkpoint_every_n_steps,
                                                module.scheduled_steps)) from None
        raise
    except OSError as error:  # a checkpoint or log that could not be written (full disk); checkpoints are atomic
        raise stopped_by(error, "a write failed") from error
    if trainer.global_step >= module.scheduled_steps:
        # the periodic checkpoints stop short of the last steps: last.ckpt must be the finished state, so that a
        # rerun knows the run is complete (and does not train its last steps again).  A run stopped early
        # (max_time, a callback) keeps its periodic last.ckpt, from which a rerun continues.
        try:
            trainer.save_checkpoint(str(run_dir / "checkpoints" / "last.ckpt"))
        except OSError as error:
            raise stopped_by(error, "writing the final checkpoint failed") from error
    loss = trainer.callback_metrics.get("train/loss")
    result = PretrainResult(run_dir=str(run_dir), encoder_dir=None, version=None, steps=trainer.global_step,
                            total_steps=total_steps, seconds=round(time.time() - started, 1), images=len(store),
                            skipped=dict(store.skipped), final_loss=float(loss) if loss is not None else None,
                            resumed_from=ckpt_path, scheduled_steps=module.scheduled_steps,
                            effective_batch_size=effective_batch, peak_lr=lr)
    if not trainer.is_global_zero:
        return result

    model = config.model
    backbone = module.backbone.to("cpu").float().to(memory_format=torch.contiguous_format)
    export = {"timm_name": model.timm_name, "image_size": model.image_size, "method": config.method,
              "patch_size": model.patch_size, "mean": config.data.mean, "std": config.data.std,
              "pooling": model.export_pooling or model.pooling, "flip_average": model.export_flip_average,
              "model_kwargs": model.kwargs}
    version = encoder_version(backbone.state_dict(), **export)
    registered = registered_encoder_in(catalog, encoder_dir)  # again, now that the version is known
    if registered and registered != version:  # e.g. a resumed run that was stopped early, then trained on
        if not same_run:
            raise _overwrite_refused(
                encoder_dir, registered, f"this run's encoder ({version}, step {trainer.global_step})",
                f"; its checkpoint is kept: --out NEW_FOLDER --checkpoint {run_dir / 'checkpoints' / 'last.ckpt'} "
                "exports it there")
        _keep_earlier_export(catalog, encoder_dir, registered)
    try:
        bundle = save_encoder(
            backbone, encoder_dir, version=version, **export,
            data={"datasets": data.datasets, "splits": data.splits, "images": len(store),
                  "skipped": len(store.skipped), "steps": trainer.global_step, "crop_size": data.crop_size,
                  "config_name": config.name})
        save_resolved_config(config, encoder_dir / "config.yaml")
    except OSError as error:
        raise export_failed(error, trainer.global_step, encoder_dir, run_dir / "checkpoints" / "last.ckpt") from error
    result.encoder_dir, result.version = str(encoder_dir), bundle.version
    if register:
        metrics = {"final_loss": result.final_loss, "steps": result.steps, "seconds": result.seconds}
        result.registered = register_encoder(catalog, encoder_dir, bundle.version, bundle.config.model_dump(),
                                             metrics)
    return result
