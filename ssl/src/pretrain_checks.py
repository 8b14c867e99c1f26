"""Checks a pretraining run makes before it trains: that this machine can run the config's layer synchronisation,
and that a checkpoint it is asked to resume belongs to these settings (:func:`check_resume`).

``require_accelerator`` stays in :mod:`radloop.ssl.pretrain` (``radloop embed`` uses it too, and the README checker
reads the accelerator names it accepts from that file).
"""

from __future__ import annotations

import logging
from pathlib import Path

from radloop.ssl.settings import PretrainConfig, TrainerSettings

__all__ = ["check_resume", "checkpoint_step", "require_layer_sync_support", "resume_checkpoint"]

logger = logging.getLogger(__name__)


def require_layer_sync_support(trainer: TrainerSettings) -> None:
    """Refuse ``trainer.sync_batchnorm`` on several CPU processes before the images are read: torch's
    ``SyncBatchNorm`` runs on GPUs only, and every process would fail at its first step with a traceback ("expected
    input tensor to be on GPU").  One process is fine: Lightning leaves the layers alone there.

    Raises:
        ValueError: naming the setting to change.
    """
    import torch

    accelerator = str(trainer.accelerator).lower()
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    devices = trainer.devices
    if isinstance(devices, list):
        per_node = len(devices)
    elif str(devices).isdigit():
        per_node = int(devices)
    elif isinstance(devices, str) and "," in devices:
        per_node = len([part for part in devices.split(",") if part.strip()])
    else:  # "auto" / -1 on a CPU: Lightning runs one process
        per_node = 1
    if trainer.sync_batchnorm and on_cpu and per_node * trainer.num_nodes > 1:
        raise ValueError(f"trainer.sync_batchnorm needs GPUs (torch's SyncBatchNorm); these "
                         f"{per_node * trainer.num_nodes} CPU processes would fail at the first step: "
                         "--set trainer.sync_batchnorm=false (each process then normalises its own batch)")



#: Config sections that must match for a checkpoint to resume (the export settings may change).
_RESUME_SECTIONS = ("method", "model", "simclr", "mae", "optim")
_EXPORT_ONLY = ("export_pooling", "export_flip_average", "init_from")


