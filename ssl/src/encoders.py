"""Exported encoders: a timm backbone saved as ``encoder.safetensors`` + ``encoder.json``.

An encoder maps one-channel radiographs ``(B, 1, H, W)`` float to embeddings ``(B, D)``.  Its folder holds
the backbone's weights (safetensors, never pickle) and an :class:`EncoderConfig` that says how to rebuild
it with ``timm.create_model(timm_name, in_chans=1, num_classes=0, ...)`` and how to preprocess pixels
(squash-resize to ``image_size``, ``(x - mean) / std`` on [0, 1] pixels).

Usage::

    bundle = load_encoder("ws/models/runs/simclr_cpu/encoder")
    vectors = embed_images(bundle, ["a.png", "b.png"])          # (2, D) float32, L2-normalized
    baseline = random_encoder(bundle.config.timm_name, bundle.config.image_size)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from radloop.core.registry import ENCODER_CONFIG_FILE, ENCODER_WEIGHTS_FILE
from radloop.ssl.pixels import read_image, resize_square, to_unit_float
from radloop.ssl.settings import PoolingName

__all__ = [
    "ENCODER_CONFIG_FILE", "ENCODER_WEIGHTS_FILE", "EncoderBundle", "EncoderConfig", "EncoderOverwrittenError",
    "PooledEncoder", "build_backbone", "check_registered_version", "embed_images", "encoder_version",
    "load_encoder", "preprocess", "random_encoder", "reexport_encoder", "save_encoder",
]

logger = logging.getLogger(__name__)

Pooling = PoolingName


class EncoderConfig(BaseModel):
    """What ``encoder.json`` holds: how to rebuild the backbone and preprocess its input.

    Attributes:
        timm_name: timm architecture name (``resnet18``, ``vit_base_patch16_224``...).
        in_chans: always 1 (radiographs).
        image_size: side of the square input the encoder embeds at.
        patch_size: ViT patch size (None for CNNs).
        mean, std: per-channel normalization of [0, 1] pixels (length ``in_chans``).
        method: how the weights were obtained (``mae``, ``simclr``, ``random``).
        embed_dim: D, the embedding length.
        version: registry version string (``enc-simclr-resnet18-1a2b3c4d``).
        pooling: ``default`` = the timm model's own pooled output; ``avg_tokens`` = mean of the final
            (normed) patch tokens of a ViT (the usual MAE probe feature); ``multiscale`` = the last two
            stages (CNN: e.g. ResNet ``layer3`` + ``layer4``; ViT: the last two blocks' patch tokens), each
            mean-pooled, concatenated (ResNet-18: 256 + 512 = 768): the earlier stage keeps finer detail.
        flip_average: embed the image and its left-right mirror image and average the two pooled features,
            so a left and a right limb in the same pose embed alike (twice the embedding compute).  Off by
            default: searching for "the same side" needs it off.
        data: what the encoder was trained on (dataset names, splits, image count, steps...).
        model_kwargs: extra ``timm.create_model`` keyword arguments.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    timm_name: str
    in_chans: int = 1
    image_size: int
    patch_size: int | None = None
    mean: list[float] = Field(default_factory=lambda: [0.5])
    std: list[float] = Field(default_factory=lambda: [0.25])
    method: str
    embed_dim: int
    version: str
    pooling: Pooling = "default"
    flip_average: bool = False
    data: dict[str, Any] = Field(default_factory=dict)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)


def build_backbone(timm_name: str, image_size: int, *, patch_size: int | None = None,
                   **model_kwargs: Any) -> nn.Module:
    """``timm.create_model(timm_name, in_chans=1, num_classes=0)``, sized for ViTs (no pretrained weights).

    Raises:
        ValueError: an unknown timm architecture name.
    """
    import timm

    if not timm.is_model(timm_name):
        raise ValueError(f"unknown timm model {timm_name!r} (see timm.list_models())")
    kwargs = dict(model_kwargs)
    if _is_vit(timm_name):
        kwargs.setdefault("img_size", image_size)
        if patch_size is not None:
            kwargs.setdefault("patch_size", patch_size)
    return timm.create_model(timm_name, pretrained=False, in_chans=1, num_classes=0, **kwargs)


