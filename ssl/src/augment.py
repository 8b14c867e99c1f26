"""Radiograph-safe augmentations on one-channel float tensors in [0, 1].

Random resized crop, small rotation, brightness / contrast / gamma, Gaussian noise, optional blur; flips
only when configured (laterality matters: a left wrist flipped is a right wrist).  Randomness comes from
the global torch RNG, which the dataset seeds per sample position, so the views are reproducible.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from radloop.ssl.settings import AugmentSettings

__all__ = ["RadiographAugment", "RadiographViews"]


class RadiographAugment:
    """One random view: ``(1, H, W)`` float [0, 1] -> ``(1, size, size)`` float, normalized by mean/std.

    Args:
        size: output side.
        settings: the ``augment`` config section.
        scale: crop area range (defaults to ``settings.crop_scale``).
        mean, std: normalization applied last.
    """

    def __init__(self, size: int, settings: AugmentSettings, *, scale: tuple[float, float] | None = None,
                 mean: list[float] = (0.5,), std: list[float] = (0.25,)) -> None:
        self.settings = settings
        geometric: list = [v2.RandomResizedCrop(size, scale=scale or settings.crop_scale, ratio=settings.crop_ratio,
                                                antialias=True)]
        if settings.rotation_degrees > 0:
            geometric.append(v2.RandomRotation(settings.rotation_degrees))
        if settings.horizontal_flip:
            geometric.append(v2.RandomHorizontalFlip())
        if settings.vertical_flip:
            geometric.append(v2.RandomVerticalFlip())
        self.geometric = v2.Compose(geometric)
        self.blur = v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5)) if settings.blur_probability > 0 else None
        self.mean = torch.tensor(list(mean)).view(-1, 1, 1)
        self.std = torch.tensor(list(std)).view(-1, 1, 1)

    def _uniform(self, low: float, high: float) -> float:
        return float(torch.empty(()).uniform_(low, high))

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        settings = self.settings
        view = self.geometric(pixels)
        if settings.gamma != (1.0, 1.0):
            view = view.clamp(0.0, 1.0) ** self._uniform(*settings.gamma)
        if settings.contrast > 0:
            factor = self._uniform(1.0 - settings.contrast, 1.0 + settings.contrast)
            view = (view - view.mean()) * factor + view.mean()
        if settings.brightness > 0:
            view = view + self._uniform(-settings.brightness, settings.brightness)
        if self.blur is not None and float(torch.rand(())) < settings.blur_probability:
            view = self.blur(view)
        if settings.noise_std > 0:
            view = view + torch.randn_like(view) * self._uniform(0.0, settings.noise_std)
        view = view.clamp(0.0, 1.0)
        return (view - self.mean) / self.std


class RadiographViews:
    """All views of one image: ``global_views`` at ``crop_size`` then ``local_views`` small crops."""

    def __init__(self, crop_size: int, settings: AugmentSettings, *, mean: list[float], std: list[float]) -> None:
        self.global_augment = RadiographAugment(crop_size, settings, mean=mean, std=std)
        self.local_augment = RadiographAugment(settings.local_crop_size, settings, scale=settings.local_crop_scale,
                                               mean=mean, std=std) if settings.local_views else None
        self.global_views = settings.global_views
        self.local_views = settings.local_views

    def __call__(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        views = [self.global_augment(pixels) for _ in range(self.global_views)]
        if self.local_augment is not None:
            views += [self.local_augment(pixels) for _ in range(self.local_views)]
        return views
