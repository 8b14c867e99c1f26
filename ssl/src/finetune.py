"""Partial / full fine-tuning of the encoder with multi-label finding and body-region heads (Lightning).

Recipe: layer-wise learning-rate decay over timm's layer groups (BEiT, Bao et al. 2022; MAE, He et al. 2022)
with AdamW, linear warm-up and cosine decay; ``linear`` freezes the backbone, ``partial`` trains only the top
``trainable_fraction`` of its layer groups, ``full`` trains everything.  Class imbalance: per-finding
``pos_weight`` in the BCE loss and, optionally, a sampler that balances the first finding's present and absent
images (:func:`balanced_sample_weights`; unknown ones are not counted as absent).  Unknown labels (-1) are
masked out of the loss; report-derived rows carry a lower sample weight.  Saved as
``classifier.safetensors`` + ``classifier.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn

from radloop.ssl.checkpoint_io import SameFolderCheckpointIO
from radloop.ssl.encoder_adapter import encoder_stats, timm_backbone, timm_backbone_from_bundle
from radloop.ssl.encoders import pick_device
from radloop.ssl.finetune_checkpoints import checkpoint_callback, fit_resumable
from radloop.ssl.finetune_config import FinetuneConfig, TrainerConfig
from radloop.ssl.finetune_epochs import BestEpoch
from radloop.ssl.finetune_images import AugmentedImages, model_input, preload_images
from radloop.ssl.predict import ImagePrediction, Predictor
from radloop.ssl.precision import effective_precision
from radloop.ssl.trainer_progress import trainer_callbacks

CLASSIFIER_WEIGHTS = "classifier.safetensors"
CLASSIFIER_CONFIG = "classifier.json"

__all__ = ["ClassifierPredictor", "FindingsClassifier", "FindingsClassifierModule", "balanced_sample_weights",
           "fit_platt", "layer_decay_groups", "train_classifier"]


class FindingsClassifier(nn.Module):
    """timm backbone (one channel) + linear multi-label findings head + optional body-region head."""

    def __init__(self, backbone: nn.Module, n_findings: int, n_regions: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        features = int(backbone.num_features)
        self.findings_head = nn.Linear(features, n_findings)
        self.region_head = nn.Linear(features, n_regions) if n_regions else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 1, H, W) -> finding logits (B, T), region logits (B, R) or None."""
        features = self.backbone(images)
        regions = self.region_head(features) if self.region_head is not None else None
        return self.findings_head(features), regions