def _is_vit(timm_name: str) -> bool:
    from radloop.ssl.settings import VIT_PREFIXES

    return timm_name.startswith(VIT_PREFIXES)


class PooledEncoder(nn.Module):
    """A timm backbone plus its pooling: ``(B, 1, H, W)`` float -> ``(B, D)``.

    Only ``backbone`` holds parameters, so the exported state dict is the timm model's own.
    """

    def __init__(self, backbone: nn.Module, pooling: Pooling = "default", flip_average: bool = False) -> None:
        super().__init__()
        if pooling == "multiscale" and not hasattr(backbone, "forward_intermediates"):
            raise ValueError(f"pooling 'multiscale' needs a timm model with forward_intermediates; "
                             f"{type(backbone).__name__} has none (use pooling 'default')")
        if pooling == "avg_tokens" and not hasattr(backbone, "num_prefix_tokens"):
            # a CNN's forward_features is a (B, C, H, W) map: its "token" mean would be a width-long vector
            raise ValueError(f"pooling 'avg_tokens' averages a ViT's patch tokens; {type(backbone).__name__} has "
                             "none (use pooling 'default' or 'multiscale')")
        self.backbone = backbone
        self.pooling = pooling
        self.flip_average = flip_average

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.flip_average:
            return self._pooled(images)
        both = self._pooled(torch.cat([images, images.flip(-1)]))
        return (both[:len(images)] + both[len(images):]) / 2

    def _pooled(self, images: torch.Tensor) -> torch.Tensor:
        if self.pooling == "avg_tokens":
            tokens = self.backbone.forward_features(images)
            prefix = int(getattr(self.backbone, "num_prefix_tokens", 0))
            return tokens[:, prefix:].mean(dim=1)
        if self.pooling == "multiscale":
            maps = self.backbone.forward_intermediates(images, indices=2, intermediates_only=True)
            return torch.cat([feature_map.mean(dim=(2, 3)) for feature_map in maps], dim=1)
        return self.backbone(images)


@dataclass
class EncoderBundle:
    """A ready-to-use encoder: ``model`` ((B, 1, H, W) float -> (B, D)), its ``config`` and ``version``."""

    model: PooledEncoder
    config: EncoderConfig

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim


def _bundle(backbone: nn.Module, config: EncoderConfig) -> EncoderBundle:
    model = PooledEncoder(backbone, config.pooling, config.flip_average)
    model.eval()
    return EncoderBundle(model=model, config=config)


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """Short sha256 over a state dict's names and values (stable across save/load)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else
                      tensor.float().numpy().tobytes())
    return digest.hexdigest()


def encoder_version(state_dict: dict[str, torch.Tensor], *, timm_name: str, image_size: int, method: str,
                    patch_size: int | None = None, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.25,),
                    pooling: Pooling = "default", flip_average: bool = False,
                    model_kwargs: dict[str, Any] | None = None) -> str:
    """The version :func:`save_encoder` gives these weights and settings (``enc-<method>-<timm_name>-<8 hex>``),
    known before anything is written."""
    embedding_settings = json.dumps({"image_size": image_size, "pooling": pooling, "mean": list(mean),
                                     "std": list(std), "patch_size": patch_size, "model_kwargs": model_kwargs or {},
                                     **({"flip_average": True} if flip_average else {})},
                                    sort_keys=True, default=str)
    digest = hashlib.sha256((weights_digest(state_dict) + embedding_settings).encode()).hexdigest()
    return f"enc-{method}-{timm_name}-{digest[:8]}"


def save_encoder(backbone: nn.Module, folder: str | Path, *, timm_name: str, image_size: int, method: str,
                 patch_size: int | None = None, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.25,),
                 pooling: Pooling = "default", flip_average: bool = False, data: dict[str, Any] | None = None,
                 model_kwargs: dict[str, Any] | None = None, version: str | None = None) -> EncoderBundle:
    """Export a trained backbone to ``folder`` (safetensors + JSON) and return it as a bundle.

    The version defaults to ``enc-<method>-<timm_name>-<8 hex>``, a digest of the weights and of everything
    else that changes the embeddings (image size, pooling, flip averaging, normalization, model kwargs): the
    same weights exported to embed differently get another version, so ``radloop embed`` never mixes their
    vectors.
    """
    from radloop.ssl.artifacts import write_weights_and_json

    target = Path(folder)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in backbone.state_dict().items()}
    if version is None:
        version = encoder_version(state, timm_name=timm_name, image_size=image_size, method=method,
                                  patch_size=patch_size, mean=mean, std=std, pooling=pooling,
                                  flip_average=flip_average, model_kwargs=model_kwargs)
    pooled = PooledEncoder(backbone, pooling, flip_average).eval()
    with torch.no_grad():
        embed_dim = int(pooled(torch.zeros(1, 1, image_size, image_size,
                                           device=next(backbone.parameters()).device)).shape[-1])
    config = EncoderConfig(timm_name=timm_name, image_size=image_size, patch_size=patch_size, mean=list(mean),
                           std=list(std), method=method, embed_dim=embed_dim, version=version, pooling=pooling,
                           flip_average=flip_average, data=data or {}, model_kwargs=model_kwargs or {})
    target.mkdir(parents=True, exist_ok=True)  # only now: a refused setting above leaves no empty folder behind
    # both files written under temporary names, then renamed (a full disk: an OSError naming the file, the
    # folder's earlier files kept)
    write_weights_and_json(target, state, ENCODER_WEIGHTS_FILE, ENCODER_CONFIG_FILE,
                           json.dumps(config.model_dump(), indent=2) + "\n", metadata={"version": version})
    return _bundle(backbone.to("cpu"), config)


def load_encoder(path: str | Path) -> EncoderBundle:
    """Restore an exported encoder from its folder (or its ``encoder.json`` / ``.safetensors`` file).

    Raises:
        FileNotFoundError: no ``encoder.json`` / ``encoder.safetensors`` there.
        ValueError: an invalid or damaged (cut short) config or weights file, or weights that do not fit the
            architecture; the message names the file and what to do.
    """
    from pydantic import ValidationError
    from safetensors.torch import load_file

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    config_file, weights_file = folder / ENCODER_CONFIG_FILE, folder / ENCODER_WEIGHTS_FILE
    for file in (config_file, weights_file):
        if not file.is_file():
            raise FileNotFoundError(f"not an encoder folder: {file} is missing")
    remedy = ("re-export it (rerun the radloop pretrain command that made it: it exports from the run's "
              "last.ckpt without training again) or pretrain it again")
    try:
        config = EncoderConfig.model_validate_json(config_file.read_bytes())
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ()))
        raise ValueError(f"{config_file} is damaged or not an encoder config ({where + ': ' if where else ''}"
                         f"{problem['msg']}): "
                         f"{remedy}") from None
    backbone = build_backbone(config.timm_name, config.image_size, patch_size=config.patch_size,
                              **config.model_kwargs)
    try:
        weights = load_file(str(weights_file))
    except Exception as error:  # SafetensorError (no OSError, no ValueError) for a file cut short or garbled
        if isinstance(error, OSError):
            raise
        raise ValueError(f"{weights_file} is damaged (cut short or not a safetensors file: {error}): "
                         f"{remedy}") from None
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{weights_file} does not fit {config.timm_name}: {error}") from None
    return _bundle(backbone, config)


class EncoderOverwrittenError(LookupError, ValueError):
    """A registered encoder's folder now holds another version (its weights were overwritten)."""


def check_registered_version(bundle: EncoderBundle, version: str, folder: str | Path) -> EncoderBundle:
    """``bundle`` (loaded from the folder registered for ``version``) if it is that version.

    Raises:
        EncoderOverwrittenError: the folder holds another version, so its weights are not ``version``'s; embedding
            with them under ``version``'s name would mix two encoders' vectors.
    """
    if bundle.version != version:
        raise EncoderOverwrittenError(
            f"the encoder folder {folder} now holds version {bundle.version}, not {version}: it was overwritten; "
            f"re-embed with {bundle.version} or retrain {version} (into a new folder: radloop pretrain --out "
            "NEW_FOLDER)")
    return bundle


