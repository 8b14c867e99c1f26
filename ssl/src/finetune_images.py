"""In-memory image sets for CPU training: renders decoded and resized once, light augmentation per step.

Radiographs have one channel and laterality matters, so augmentation never flips: small affine jitter
(rotation, scale, translation) and brightness/contrast only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from radloop.ssl.encoder_adapter import read_pixels
from radloop.ssl.pixels import resize_square

__all__ = ["AugmentedImages", "model_input", "normalize_pixels", "preload_images"]


def model_input(images: Sequence[Path | str | np.ndarray], image_size: int, mean: float, std: float) -> torch.Tensor:
    """The encoders' preprocessing (squash-resize to a square, (x - mean) / std): float32 (B, 1, S, S)."""
    batch = torch.stack([resize_square(torch.from_numpy(np.ascontiguousarray(read_pixels(image)))[None], image_size)
                         for image in images])
    return (batch - mean) / std


def normalize_pixels(pixels: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 pixels from :func:`preload_images` -> the encoder's input, ``(x / 255 - mean) / std`` in float32."""
    return (pixels.float() / 255.0 - mean) / std


def preload_images(paths: Sequence[Path | str | np.ndarray], image_size: int, *, progress: bool = True,
                   chunk: int = 64) -> torch.Tensor:
    """Decode and resize images once.

    Returns:
        uint8 tensor (N, 1, image_size, image_size) (1 byte per pixel keeps 10k images at 224 px < 0.5 GB).

    Raises:
        FileNotFoundError: a render is missing (the message names it).
    """
    missing = [str(p) for p in paths if not isinstance(p, np.ndarray) and not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} render(s) missing, e.g. {missing[0]}: restore the workspace's "
                                "renders/ folder (ingest skips images it has catalogued)")
    starts = range(0, len(paths), chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"load images ({image_size}px)", unit="chunk", leave=False)
    parts = []
    for start in starts:
        batch = model_input(list(paths[start:start + chunk]), image_size, mean=0.0, std=1.0)
        parts.append((batch.clamp(0, 1) * 255).round().to(torch.uint8))
    if not parts:
        return torch.zeros((0, 1, image_size, image_size), dtype=torch.uint8)
    return torch.cat(parts)


class AugmentedImages(Dataset):
    """Preloaded images with targets; returns ``(image, targets, weight, region)`` per item.

    Args:
        pixels: uint8 (N, 1, S, S) from :func:`preload_images`.
        mean, std: the encoder's normalisation.
        augment: apply random affine + intensity jitter (training only).
        targets: (N, T) int 1/0/-1; weights: (N,) float; regions: (N,) int, -1 unknown.
    """

    def __init__(self, pixels: torch.Tensor, mean: float, std: float, *, augment: bool,
                 targets: np.ndarray, weights: np.ndarray, regions: np.ndarray, seed: int = 0) -> None:
        self.pixels = pixels
        self.mean, self.std = mean, std
        self.augment = augment
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
        self.regions = torch.as_tensor(np.asarray(regions), dtype=torch.int64)
        self._transform = None
        if augment:
            from torchvision.transforms import v2

            self._transform = v2.Compose([
                v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
                v2.ColorJitter(brightness=0.2, contrast=0.2),
            ])

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int):
        image = self.pixels[index]
        if self._transform is not None:
            image = self._transform(image)
        image = normalize_pixels(image, self.mean, self.std)
        return image, self.targets[index], self.weights[index], self.regions[index]
