"""Pretraining config: one YAML file per job (``configs/ssl/*.yaml``), validated here; unknown keys fail.

Load with ``radloop.core.config.load_config(path, PretrainConfig, overrides)``; every Trainer setting
(devices, strategy, precision, accumulation, steps, checkpoints, loggers) comes from the ``trainer`` section.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from radloop.core.config import StrictModel, did_you_mean
from radloop.ssl.finetune_config import known_precision

__all__ = ["AugmentSettings", "DataSettings", "MAESettings", "ModelSettings", "OptimSettings",
           "PretrainConfig", "SimCLRSettings", "TrainerSettings", "peak_lr"]


#: accelerators pretraining runs on (``radloop.ssl.pretrain.require_accelerator`` checks the same at start)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")

#: Pooling of an exported encoder (what each name means: ``radloop.ssl.encoders.EncoderConfig``).
PoolingName = Literal["default", "avg_tokens", "multiscale"]


class ModelSettings(StrictModel):
    """The exported backbone: ``timm.create_model(timm_name, in_chans=1, num_classes=0, **kwargs)``."""

    timm_name: str = "resnet18"
    image_size: int = Field(128, ge=16, description="side the exported encoder embeds at")
    patch_size: int | None = Field(None, description="ViT patch size (None: the timm default)")
    pooling: PoolingName = Field(
        "default", description="feature the SimCLR head trains on and, unless export_pooling says otherwise, "
        "the exported encoder embeds with (see radloop.ssl.encoders.EncoderConfig)")
    export_pooling: PoolingName | None = Field(
        None, description="pooling of the exported encoder only (None: pooling); e.g. train the head on the "
        "last stage and embed with 'multiscale' (last two stages concatenated)")
    export_flip_average: bool = Field(
        False, description="the exported encoder averages each image's features with its left-right mirror's "
        "(left and right limbs embed alike; twice the embedding compute); training is unchanged")
    channels_last: bool = True
    kwargs: dict = Field(default_factory=dict)
    init_from: str | None = Field(None, description="warm start: a Lightning checkpoint (whole model) or an "
                                  "encoder folder (backbone only); optimizer and schedule start fresh")


class MAESettings(StrictModel):
    mask_ratio: float = Field(0.75, ge=0.0, lt=1.0)
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix_loss: bool = True


class SimCLRSettings(StrictModel):
    projection_hidden_dim: int = 2048
    projection_dim: int = 128
    temperature: float = Field(0.2, gt=0.0)
    decoupled: bool = Field(False, description="decoupled contrastive loss (DCL): positives leave the denominator")
    gather_across_devices: bool = True


class AugmentSettings(StrictModel):
    """Radiograph-safe augmentations.  No flips unless asked: laterality matters."""

    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333)
    rotation_degrees: float = 10.0
    brightness: float = Field(0.2, ge=0.0, description="additive shift, uniform in +-brightness")
    contrast: float = Field(0.3, ge=0.0, description="multiplicative, uniform in 1 +- contrast")
    gamma: tuple[float, float] = (0.7, 1.4)
    noise_std: float = Field(0.03, ge=0.0, description="max std of additive Gaussian noise")
    blur_probability: float = Field(0.0, ge=0.0, le=1.0)
    horizontal_flip: bool = False
    vertical_flip: bool = False
    global_views: int = Field(2, ge=1)
    local_views: int = Field(0, ge=0, description="extra small crops (multi-crop), SimCLR only")
    local_crop_size: int = 48
    local_crop_scale: tuple[float, float] = (0.05, 0.3)


class DataSettings(StrictModel):
    datasets: list[str] | None = Field(None, description="catalog datasets to train on (None: all)")
    splits: list[Literal["train", "val", "test"]] | None = Field(
        None, description="study splits to train on (None: all)")
    limit: int | None = Field(None, ge=1, description="at most this many images (deterministic subset)")
    crop_size: int = Field(128, ge=16, description="training resolution of the global views")
    batch_size: int = Field(128, ge=2, description="images per device per step")
    num_workers: int = Field(0, ge=0)
    cache: bool = Field(True, description="decode every image once into RAM (uint8) at cache_size")
    cache_size: int | None = Field(None, description="side of cached images (default 1.25 x crop_size)")
    mean: list[float] | None = Field(None, description="pixel mean on [0,1] (None: estimated from data)")
    std: list[float] | None = None


class OptimSettings(StrictModel):
    """AdamW with linear warm-up and cosine decay.

    ``lr`` is the peak LR as written unless ``lr_scaling`` says it is the LR of ``reference_batch_size`` images
    per optimizer step: then the peak is ``lr x effective / reference`` (linear, the MAE paper's rule) or
    ``lr x sqrt(effective / reference)`` (sqrt), where effective = ``data.batch_size x devices x num_nodes x
    accumulate_grad_batches`` (:func:`peak_lr`).  The run logs and reports both numbers.
    """

    lr: float = Field(1e-3, gt=0.0, description="peak learning rate (AdamW); with lr_scaling, the LR of "
                      "reference_batch_size images per optimizer step")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="scale lr with the effective batch (per-device batch x devices x nodes x accumulation) "
        "over reference_batch_size: 'linear' (MAE: lr = base_lr x batch / 256), 'sqrt', or 'none' (lr as written)")
    reference_batch_size: int = Field(256, ge=1, description="the effective batch lr is meant for (with lr_scaling)")
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int | None = Field(None, ge=0)
    warmup_fraction: float = Field(0.05, ge=0.0, le=1.0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)


class TrainerSettings(StrictModel):
    """Lightning ``Trainer`` arguments (plus checkpoint/logging cadence)."""

    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = Field(1, ge=1)
    max_epochs: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_time: str | None = Field(None, description="DD:HH:MM:SS safety stop (with fit_schedule_to_time: the budget "
                                 "the schedule is fitted into)")
    fit_schedule_to_time: bool = Field(
        False, description="end the warm-up + cosine schedule when max_time runs out instead of at max_steps: the "
        "step rate is measured over the warm-up, then the run's total shrinks (never grows) to the steps that fit in "
        "the rest of max_time and the run stops there, fully decayed; the total is fixed once and kept in checkpoints "
        "(radloop.ssl.pretrain_module.TimeFittedSchedule)")
    gradient_clip_val: float | None = None
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = Field(200, ge=1)
    loggers: list[Literal["csv", "tensorboard"]] = Field(default_factory=lambda: ["csv", "tensorboard"])
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch default)")
    enable_progress_bar: bool = True
    sync_batchnorm: bool = Field(
        False, description="batch-norm statistics over all DDP processes (Lightning's flag): SimCLR's projection head "
        "then normalises the global batch, as in the paper; no effect on one device")
    deterministic: bool | Literal["warn"] = Field(
        False, description="deterministic kernels (Lightning's flag): makes a resumed GPU run bit-identical to an "
        "uninterrupted one, at some speed; CPU runs resume exactly without it")

    @field_validator("accelerator", mode="before")
    @classmethod
    def _known_accelerator(cls, value: object) -> str:
        # refused when the config is read, not after the images are cached
        text = str(value).strip().lower()
        if text not in ACCELERATORS:
            raise ValueError(f"accelerator {value!r} is not one of {', '.join(ACCELERATORS)}"
                             f"{did_you_mean(text, ACCELERATORS)}")
        return text

    @field_validator("precision", mode="before")
    @classmethod
    def _known_precision(cls, value: object) -> str:
        return known_precision(value)  # before the images are cached, not when Lightning builds the trainer

    @field_validator("strategy")
    @classmethod
    def _launched_by_script(cls, value: str) -> str:
        # spawn/fork strategies train in child processes and hand back only the weights: the launching process,
        # which exports the encoder and writes the finished last.ckpt, would see global_step 0
        if any(word in value.lower() for word in ("spawn", "fork", "notebook")):
            raise ValueError(f"strategy {value!r} is not supported for pretraining (the step count and the final "
                             "checkpoint stay in its child processes): use ddp (it re-runs the command once per "
                             "device), torchrun or srun")
        return value

    @model_validator(mode="after")
    def _length(self) -> "TrainerSettings":
        if self.max_epochs is None and self.max_steps is None:
            raise ValueError("set trainer.max_steps or trainer.max_epochs")
        if self.fit_schedule_to_time and not self.max_time:
            raise ValueError("trainer.fit_schedule_to_time fits the schedule into trainer.max_time: set "
                             "trainer.max_time (DD:HH:MM:SS) or leave fit_schedule_to_time false")
        return self


class PretrainConfig(StrictModel):
    """A whole pretraining job."""

    name: str = "pretrain"
    method: Literal["mae", "simclr"] = "simclr"
    seed: int = 0
    model: ModelSettings = Field(default_factory=ModelSettings)
    mae: MAESettings = Field(default_factory=MAESettings)
    simclr: SimCLRSettings = Field(default_factory=SimCLRSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    trainer: TrainerSettings = Field(default_factory=lambda: TrainerSettings(max_steps=1000))

    @model_validator(mode="after")
    def _consistent(self) -> "PretrainConfig":
        if self.method == "mae" and self.data.crop_size != self.model.image_size:
            raise ValueError("MAE trains at the encoder's image_size: set data.crop_size == model.image_size")
        if self.method == "mae" and self.augment.local_views:
            raise ValueError("augment.local_views (multi-crop) is for SimCLR only")
        if self.method == "mae" and self.mae.decoder_dim % self.mae.decoder_heads:
            raise ValueError(f"mae.decoder_dim {self.mae.decoder_dim} is not divisible by mae.decoder_heads "
                             f"{self.mae.decoder_heads}")
        self._check_vit_sizes()
        return self

    def _check_vit_sizes(self) -> None:
        """A ViT's sizes, checked here rather than after the images are cached (minutes at archive scale, then a
        traceback from inside timm or the MAE's patchify on every DDP process)."""
        model = self.model
        if not model.timm_name.startswith(VIT_PREFIXES):
            return
        patch = model.patch_size or _default_patch_size(model.timm_name)
        sizes = {"model.image_size": model.image_size, "data.crop_size": self.data.crop_size}
        if self.method == "simclr" and self.augment.local_views:
            sizes["augment.local_crop_size"] = self.augment.local_crop_size
        if patch:
            bad = [f"{name} {size}" for name, size in sizes.items() if size % patch]
            if bad:
                raise ValueError(f"{', '.join(bad)} not divisible by the ViT patch size {patch} "
                                 f"({'model.patch_size' if model.patch_size else model.timm_name}): use a multiple "
                                 f"of {patch}")
        if not model.kwargs.get("dynamic_img_size"):
            # timm builds the position embedding for model.image_size and refuses any other input size
            other = [f"{name} {size}" for name, size in sizes.items() if size != model.image_size]
            if other:
                raise ValueError(f"a ViT trains at model.image_size {model.image_size} only: {', '.join(other)} "
                                 "differ (set them equal, or model.kwargs.dynamic_img_size=true)")


#: timm names of Vision Transformers (their patch embedding fixes the input sizes): as radloop.ssl.encoders.
VIT_PREFIXES = ("vit_", "deit_", "eva", "beit")


def _default_patch_size(timm_name: str) -> int | None:
    """The patch size a timm ViT name states (``vit_tiny_patch16_224`` -> 16); None when it states none."""
    match = re.search(r"patch(\d+)", timm_name)
    return int(match.group(1)) if match else None


def peak_lr(optim: OptimSettings, effective_batch_size: int) -> float:
    """The run's peak LR: ``optim.lr`` scaled from ``optim.reference_batch_size`` to ``effective_batch_size``
    images per optimizer step by ``optim.lr_scaling`` (Goyal et al. 2017, linear; He et al. 2022 use it for MAE)."""
    ratio = effective_batch_size / optim.reference_batch_size
    return optim.lr * {"none": 1.0, "linear": ratio, "sqrt": ratio ** 0.5}[optim.lr_scaling]
