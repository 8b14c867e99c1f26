"""Glue between the heads (probe, fine-tuning, detection, prediction) and ``radloop.ssl.encoders``.

The encoder API (``load_encoder``, ``random_encoder``, ``embed_images``, the folder format) belongs to
``radloop.ssl.encoders``; this module adds what the heads need on top: loading a registered encoder by
version, a plain timm backbone carrying an encoder's weights (for layer groups and ``features_only``), batch
preprocessing and embedding with a progress bar.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from radloop.core.catalog import Catalog
from radloop.core.registry import RegistryError, current_model, get_model, register_model
from radloop.ssl.encoders import (EncoderBundle, check_registered_version, load_encoder, preprocess,
                                  random_encoder)
from radloop.ssl.encoders import embed_images as _embed_images
from radloop.ssl.pixels import read_image, to_unit_float

__all__ = ["embed_images", "encoder_from_registry", "encoder_stats", "ensure_encoder_registered", "load_encoder",
           "preprocess_images", "random_encoder", "read_pixels", "timm_backbone", "timm_backbone_from_bundle"]

#: timm names of ViT-style models, whose weights' shapes follow the input size and the patch size.
VIT_PREFIXES = ("vit_", "deit_", "eva", "beit")


def encoder_stats(bundle: EncoderBundle) -> tuple[int, float, float]:
    """``(image_size, mean, std)`` of a one-channel encoder."""
    config = bundle.config
    return int(config.image_size), float(config.mean[0]), float(config.std[0])


def encoder_from_registry(catalog: Catalog, version: str) -> EncoderBundle:
    """Load the registered encoder ``version`` (kind ``encoder``) from its folder.

    Raises:
        RegistryError: unknown version.
        ValueError: the version is not an encoder.
        EncoderOverwrittenError: the folder now holds another version (a ``ValueError``).
    """
    record = get_model(catalog, version)
    if record.kind != "encoder":
        raise ValueError(f"model {version!r} is a {record.kind}, not an encoder")
    folder = record.folder(catalog)
    return check_registered_version(load_encoder(folder), version, folder)


def ensure_encoder_registered(catalog: Catalog, folder: str | Path, bundle: EncoderBundle, *,
                              current_if_none: bool = False) -> str:
    """Register an encoder folder the workspace uses (rounds, search and training find encoders there).

    Args:
        current_if_none: make it the current encoder when the workspace has none yet (never replaces one).

    Returns:
        ``"registered as the current encoder"``, ``"registered"`` or ``"already registered"``.
    """
    try:
        get_model(catalog, bundle.version)
        return "already registered"
    except RegistryError:
        pass
    make_current = current_if_none and current_model(catalog, "encoder") is None
    try:
        register_model(catalog, bundle.version, kind="encoder", task="encoder", path=Path(folder).resolve(),
                       config=bundle.config.model_dump(mode="json"), make_current=make_current)
    except RegistryError:  # another process (e.g. a second GPU rank) registered it first
        return "already registered"
    return "registered as the current encoder" if make_current else "registered"


def read_pixels(image: str | Path | np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a path (PNG / JPEG / DICOM) or an array."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    return to_unit_float(image)


def preprocess_images(bundle_or_config: Any, images: Sequence[str | Path | np.ndarray]) -> torch.Tensor:
    """The encoder's own preprocessing over a batch: float32 (B, 1, S, S)."""
    config = getattr(bundle_or_config, "config", bundle_or_config)
    return torch.stack([preprocess(config, image) for image in images])


def embed_images(bundle: EncoderBundle, images: Sequence[str | Path | np.ndarray], *, batch_size: int = 64,
                 normalize: bool = True, device: str | None = None, progress: bool = False) -> np.ndarray:
    """``radloop.ssl.encoders.embed_images`` in chunks with an optional progress bar; (N, D) float32."""
    if isinstance(images, (str, bytes, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 2):
        return _embed_images(bundle, images)  # refused there with the reason
    images = list(images)
    if not progress or len(images) <= batch_size:
        return _embed_images(bundle, images, batch_size=batch_size, normalize=normalize, device=device)
    from tqdm import tqdm

    chunks = [_embed_images(bundle, images[start:start + batch_size], batch_size=batch_size,
                            normalize=normalize, device=device)
              for start in tqdm(range(0, len(images), batch_size), desc="embed", unit="batch", leave=False)]
    return np.concatenate(chunks)


def timm_backbone(timm_name: str, image_size: int, *, patch_size: int | None = None,
                  model_kwargs: dict[str, Any] | None = None, **timm_kwargs: Any) -> torch.nn.Module:
    """A fresh, untrained one-channel timm backbone built as the heads build it from an encoder.

    A ViT gets the encoder's input size and patch size (its position embeddings and patch projection depend on
    them); every architecture gets the encoder's ``model_kwargs``.  Saved heads rebuild their backbone with this
    before loading their weights, so the shapes match the ones they trained with.

    Args:
        timm_name: the timm architecture.
        image_size: the encoder's input size (used by ViTs only).
        patch_size: a ViT's patch size (None: timm's default for ``timm_name``).
        model_kwargs: the encoder's extra ``timm.create_model`` arguments.
        **timm_kwargs: more ``timm.create_model`` arguments (e.g. ``features_only=True``).
    """
    import timm

    kwargs = {"pretrained": False, "in_chans": 1, **dict(model_kwargs or {}), **timm_kwargs}
    if timm_name.startswith(VIT_PREFIXES):
        kwargs.setdefault("img_size", image_size)
        if patch_size:
            kwargs.setdefault("patch_size", patch_size)
    if not kwargs.get("features_only"):
        kwargs.setdefault("num_classes", 0)
    return timm.create_model(timm_name, **kwargs)


def timm_backbone_from_bundle(bundle: EncoderBundle, **timm_kwargs: Any) -> tuple[torch.nn.Module, dict[str, int]]:
    """A fresh timm backbone of the bundle's architecture carrying the bundle's weights.

    Fine-tuning and detection need timm's own module (layer groups, ``features_only``); weights are matched
    by parameter name (wrapper prefixes such as ``backbone.`` stripped) and shape.

    Args:
        bundle: an encoder bundle.
        **timm_kwargs: extra ``timm.create_model`` arguments (e.g. ``features_only=True``).

    Returns:
        The model and ``{"loaded", "missing", "unused"}`` tensor counts.

    Raises:
        ValueError: none of the bundle's weights fit the backbone.
    """
    config = bundle.config
    model = timm_backbone(config.timm_name, config.image_size, patch_size=config.patch_size,
                          model_kwargs=config.model_kwargs, **timm_kwargs)
    target = model.state_dict()
    matched: dict[str, torch.Tensor] = {}
    source = bundle.model.state_dict()
    for name, tensor in source.items():
        for candidate in (name, *[name.split(".", depth)[-1] for depth in range(1, 4) if name.count(".") >= depth]):
            if candidate in target and target[candidate].shape == tensor.shape and candidate not in matched:
                matched[candidate] = tensor
                break
    if not matched:
        raise ValueError(f"no weights of encoder {bundle.version!r} fit a {config.timm_name} backbone")
    model.load_state_dict(matched, strict=False)
    return model, {"loaded": len(matched), "missing": len(set(target) - set(matched)),
                   "unused": len(source) - len(matched)}