def check_resume(checkpoint: str | Path, config: PretrainConfig, total_steps: int, run_dir: Path, *,
                 world_size: int | None = None, effective_batch_size: int | None = None,
                 lr: float | None = None) -> int | None:
    """Refuse a resume that Lightning would turn into a traceback or quietly into nothing; warn about one on
    another number of processes (or another per-device batch or accumulation) than the checkpoint was written by.

    Such a resume runs (e.g. on the nodes that are left), but its remaining batches are not those of an
    uninterrupted run, the effective batch changes and, with ``optim.lr_scaling``, so does the peak LR.

    Returns:
        The step the checkpoint's schedule was fitted to end at (``trainer.fit_schedule_to_time``): the resumed
        run keeps it; None when the schedule was not fitted (it ends at ``total_steps``).

    Raises:
        ValueError: not a Lightning checkpoint; trained with another model/method/optimiser config; or a
            schedule of another length (a finished run cannot be extended: its cosine schedule has ended).
    """
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)  # tensors mapped, not read
    except Exception as error:  # noqa: BLE001 (pickle and zip errors)
        if _cut_short(Path(checkpoint)):
            raise ValueError(damaged_checkpoint(Path(checkpoint), error)) from None
        raise ValueError(f"{checkpoint} is not a radloop pretraining checkpoint ({type(error).__name__})") from None
    try:
        saved = state["hyper_parameters"]
        step, old_total, old_config = int(state["global_step"]), int(saved["total_steps"]), saved["config"]
        schedule = state.get("schedule") or {}
        fitted = int(schedule["scheduled_steps"]) if schedule.get("steps_per_second") is not None else None
        batch = state.get("batch") or {}  # absent in checkpoints written before it was saved
    except Exception as error:  # noqa: BLE001 (pickle, zip and key errors all mean "not ours")
        raise ValueError(f"{checkpoint} is not a radloop pretraining checkpoint ({type(error).__name__})") from None
    fresh = f"start a new run with --no-resume (or --out ANOTHER_FOLDER; {run_dir} is this config's default)"
    new_config = config.model_dump()
    changed = []
    for section in _RESUME_SECTIONS:
        old, new = old_config.get(section), new_config.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            # a key the checkpoint lacks was added to the settings since: its default is what that run used
            defaults = {key: field.default for key, field in
                        type(getattr(config, section)).model_fields.items()} if section != "method" else {}
            changed += [f"{section}.{key}" for key in sorted(set(old) | set(new))
                        if key not in _EXPORT_ONLY and old.get(key, defaults.get(key)) != new.get(key)]
        elif old != new:
            changed.append(section)
    if changed:
        raise ValueError(f"checkpoint {checkpoint} was trained with other settings ({', '.join(changed[:6])}): "
                         f"it cannot be resumed with these; {fresh}")
    if old_total != total_steps:
        schedule_end = fitted or old_total
        if step >= schedule_end:
            raise ValueError(
                f"the run in {run_dir} has finished its {schedule_end}-step schedule; to train longer, start a new "
                f"run from its weights: --out NEW_FOLDER --set model.init_from={checkpoint}")
        raise ValueError(f"checkpoint {checkpoint} belongs to a {old_total}-step schedule and these settings make "
                         f"{total_steps} steps: resume with the same settings (trainer.max_steps, data.batch_size, "
                         f"devices), or {fresh}")
    before = batch.get("effective_batch_size")
    if effective_batch_size is not None and before is not None and before != effective_batch_size:
        from lightning.pytorch.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            logger.warning(
                "resuming %s (written at step %d by %s processes, %s images per optimizer step) on %s processes with "
                "%d images per step: the remaining batches are not those of an uninterrupted run, and the peak LR "
                "is %.3g (it was %.3g); resume on %s processes with the same data.batch_size and "
                "trainer.accumulate_grad_batches for an exact resume", checkpoint, step, batch.get("world_size"),
                before, world_size, effective_batch_size, lr if lr is not None else float("nan"),
                batch.get("peak_lr", float("nan")), batch.get("world_size"))
    return fitted


def _cut_short(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` (which torch could not load) is a torch checkpoint damaged, not a foreign file: empty,
    or a torch zip archive (``PK`` header) whose end is missing or garbled (a crash or a full disk mid-copy)."""
    try:
        with open(checkpoint, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head in (b"", b"PK\x03\x04")


def damaged_checkpoint(checkpoint: Path, error: BaseException) -> str:
    """The message for a damaged checkpoint: what torch said, and the whole earlier ``step-N.ckpt`` of its folder
    to resume from, else starting again."""
    earlier = sorted(((step, path) for path in checkpoint.parent.glob("step-*.ckpt")
                      if path != checkpoint and (step := checkpoint_step(path)) is not None), reverse=True)
    what = str(error).splitlines()[0] if str(error) else type(error).__name__
    head = f"{checkpoint} is damaged (cut short or garbled, e.g. by a crash or a full disk: {what})"
    if earlier:
        step, path = earlier[0]
        return (f"{head}: resume from the earlier checkpoint with --checkpoint {path} (step {step}), or start "
                "again with --no-resume")
    return f"{head}: no earlier step-N.ckpt is there; start again with --no-resume (or --out ANOTHER_FOLDER)"


def checkpoint_step(checkpoint: Path) -> int | None:
    """The training step ``checkpoint`` was saved at (tensors memory-mapped, not read); None when unreadable."""
    import torch

    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["global_step"])
    except Exception:  # noqa: BLE001 (a half-written or foreign file: the message names it without a step)
        return None


def resume_checkpoint(run_dir: Path, resume: bool | str) -> Path | None:
    """The checkpoint a run resumes from: ``resume`` when it is a path, else the run's ``checkpoints/last.ckpt``
    when ``resume`` is true and the file exists; None: a fresh start."""
    if isinstance(resume, (str, Path)) and str(resume) not in ("", "auto"):
        return Path(resume)
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if resume and last.is_file() else None
