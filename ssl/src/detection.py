"""Fracture / foreign-body boxes: torchvision Faster R-CNN on the timm encoder with a feature pyramid.

The backbone is the (pretrained or random) one-channel timm encoder in ``features_only`` mode, its
BatchNorm frozen (detection batches are tiny), topped by torchvision's ``FeaturePyramidNetwork``; the RPN and
RoI heads are torchvision's (Ren et al. 2015; Lin et al. 2017).  Images go in as one-channel [0, 1] tensors at
render resolution; torchvision's transform resizes them and normalises with the encoder's mean/std.  Boxes
come out in original-image pixels.  Saved as ``detector.safetensors`` + ``detector.json``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from radloop.core.boxes import sanitize_box, sanitize_boxes
from radloop.core.records import Box
from radloop.ssl.checkpoint_io import SameFolderCheckpointIO
from radloop.ssl.encoder_adapter import encoder_stats, read_pixels, timm_backbone, timm_backbone_from_bundle
from radloop.ssl.encoders import pick_device
from radloop.ssl.predict import ImagePrediction, Predictor
from radloop.ssl.finetune_checkpoints import checkpoint_callback, fit_resumable
from radloop.ssl.finetune_config import DetectConfig, TrainerConfig
from radloop.ssl.precision import effective_precision
from radloop.ssl.trainer_progress import trainer_callbacks

DETECTOR_WEIGHTS = "detector.safetensors"
DETECTOR_CONFIG = "detector.json"
#: Predicted boxes narrower or lower than this many original pixels are dropped: the Label Studio pull refuses
#: them (``radloop.labeling.ls_adapter``), so an expert who accepted one would lose it.
MIN_PREDICTED_BOX_PX = 1.0

__all__ = ["BoxImages", "DetectorModule", "DetectorPredictor", "TimmFPNBackbone", "build_detector",
           "detector_determinism", "known_negatives", "train_detector"]


class TimmFPNBackbone(nn.Module):
    """timm ``features_only`` body + torchvision FPN; ``out_channels`` as torchvision detectors expect."""

    def __init__(self, body: nn.Module, fpn_channels: int) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(body.feature_info.channels()), fpn_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        features = self.body(images)
        return self.fpn(OrderedDict((str(index), feature) for index, feature in enumerate(features)))


def _freeze_early_stages(body: nn.Module, trainable_layers: int) -> None:
    """Train only the last ``trainable_layers`` top-level parameterised children (stem counts as one)."""
    children = [(name, child) for name, child in body.named_children() if any(True for _ in child.parameters())]
    frozen = children[:max(0, len(children) - trainable_layers)]
    for _name, child in frozen:
        for parameter in child.parameters():
            parameter.requires_grad_(False)


def build_detector(body: nn.Module, meta: dict[str, Any]) -> nn.Module:
    """Faster R-CNN (num classes = labels + background) on a timm ``features_only`` body."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = TimmFPNBackbone(body, meta["fpn_channels"])
    levels = len(body.feature_info.channels())
    sizes = tuple((16 * 2 ** level,) for level in range(levels + 1))
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))
    pooler = MultiScaleRoIAlign(featmap_names=[str(i) for i in range(levels)], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=len(meta["labels"]) + 1, rpn_anchor_generator=anchors,
                      box_roi_pool=pooler, min_size=meta["min_size"], max_size=meta["max_size"],
                      image_mean=[meta["mean"]], image_std=[meta["std"]],
                      box_score_thresh=meta["score_threshold"], box_detections_per_img=meta["detections_per_image"])


def _body(meta: dict[str, Any], bundle: Any | None = None) -> nn.Module:
    """The feature stages of ``bundle``'s backbone, or (``bundle`` None: a saved detector) an untrained one of the
    architecture ``meta`` names, built with the encoder's ``model_kwargs`` as in training."""
    from timm.layers import freeze_batch_norm_2d

    kwargs = {"features_only": True, "out_indices": (1, 2, 3, 4)}
    if bundle is not None:
        body, _ = timm_backbone_from_bundle(bundle, **kwargs)
    else:
        body = timm_backbone(meta["timm_name"], int(meta.get("image_size") or 224),
                             model_kwargs=meta.get("model_kwargs"), **kwargs)
    return freeze_batch_norm_2d(body)


