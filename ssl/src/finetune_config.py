"""Typed configs of the training jobs (``configs/finetune/*.yaml``), validated at load."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from radloop.core.config import StrictModel, did_you_mean
from radloop.core.vocabulary import BOX_FINDINGS, FINDINGS

__all__ = ["DataConfig", "DetectConfig", "EncoderConfigRef", "FinetuneConfig", "ProbeConfig", "TrainConfig",
           "TrainerConfig", "WeakLabelConfig"]


#: Lightning's ``Trainer(precision=...)`` values.
PRECISIONS = ("32-true", "32", "16-mixed", "16-true", "16", "bf16-mixed", "bf16-true", "bf16", "64-true", "64",
              "transformer-engine", "transformer-engine-float16")


def known_precision(value: object) -> str:
    """``value`` as one of :data:`PRECISIONS` (YAML's ``16`` is a number), or a ValueError with the likely one:
    checked when a config is read, not when Lightning builds the trainer after the images are loaded."""
    text = str(value).strip()
    if text not in PRECISIONS:
        raise ValueError(f"precision {value!r} is not one of {', '.join(PRECISIONS)}{did_you_mean(text, PRECISIONS)}")
    return text


def _max_steps(value: int) -> int:
    if value != -1 and value < 1:
        raise ValueError(f"max_steps {value}: -1 (max_epochs decides) or at least 1")
    return value


class WeakLabelConfig(StrictModel):
    """Report-derived weak labels for images no expert labelled (noise-aware: lower sample weight)."""

    use: bool = False
    weight: float = Field(0.3, gt=0.0, le=1.0)


class DataConfig(StrictModel):
    """Which images and labels a job trains and evaluates on."""

    dataset: str | None = None
    findings: list[str] = ["fracture"]
    body_region: bool = True
    train_splits: list[Literal["train", "val", "test"]] = ["train"]
    eval_split: Literal["train", "val", "test"] = "test"
    # fine-tuned classifiers: per-finding Platt scaling fitted on this split after training (None: off; skipped
    # with a message when it is a training split or the eval split, or holds no labelled images)
    calibration_split: Literal["train", "val", "test"] | None = "val"
    label_fraction: float = Field(1.0, gt=0.0, le=1.0)
    # a hard cap on the training images, applied after label_fraction and stratified by the first finding (each
    # class keeps at least one image when the cap allows); probe and fine-tuning jobs need at least 2
    max_train_images: int | None = Field(None, ge=1)
    max_eval_images: int | None = Field(None, ge=1)
    weak_labels: WeakLabelConfig = WeakLabelConfig()
    seed: int = 0

    @field_validator("findings")
    @classmethod
    def _known_findings(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in FINDINGS]
        if unknown or not value:
            hint = did_you_mean(unknown[0], FINDINGS) if len(unknown) == 1 else ""
            raise ValueError(f"unknown finding(s) {unknown or '(none given)'}{hint}; valid: {', '.join(FINDINGS)}")
        return value

    @field_validator("eval_split")
    @classmethod
    def _eval_not_train(cls, value: str, info) -> str:
        if value in (info.data.get("train_splits") or []):
            raise ValueError(f"eval_split {value!r} is also a training split: evaluation would leak")
        return value


class EncoderConfigRef(StrictModel):
    """The encoder the head is built on.

    ``path``: an encoder folder (registered into the workspace on first use), else ``version``: a registered
    encoder version or ``current`` (the registry's current encoder).  ``init: random`` trains from scratch:
    the same architecture as the referenced encoder when there is one, else ``timm_name`` at ``image_size``.
    """

    version: str | None = "current"
    path: str | None = None
    init: Literal["pretrained", "random"] = "pretrained"
    timm_name: str = "resnet18"
    image_size: int = Field(128, ge=32)


class ProbeConfig(StrictModel):
    """Calibrated logistic-regression probe on standardised, L2-normalised embeddings."""

    C: float = Field(0.1, gt=0.0)
    class_weight: Literal["balanced"] | None = "balanced"
    calibration_folds: int = Field(3, ge=0)
    batch_size: int = Field(64, ge=1)


class FinetuneConfig(StrictModel):
    """Partial/full fine-tuning with layer-wise learning-rate decay (BEiT/MAE recipe)."""

    mode: Literal["linear", "partial", "full"] = "full"
    image_size: int | None = Field(None, ge=32)  # None: the encoder's own input size
    trainable_fraction: float = Field(0.5, gt=0.0, le=1.0)  # partial: top fraction of layer groups trained
    lr: float = Field(1e-3, gt=0.0)
    layer_decay: float = Field(0.75, gt=0.0, le=1.0)
    weight_decay: float = Field(0.05, ge=0.0)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(5, ge=1)
    max_steps: int = -1  # -1: max_epochs decides; else at least 1 (0 would register an untrained model)
    max_time_minutes: float | None = Field(None, gt=0)
    warmup_steps: int = Field(20, ge=0)
    pos_weight: bool = True
    balanced_sampling: bool = False
    region_loss_weight: float = Field(0.5, ge=0.0)
    augment: bool = True
    num_workers: int = Field(0, ge=0)
    calibrate: bool = True  # Platt-scale each finding on data.calibration_split (pos_weight skews raw scores)
    # score the findings (mean AUROC) on data.calibration_split after every epoch and keep the best epoch's
    # weights: validation-based early stopping without a patience cut-off (training still runs its epochs)
    select_epoch: bool = False

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        return _max_steps(value)


class DetectConfig(StrictModel):
    """Faster R-CNN on the timm backbone with an FPN (one channel)."""

    labels: list[str] = ["fracture"]
    fpn_channels: int = Field(128, ge=16)
    min_size: int = Field(384, ge=64)
    max_size: int = Field(512, ge=64)
    trainable_layers: int = Field(3, ge=0, le=5)
    lr: float = Field(0.01, gt=0.0)
    momentum: float = 0.9
    weight_decay: float = Field(1e-4, ge=0.0)
    batch_size: int = Field(4, ge=1)
    max_epochs: int = Field(3, ge=1)
    max_steps: int = -1  # -1: max_epochs decides; else at least 1
    max_time_minutes: float | None = Field(None, gt=0)
    include_negatives: bool = True
    score_threshold: float = Field(0.05, ge=0.0, le=1.0)
    detections_per_image: int = Field(20, ge=1)
    min_box_size: float = Field(2.0, ge=0.0)

    @field_validator("labels")
    @classmethod
    def _box_findings(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in BOX_FINDINGS]
        if unknown or not value:
            raise ValueError(f"box labels must be in {', '.join(BOX_FINDINGS)}, got {value}")
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        return _max_steps(value)


class TrainerConfig(StrictModel):
    """Lightning ``Trainer`` settings shared by the fine-tuning and detection jobs."""

    accelerator: Literal["cpu", "gpu", "cuda", "mps", "auto"] = "cpu"
    devices: int | str = Field(1, description="one device: 1, or one device index as Lightning writes it ('0,')")
    precision: str = "32-true"
    num_threads: int | None = Field(2, ge=1)
    log_every_n_steps: int = Field(10, ge=1)
    # fine-tuning and detection save <workspace>/models/runs/<version>/checkpoints/last.ckpt this often (and at the
    # end of training): rerunning an interrupted job resumes there (``finetune_checkpoints``); not part of the
    # model's version
    checkpoint_every_n_steps: int = Field(50, ge=1)
    # torch's deterministic algorithms (Lightning ``deterministic``); the detector on a GPU warns instead of
    # failing where torchvision has none (``detection.detector_determinism``)
    deterministic: bool = False

    @field_validator("precision", mode="before")
    @classmethod
    def _known_precision(cls, value: object) -> str:
        return known_precision(value)

    @field_validator("devices")
    @classmethod
    def _one_device(cls, value: int | str) -> int | str:
        # More than one device makes Lightning start one process per device (DDP), and each would evaluate,
        # save and register the model; the step schedule would also count the unsharded batches.
        text = str(value).strip()
        if not (text == "1" or (text.endswith(",") and text[:-1].strip().isdigit())):
            raise ValueError(f"devices={value!r}: a head trains on one device (1, or one index like '0,'); "
                             "multi-device training is for pretraining (`radloop pretrain`, trainer.devices)")
        return value


class TrainConfig(StrictModel):
    """One training job: ``radloop train --config configs/finetune/<name>.yaml``."""

    name: str
    head: Literal["probe", "finetune", "detect"]
    task: str | None = None  # default: findings for probe/finetune, detection for detect
    make_current: bool = True
    encoder: EncoderConfigRef = EncoderConfigRef()
    data: DataConfig = DataConfig()
    probe: ProbeConfig = ProbeConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    detect: DetectConfig = DetectConfig()
    trainer: TrainerConfig = TrainerConfig()

    @model_validator(mode="after")
    def _two_images_for_a_classifier(self) -> "TrainConfig":
        cap = self.data.max_train_images
        if cap is not None and cap < 2 and self.head != "detect":
            raise ValueError(f"data.max_train_images={cap}: a {self.head} head needs at least 2 training images, one "
                             f"with and one without {self.data.findings[0]}; set data.max_train_images=2 or more")
        return self

    @property
    def resolved_task(self) -> str:
        return self.task or ("detection" if self.head == "detect" else "findings")