def reexport_encoder(source: str | Path, folder: str | Path, *, image_size: int | None = None,
                     pooling: Pooling | None = None, flip_average: bool | None = None) -> EncoderBundle:
    """The same weights exported to ``folder`` with other embedding settings (None keeps the source's).

    The copy gets its own version (settings are part of it), so its vectors never mix with the source's;
    what the source was trained on (``data``) is kept.

    Raises:
        FileExistsError: ``folder`` already holds files (nothing is overwritten, the source included).
        ValueError: settings the backbone cannot take (e.g. ``multiscale`` on a model without stages).
    """
    bundle = load_encoder(source)
    target = Path(folder)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty: re-export into a new folder")
    config = bundle.config
    size = config.image_size if image_size is None else image_size
    if _is_vit(config.timm_name) and size != config.image_size:
        raise ValueError(f"{config.timm_name} was built for {config.image_size} px; a ViT keeps its input size")
    return save_encoder(bundle.model.backbone, target, timm_name=config.timm_name, image_size=size,
                        method=config.method, patch_size=config.patch_size, mean=config.mean, std=config.std,
                        pooling=config.pooling if pooling is None else pooling,
                        flip_average=config.flip_average if flip_average is None else flip_average,
                        data=config.data, model_kwargs=config.model_kwargs)


def random_encoder(timm_name: str, image_size: int, *, patch_size: int | None = None,
                   mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.25,), pooling: Pooling = "default",
                   flip_average: bool = False, seed: int = 0, **model_kwargs: Any) -> EncoderBundle:
    """The same architecture with timm's random initialization (seeded): the baseline for every encoder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(timm_name, image_size, patch_size=patch_size, **model_kwargs)
    pooled = PooledEncoder(backbone, pooling, flip_average).eval()
    with torch.no_grad():
        embed_dim = int(pooled(torch.zeros(1, 1, image_size, image_size)).shape[-1])
    config = EncoderConfig(timm_name=timm_name, image_size=image_size, patch_size=patch_size, mean=list(mean),
                           std=list(std), method="random", embed_dim=embed_dim,
                           version=f"random-{timm_name}-{image_size}-seed{seed}" + ("-flipavg" if flip_average else ""),
                           pooling=pooling, flip_average=flip_average, model_kwargs=model_kwargs)
    return _bundle(backbone, config)


def preprocess(config: EncoderConfig, image: str | Path | np.ndarray) -> torch.Tensor:
    """One image (path or 2-D array) -> normalized ``(1, S, S)`` float tensor for this encoder.

    Raises:
        UnreadableImage: a path that cannot be decoded.
    """
    pixels = read_image(image) if isinstance(image, (str, Path)) else to_unit_float(image)
    tensor = resize_square(torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(0), config.image_size)
    mean = torch.tensor(config.mean, dtype=tensor.dtype).view(-1, 1, 1)
    std = torch.tensor(config.std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - mean) / std


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def embed_images(bundle: EncoderBundle, images: Sequence[str | Path | np.ndarray], *, batch_size: int = 64,
                 normalize: bool = True, device: str | torch.device | None = None) -> np.ndarray:
    """Embed images with the encoder's own preprocessing.

    Args:
        bundle: from :func:`load_encoder` or :func:`random_encoder`.
        images: a list (or any iterable) of file paths (PNG / JPEG / DICOM) or 2-D uint8 / float arrays;
            a single path is refused (pass ``[path]``), a single 2-D array too (pass ``[array]``).
        batch_size: images per forward pass.
        normalize: L2-normalize each embedding.
        device: ``cpu``, ``cuda``... (default: CUDA when available).

    Returns:
        float32 array of shape (N, D), rows in input order.

    Raises:
        UnreadableImage: a path that cannot be decoded (callers that must not stop skip such images first).
        TypeError: one image where a list of images is expected.
    """
    if isinstance(images, (str, bytes, os.PathLike)):
        raise TypeError(f"images must be a list of images, not one path: pass [{str(images)!r}]")
    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise TypeError("images must be a list of images, not one 2-D array: pass [array]")
    images = images if isinstance(images, (list, tuple, np.ndarray)) else list(images)
    target = pick_device(device)
    model = bundle.model.to(target).eval()
    outputs: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([preprocess(bundle.config, image) for image in images[start:start + batch_size]])
        batch = batch.to(target)
        if target.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        vectors = model(batch).float()
        if normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=1)
        outputs.append(vectors.cpu().numpy())
    if not outputs:
        return np.zeros((0, bundle.embed_dim), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)