def layer_decay_groups(model: FindingsClassifier, config: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups with ``lr_scale`` per layer group; frozen groups get ``requires_grad=False``.

    Heads get scale 1; backbone groups get ``layer_decay ** depth`` from the top (timm's grouping).
    """
    from timm.optim import param_groups_layer_decay

    backbone_groups = param_groups_layer_decay(model.backbone, weight_decay=config.weight_decay,
                                               layer_decay=config.layer_decay)
    scales = sorted({group["lr_scale"] for group in backbone_groups})
    if config.mode == "linear":
        frozen_below = math.inf
    elif config.mode == "partial":
        keep = max(1, int(round(config.trainable_fraction * len(scales))))
        frozen_below = scales[len(scales) - keep]
    else:
        frozen_below = -math.inf
    groups = []
    for group in backbone_groups:
        trainable = group["lr_scale"] >= frozen_below
        for parameter in group["params"]:
            parameter.requires_grad_(trainable)
        if trainable:
            groups.append({**group, "lr_scale": group["lr_scale"] * config.layer_decay})
    heads = [p for module in (model.findings_head, model.region_head) if module is not None
             for p in module.parameters()]
    groups.append({"params": heads, "lr_scale": 1.0, "weight_decay": 0.0})
    return groups


class FindingsClassifierModule(L.LightningModule):
    """Masked, weighted multi-label BCE (+ body-region cross-entropy) with layer-decayed AdamW."""

    def __init__(self, net: FindingsClassifier, config: FinetuneConfig, pos_weight: torch.Tensor,
                 region_weight: torch.Tensor | None, total_steps: int) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.register_buffer("pos_weight", pos_weight)
        self.register_buffer("region_weight", region_weight if region_weight is not None else torch.ones(0))
        self.total_steps = max(total_steps, 1)

    def on_train_epoch_start(self) -> None:
        if self.config.mode == "linear":  # frozen backbone: keep its BatchNorm statistics fixed
            self.net.backbone.eval()

    def training_step(self, batch, _index):
        images, targets, weights, regions = batch
        logits, region_logits = self.net(images)
        known = (targets >= 0).float()
        loss_matrix = nn.functional.binary_cross_entropy_with_logits(
            logits, targets.clamp(min=0).float(), pos_weight=self.pos_weight, reduction="none")
        loss = (loss_matrix * known * weights[:, None]).sum() / known.sum().clamp(min=1.0)
        self.log("loss_findings", loss, prog_bar=True)
        if region_logits is not None and bool((regions >= 0).any()):
            region_loss = nn.functional.cross_entropy(region_logits, regions, weight=self.region_weight,
                                                      ignore_index=-1)
            self.log("loss_region", region_loss, prog_bar=True)
            loss = loss + self.config.region_loss_weight * region_loss
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        groups = layer_decay_groups(self.net, self.config)
        for group in groups:
            group["lr"] = self.config.lr * group["lr_scale"]
        optimizer = torch.optim.AdamW(groups, lr=self.config.lr)
        warmup = min(self.config.warmup_steps, self.total_steps // 5)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, self.total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _pos_weight(targets: np.ndarray) -> torch.Tensor:
    """negatives / positives per finding (1 when a class is missing), clipped to [1/50, 50]."""
    weights = []
    for column in range(targets.shape[1]):
        known = targets[:, column][targets[:, column] >= 0]
        positives, negatives = int((known == 1).sum()), int((known == 0).sum())
        weights.append(float(np.clip(negatives / positives, 1 / 50, 50)) if positives and negatives else 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def balanced_sample_weights(labels: np.ndarray) -> np.ndarray:
    """Sampling weights (N,) that draw present and absent images of one finding equally often.

    ``labels``: (N,) 1 present / 0 absent / -1 unknown.  The labelled images keep their share of the draws, split
    half present, half absent; images whose label is unknown (kept for another finding or their body region)
    keep their own share and are never counted as absent.  With one known class only there is nothing to
    balance: every image is drawn equally often.
    """
    labels = np.asarray(labels)
    present, absent = labels == 1, labels == 0
    if not present.any() or not absent.any():
        return np.full(len(labels), 1.0 / max(len(labels), 1))
    known_share = (present | absent).mean()
    weights = np.full(len(labels), 1.0 / len(labels))  # the unknown images' own share
    weights[present] = 0.5 * known_share / present.sum()
    weights[absent] = 0.5 * known_share / absent.sum()
    return weights


def train_classifier(bundle: Any, images: Sequence[Path], targets: np.ndarray, weights: np.ndarray,
                     regions: Sequence[str | None], findings: list[str], config: FinetuneConfig,
                     trainer: TrainerConfig, *, region_names: list[str] | None = None,
                     validation: tuple[Sequence[Path], np.ndarray] | None = None,
                     progress: bool = True, checkpoints: Path | None = None) -> "ClassifierPredictor":
    """Fine-tune ``bundle``'s backbone on labelled images; returns the trained model as a predictor.

    With ``validation`` (render paths, (M, T) targets) the findings are scored on those images after every
    epoch and the best epoch's weights are returned (:class:`BestEpoch`; summary in ``meta["epoch_selection"]``).

    Args:
        bundle: encoder bundle (pretrained or random init).
        images: render paths (N).
        targets: (N, T) 1 / 0 / -1.
        weights: (N,) sample weights.
        regions: body region per image (None unknown); ``region_names`` fixes the class order.
        checkpoints: the job's checkpoint folder: training resumes from its ``last.ckpt`` and saves there
            (:mod:`radloop.ssl.finetune_checkpoints`; what happened is in ``meta["checkpoint_messages"]``, which
            is not saved with the model); None: no checkpoints.

    Raises:
        KeyboardInterrupt: Ctrl-C during training, with what a rerun does.
    """
    from torch.utils.data import DataLoader, WeightedRandomSampler

    encoder_size, mean, std = encoder_stats(bundle)
    image_size = config.image_size or encoder_size  # conv nets transfer across input sizes
    backbone, _report = timm_backbone_from_bundle(bundle)
    if image_size != encoder_size and hasattr(backbone, "num_prefix_tokens"):  # refused before any image is read
        raise ValueError(f"finetune.image_size {image_size}: the encoder {bundle.config.timm_name} is a ViT built for "
                         f"{encoder_size} px and keeps that input size; leave finetune.image_size unset "
                         f"(or set it to {encoder_size})")
    names = region_names if region_names is not None else sorted({r for r in regions if r})
    if len(names) < 2:
        names = []
    region_index = np.array([names.index(r) if r in names else -1 for r in regions], dtype=np.int64)
    net = FindingsClassifier(backbone, len(findings), len(names))
    pixels = preload_images(images, image_size, progress=progress)
    dataset = AugmentedImages(pixels, mean, std, augment=config.augment, targets=targets, weights=weights,
                              regions=region_index)
    sampler = None
    if config.balanced_sampling:
        sample = balanced_sample_weights(targets[:, 0])
        sampler = WeightedRandomSampler(torch.as_tensor(sample, dtype=torch.double), len(sample), replacement=True)
    loader = DataLoader(dataset, batch_size=min(config.batch_size, len(dataset)), shuffle=sampler is None,
                        sampler=sampler, num_workers=config.num_workers, drop_last=len(dataset) > config.batch_size)
    steps_per_epoch = len(loader)
    total = config.max_steps if config.max_steps > 0 else steps_per_epoch * config.max_epochs
    region_weight = None
    if names:
        counts = np.bincount(region_index[region_index >= 0], minlength=len(names)).astype(np.float32)
        region_weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(names), dtype=torch.float32)
    module = FindingsClassifierModule(net, config, _pos_weight(targets), region_weight, total)
    if trainer.num_threads:
        torch.set_num_threads(trainer.num_threads)
    best_epoch = None
    if validation is not None and len(validation[0]):
        best_epoch = BestEpoch(preload_images(validation[0], image_size, progress=progress), validation[1], mean, std,
                               config.batch_size)
    saving = [checkpoint_callback(checkpoints, trainer.checkpoint_every_n_steps)] if checkpoints else []
    fit = L.Trainer(accelerator=trainer.accelerator, devices=trainer.devices,
                    precision=effective_precision(trainer.precision, trainer.accelerator),
                    max_epochs=config.max_epochs, max_steps=config.max_steps,
                    max_time={"minutes": config.max_time_minutes} if config.max_time_minutes else None,
                    log_every_n_steps=min(trainer.log_every_n_steps, steps_per_epoch),
                    enable_checkpointing=bool(saving), logger=False, enable_progress_bar=progress,
                    callbacks=trainer_callbacks(progress) + saving + ([best_epoch] if best_epoch is not None else []),
                    enable_model_summary=False, deterministic=trainer.deterministic,
                    plugins=[SameFolderCheckpointIO()])  # checkpoints never half-written, never through /tmp
    checkpoint_messages = fit_resumable(fit, module, loader, checkpoints, "fine-tuning")
    meta = {"timm_name": bundle.config.timm_name, "model_kwargs": dict(bundle.config.model_kwargs),
            "patch_size": bundle.config.patch_size, "image_size": image_size, "mean": mean, "std": std,
            "findings": list(findings), "regions": names, "encoder_version": getattr(bundle, "version", None)}
    if best_epoch is not None:
        best_epoch.restore(net)
        meta["epoch_selection"] = best_epoch.summary()
    predictor = ClassifierPredictor(net.eval(), meta, model_version="")
    predictor.checkpoint_messages = checkpoint_messages
    return predictor


def fit_platt(logits: np.ndarray, targets: np.ndarray,
              findings: Sequence[str]) -> tuple[dict[str, list[float]], list[str]]:
    """Per-finding Platt scaling, ``p = sigmoid(slope * logit + intercept)``, fitted on held-out images.

    Fine-tuning with ``pos_weight`` shifts and sharpens the raw scores (measured ECE 0.17 on the fracture test
    split); a positive slope keeps every finding's ranking, so AUROC / AP are unchanged.

    Args:
        logits: (N, T) raw finding logits.
        targets: (N, T) 1 / 0 / -1 (unknown, ignored).

    Returns:
        ({"slope": [...], "intercept": [...]} with identity (1, 0) where a finding could not be fitted,
        messages naming those findings and why).
    """
    from sklearn.linear_model import LogisticRegression

    slopes, intercepts, messages = [], [], []
    for column, name in enumerate(findings):
        known = targets[:, column] >= 0
        labels = targets[known, column]
        if len(np.unique(labels)) < 2:
            messages.append(f"{name} not calibrated: the calibration images have one class only")
            slopes.append(1.0)
            intercepts.append(0.0)
            continue
        model = LogisticRegression(C=1e4).fit(logits[known, column:column + 1].astype(np.float64), labels)
        slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
        if not slope > 0:
            messages.append(f"{name} not calibrated: fitted slope {slope:.3g} <= 0 (scores do not rank the "
                            "calibration images)")
            slope, intercept = 1.0, 0.0
        slopes.append(slope)
        intercepts.append(intercept)
    return {"slope": slopes, "intercept": intercepts}, messages


class ClassifierPredictor(Predictor):
    """A fine-tuned classifier applied to images (sigmoid findings, softmax body region)."""

    def __init__(self, net: FindingsClassifier, meta: dict[str, Any], model_version: str) -> None:
        self.net = net.eval()
        self.meta = meta
        self.model_version = model_version
        self.findings = list(meta["findings"])
        self.regions = list(meta.get("regions", []))
        self.checkpoint_messages: list[str] = []  # how training used its checkpoints (not saved with the model)

    @torch.inference_mode()
    def predict_arrays(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 1, S, S) preprocessed -> finding probabilities (B, T), region probabilities (B, R).

        Runs on the GPU when there is one (Lightning hands trained models back on the CPU)."""
        logits, regions = self.logits(batch)
        calibration = self.meta.get("calibration")
        if calibration:
            logits = logits * np.asarray(calibration["slope"], dtype=np.float32) + np.asarray(
                calibration["intercept"], dtype=np.float32)
        return torch.sigmoid(torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))).numpy(), regions

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 1, S, S) preprocessed -> raw finding logits (B, T), region probabilities (B, R)."""
        device = pick_device()
        self.net.to(device)
        logits, region_logits = self.net(batch.to(device))
        regions = (torch.softmax(region_logits.float(), dim=1) if region_logits is not None
                   else torch.zeros(len(batch), 0))
        return logits.float().cpu().numpy(), regions.float().cpu().numpy()

    def _batches(self, images: Sequence, batch_size: int, progress: bool = False, desc: str = "predict"):
        """Preprocessed (B, 1, S, S) batches of ``images`` with the classifier's own size and normalization."""
        from tqdm.auto import tqdm

        for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress):
            yield model_input(list(images[start:start + batch_size]), self.meta["image_size"], self.meta["mean"],
                              self.meta["std"])

    def calibrate(self, images: Sequence[Path], targets: np.ndarray, batch_size: int = 32,
                  progress: bool = False) -> list[str]:
        """Fit per-finding Platt scaling on labelled held-out images (stored in the saved meta); messages."""
        rows = [self.logits(batch)[0] for batch in self._batches(images, batch_size, progress, "calibrate")]
        logits = np.concatenate(rows) if rows else np.zeros((0, len(self.findings)), dtype=np.float32)
        calibration, messages = fit_platt(logits, targets, self.findings)
        self.meta["calibration"] = {**calibration, "images": int(len(images))}
        return messages

    def predict(self, images, batch_size: int = 32, *, original_sizes=None) -> list[ImagePrediction]:
        """Finding and region probabilities (no boxes: ``original_sizes`` is not needed and ignored)."""
        results = []
        for batch in self._batches(images, batch_size):
            probabilities, regions = self.predict_arrays(batch)
            for row, region_row in zip(probabilities, regions):
                results.append(ImagePrediction(
                    choices={name: float(p) for name, p in zip(self.findings, row)},
                    model_version=self.model_version,
                    regions={name: float(p) for name, p in zip(self.regions, region_row)}))
        return results

    def save(self, folder: str | Path) -> Path:
        from radloop.ssl.artifacts import save_artifact

        return save_artifact(self.net, folder, CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG, self.meta)

    @classmethod
    def load(cls, folder: str | Path, model_version: str = "") -> "ClassifierPredictor":
        from radloop.ssl.artifacts import read_artifact

        state, meta = read_artifact(folder, CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG)
        # a ViT's shapes follow its input and patch size (classifiers saved before "patch_size" was kept: the
        # patch projection's kernel says it)
        patch = state.get("backbone.patch_embed.proj.weight")
        patch_size = meta.get("patch_size") or (int(patch.shape[-1]) if patch is not None else None)
        backbone = timm_backbone(meta["timm_name"], meta["image_size"], patch_size=patch_size,
                                 model_kwargs=meta.get("model_kwargs"))
        net = FindingsClassifier(backbone, len(meta["findings"]), len(meta.get("regions", [])))
        net.load_state_dict(state)
        return cls(net, meta, model_version)