class BoxImages(Dataset):
    """Render paths + boxes (original px) -> ``(image (1, H, W) float [0, 1], target dict)`` at render size."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[tuple[int, int]], boxes: Sequence[Sequence[Box]],
                 labels: list[str]) -> None:
        self.paths, self.sizes, self.boxes, self.labels = list(paths), list(sizes), list(boxes), labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = torch.from_numpy(read_pixels(self.paths[index]))[None]
        width, height = self.sizes[index]
        scale_x, scale_y = image.shape[2] / width, image.shape[1] / height
        kept = [b for b in self.boxes[index] if b.label in self.labels]
        coordinates = torch.tensor([[b.x * scale_x, b.y * scale_y, (b.x + b.w) * scale_x, (b.y + b.h) * scale_y]
                                    for b in kept], dtype=torch.float32).reshape(-1, 4)
        classes = torch.tensor([self.labels.index(b.label) + 1 for b in kept], dtype=torch.int64)
        return image, {"boxes": coordinates, "labels": classes}


def _collate(batch):
    return [item[0] for item in batch], [item[1] for item in batch]


class DetectorModule(L.LightningModule):
    """Sum of the Faster R-CNN losses, SGD with warm-up + cosine decay."""

    def __init__(self, model: nn.Module, config: DetectConfig, total_steps: int) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.total_steps = max(total_steps, 1)

    def training_step(self, batch, _index):
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        self.log("loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def configure_optimizers(self):
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(parameters, lr=self.config.lr, momentum=self.config.momentum,
                                    weight_decay=self.config.weight_decay)
        warmup = min(50, self.total_steps // 5)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1.0 + math.cos(math.pi * min((step - warmup) / max(1, self.total_steps - warmup), 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def train_detector(bundle: Any, paths: Sequence[Path], sizes: Sequence[tuple[int, int]],
                   boxes: Sequence[Sequence[Box]], known_negative: Sequence[bool], config: DetectConfig,
                   trainer: TrainerConfig, *, progress: bool = True,
                   checkpoints: Path | None = None) -> tuple["DetectorPredictor", list[str]]:
    """Train a detector; returns it as a predictor and the messages about dropped/clipped boxes (and about a
    resumed checkpoint: ``checkpoints`` is the job's folder, :mod:`radloop.ssl.finetune_checkpoints`).

    Images with usable boxes are positives; images with ``known_negative`` (exhaustively annotated, no box)
    are negatives when ``config.include_negatives``; anything else is left out.

    Raises:
        ValueError: no usable box at all (after dropping degenerate ones); a ViT encoder (no feature stages).
        KeyboardInterrupt: Ctrl-C during training, with what a rerun does.
    """
    backbone = getattr(getattr(bundle, "model", None), "backbone", None)
    if hasattr(backbone, "num_prefix_tokens"):  # one stride only: no feature pyramid for the FPN
        raise ValueError(f"detection needs a CNN encoder with feature stages (e.g. resnet18); "
                         f"{bundle.config.timm_name} ({getattr(bundle, 'version', '?')}) is a ViT: "
                         "train the detector on a CNN encoder (encoder.version=VERSION or encoder.path=FOLDER)")
    messages: list[str] = []
    chosen_paths, chosen_sizes, chosen_boxes = [], [], []
    for path, size, image_boxes, negative in zip(paths, sizes, boxes, known_negative):
        wanted = [b for b in image_boxes if b.label in config.labels]
        clean, notes = sanitize_boxes(wanted, size[0], size[1], min_size=config.min_box_size, context=Path(path).stem)
        messages.extend(notes)
        if clean or (negative and not wanted and config.include_negatives):
            chosen_paths.append(path)
            chosen_sizes.append(size)
            chosen_boxes.append(clean)
    n_boxes = sum(len(b) for b in chosen_boxes)
    if n_boxes == 0:
        raise ValueError(f"no usable {'/'.join(config.labels)} box among {len(paths)} training images"
                         f"{' (' + str(len(messages)) + ' degenerate boxes dropped)' if messages else ''}; "
                         "annotate boxes or check the dataset's box labels")
    _size, mean, std = encoder_stats(bundle)
    meta = {"timm_name": bundle.config.timm_name, "model_kwargs": dict(bundle.config.model_kwargs),
            "fpn_channels": config.fpn_channels,
            "min_size": config.min_size, "max_size": config.max_size, "labels": list(config.labels),
            "mean": mean, "std": std,
            "score_threshold": config.score_threshold, "detections_per_image": config.detections_per_image,
            "encoder_version": getattr(bundle, "version", None)}
    body = _body(meta, bundle)
    _freeze_early_stages(body, config.trainable_layers)
    model = build_detector(body, meta)
    dataset = BoxImages(chosen_paths, chosen_sizes, chosen_boxes, config.labels)
    loader = DataLoader(dataset, batch_size=min(config.batch_size, len(dataset)), shuffle=True,
                        collate_fn=_collate, num_workers=0)
    total = config.max_steps if config.max_steps > 0 else len(loader) * config.max_epochs
    if trainer.num_threads:
        torch.set_num_threads(trainer.num_threads)
    saving = [checkpoint_callback(checkpoints, trainer.checkpoint_every_n_steps)] if checkpoints else []
    fit = L.Trainer(accelerator=trainer.accelerator, devices=trainer.devices,
                    precision=effective_precision(trainer.precision, trainer.accelerator),
                    max_epochs=config.max_epochs, max_steps=config.max_steps,
                    max_time={"minutes": config.max_time_minutes} if config.max_time_minutes else None,
                    log_every_n_steps=min(trainer.log_every_n_steps, len(loader)), enable_checkpointing=bool(saving),
                    logger=False, enable_progress_bar=progress, enable_model_summary=False,
                    callbacks=trainer_callbacks(progress) + saving,
                    plugins=[SameFolderCheckpointIO()],  # checkpoints never half-written, never through /tmp
                    deterministic=detector_determinism(trainer.deterministic, trainer.accelerator))
    module = DetectorModule(model, config, total)
    resumed = fit_resumable(fit, module, loader, checkpoints, "detector training")
    module.final_loss = float(fit.callback_metrics.get("loss", torch.tensor(float("nan"))))
    predictor = DetectorPredictor(model.eval(), meta, model_version="")
    predictor.train_summary = {"images": len(dataset), "boxes": n_boxes, "dropped_or_clipped": len(messages),
                               "final_loss": module.final_loss, "steps": int(fit.global_step)}
    return predictor, messages + resumed


class DetectorPredictor(Predictor):
    """Boxes (original px, scored) + image-level choices (max box score per label)."""

    def __init__(self, model: nn.Module, meta: dict[str, Any], model_version: str) -> None:
        self.model = model.eval()
        self.meta = meta
        self.model_version = model_version
        self.findings = list(meta["labels"])
        self.regions = []
        self.train_summary: dict[str, Any] = {}

    @torch.inference_mode()
    def predict(self, images, *, original_sizes: Sequence[tuple[int, int]] | None = None,
                batch_size: int = 4) -> list[ImagePrediction]:
        """Boxes in original-image pixels, scaled from the pixels the model saw (the render), clipped to the
        image; boxes under :data:`MIN_PREDICTED_BOX_PX` on a side are left out (the choices, max box score per
        label, still count them).

        Args:
            images: render paths or 2-D arrays.
            original_sizes: (width, height) of each image's original (``Image.width, Image.height``; an image
                that is its own original gives its own size).  Required: a box in render pixels divided by
                the original size lands in the wrong place on any image larger than its render.

        Raises:
            TypeError: no ``original_sizes``.
            ValueError: not one size per image.
        """
        if original_sizes is None:
            raise TypeError("DetectorPredictor.predict needs original_sizes, the (width, height) of each image's "
                            "original: boxes are returned in original-image pixels")
        if len(original_sizes) != len(images):
            raise ValueError(f"{len(original_sizes)} original sizes for {len(images)} images")
        results = []
        device = pick_device()  # the GPU when there is one (Lightning hands models back on the CPU)
        self.model.to(device)
        for start in range(0, len(images), batch_size):
            tensors = [torch.from_numpy(read_pixels(image))[None] for image in images[start:start + batch_size]]
            outputs = [{key: value.cpu() for key, value in output.items()}
                       for output in self.model([tensor.to(device) for tensor in tensors])]
            for offset, (tensor, output) in enumerate(zip(tensors, outputs)):
                width, height = original_sizes[start + offset]
                scale_x, scale_y = width / tensor.shape[2], height / tensor.shape[1]
                boxes, scores = [], {name: 0.0 for name in self.findings}
                for (x0, y0, x1, y1), label, score in zip(output["boxes"].tolist(), output["labels"].tolist(),
                                                          output["scores"].tolist()):
                    scores[self.findings[label - 1]] = max(scores[self.findings[label - 1]], float(score))
                    box, _ = sanitize_box(Box(self.findings[label - 1], x0 * scale_x, y0 * scale_y,
                                              (x1 - x0) * scale_x, (y1 - y0) * scale_y, score=float(score)),
                                          width, height, min_size=MIN_PREDICTED_BOX_PX)
                    if box is not None:  # a sub-pixel sliver (from a wide render row) is no usable box
                        boxes.append(box)
                results.append(ImagePrediction(choices=scores, boxes=boxes, model_version=self.model_version))
        return results

    def save(self, folder: str | Path) -> Path:
        from radloop.ssl.artifacts import save_artifact

        return save_artifact(self.model, folder, DETECTOR_WEIGHTS, DETECTOR_CONFIG, self.meta)

    @classmethod
    def load(cls, folder: str | Path, model_version: str = "") -> "DetectorPredictor":
        from radloop.ssl.artifacts import read_artifact

        state, meta = read_artifact(folder, DETECTOR_WEIGHTS, DETECTOR_CONFIG)
        model = build_detector(_body(meta), meta)
        model.load_state_dict(state)
        return cls(model, meta, model_version)


def detector_determinism(deterministic: bool, accelerator: str) -> bool | str:
    """Lightning's ``deterministic`` for the detector: ``trainer.deterministic`` as given on the CPU; on a GPU
    ``"warn"`` (deterministic algorithms wherever torch has one), because torchvision's CUDA ``roi_align``
    backward has no deterministic implementation and strict mode would stop the first training step."""
    if deterministic and accelerator != "cpu":
        return "warn"
    return deterministic


def known_negatives(targets: np.ndarray, findings: list[str], labels: list[str]) -> list[bool]:
    """Rows whose every box label is known absent (exhaustive annotation without a box)."""
    columns = [findings.index(label) for label in labels if label in findings]
    if not columns:
        return [False] * len(targets)
    return [bool(all(row[c] == 0 for c in columns)) for row in targets]
