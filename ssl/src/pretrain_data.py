"""Catalog-backed pretraining data: images -> (optionally cached) pixels -> seeded augmented views.

- :func:`catalog_images` lists the workspace's images (render PNGs, or the original when it is a 16-bit
  file the renders would truncate) filtered by dataset / split.
- :class:`PixelStore` decodes each image once into RAM (uint8, ``cache_size`` square) or reads it from disk
  on every access (archives too big for RAM); an unreadable image is skipped with a logged reason.
- :class:`StepBatchSampler` makes batch ``b`` of the run a pure function of ``(seed, b)``: resuming from a
  checkpoint at step ``s`` continues with exactly the batches an uninterrupted run would have seen, and
  each DDP rank takes its own slice of every global batch.
- :class:`ViewsDataset` seeds the augmentation of every sample from its position in the run, so views do
  not depend on the number of workers or on resuming.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from torch.utils.data import Dataset, Sampler

from radloop.core.catalog import Catalog
from radloop.core.schema import Image, Study
from radloop.ssl.augment import RadiographViews
from radloop.ssl.pixels import UnreadableImage, read_image, resize_square
from radloop.ssl.settings import TrainerSettings

__all__ = ["CatalogImage", "PixelStore", "StepBatchSampler", "ViewsDataset", "catalog_images", "collate_views"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogImage:
    """One training image: its catalog id and the absolute path of the file to read."""

    image_id: str
    path: str


def catalog_images(catalog: Catalog, *, datasets: list[str] | None = None, splits: list[str] | None = None,
                   limit: int | None = None) -> list[CatalogImage]:
    """Catalog images (sorted by id) to pretrain on; 16-bit originals are preferred over 8-bit renders (the render
    stands in for an original that is no longer there)."""
    with catalog.session() as session:
        query = select(Image.id, Image.render_path, Image.source_path, Image.bits_stored, Image.source_format) \
            .join(Study, Study.id == Image.study_id)
        if datasets:
            query = query.where(Image.dataset.in_(datasets))
        if splits:
            query = query.where(Study.split.in_(splits))
        rows = session.execute(query.order_by(Image.id)).all()
    items = []
    for image_id, render_path, source_path, bits_stored, source_format in rows:
        high_bit_png = (bits_stored or 8) > 8 and (source_format or "").lower() in ("png", "dicom")
        # an original no longer reachable (archive unmounted or moved since ingest): its 8-bit render, not a skip
        original = high_bit_png and source_path and Path(source_path).is_file()
        path = source_path if original else str(catalog.workspace.absolute(render_path))
        items.append(CatalogImage(image_id=image_id, path=path))
    return items[:limit] if limit else items


class PixelStore:
    """Pixels of a fixed list of images, as float (1, H, W) tensors in [0, 1].

    Args:
        items: the images.
        cache_size: with ``cache=True``, every image is decoded once and squash-resized to this square
            (uint8 in RAM); without a cache, images are read from disk on each access at full size.
        cache: decode into RAM up front.
        threads: decoder threads while filling the cache.
        progress: show a progress bar on stderr while filling the cache.
    """

    def __init__(self, items: list[CatalogImage], *, cache_size: int, cache: bool = True, threads: int = 2,
                 progress: bool = False) -> None:
        self.cache_size = cache_size
        self.skipped: dict[str, str] = {}
        self._cache: torch.Tensor | None = None
        if not cache:
            self.items = list(items)
            return
        def load(item: CatalogImage) -> np.ndarray | str:
            try:
                pixels = torch.from_numpy(read_image(item.path)).unsqueeze(0)
            except UnreadableImage as error:
                return str(error)
            resized = resize_square(pixels, cache_size)
            return (resized.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            results = pool.map(load, items)
            if progress:  # an archive takes minutes to decode: show it (stderr; stdout carries --json)
                from tqdm import tqdm

                results = tqdm(results, total=len(items), desc=f"cache images ({cache_size}px)", unit="img",
                               leave=False)
            decoded = list(results)
        kept, arrays = [], []
        for item, result in zip(items, decoded):
            if isinstance(result, str):
                self._skip(item, result)
            else:
                kept.append(item)
                arrays.append(result)
        self.items = kept
        self._cache = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 1, cache_size, cache_size,
                                                                                      dtype=torch.uint8)

    def _skip(self, item: CatalogImage, reason: str) -> None:
        if item.image_id not in self.skipped:
            self.skipped[item.image_id] = reason
            logger.warning("skipping unreadable image %s: %s", item.image_id, reason)

    def __len__(self) -> int:
        return len(self.items)

    def pixels(self, index: int) -> torch.Tensor | None:
        """Float (1, H, W) in [0, 1], or None (logged) when the file cannot be read."""
        if self._cache is not None:
            return self._cache[index].float() / 255.0
        item = self.items[index]
        try:
            return torch.from_numpy(read_image(item.path)).unsqueeze(0)
        except UnreadableImage as error:
            self._skip(item, str(error))
            return None

    def statistics(self, max_images: int = 512) -> tuple[float, float]:
        """Pixel mean and std over (up to) ``max_images`` evenly spaced images."""
        if not len(self):
            return 0.5, 0.25
        step = max(1, len(self) // max_images)
        values = [p for p in (self.pixels(i) for i in range(0, len(self), step)) if p is not None]
        flat = torch.cat([resize_square(v, 64).flatten() for v in values])
        return float(flat.mean()), float(flat.std().clamp_min(1e-3))


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, position)`` for a whole run; batch ``b`` depends only on ``(seed, b)``.

    Epoch ``e`` is the permutation ``randperm(n, seed + e)``; positions count samples since the start of
    the run (the augmentation seed).  A global batch holds ``batch_size * world_size`` samples, of which
    rank ``r`` takes every ``world_size``-th.

    Args:
        num_items: dataset length.
        batch_size: samples per rank per batch.
        total_batches: batches (per rank) in the whole run.
        start_batch: batches already consumed (resume).
        drop_last: batches never wrap an epoch boundary; a smaller epoch tail is dropped.
    """

    def __init__(self, num_items: int, batch_size: int, total_batches: int, *, seed: int = 0, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ValueError(f"{num_items} images are fewer than one global batch of {global_batch}")
        self.num_items, self.batch_size, self.total_batches = num_items, batch_size, total_batches
        self.seed, self.start_batch, self.rank, self.world_size = seed, start_batch, rank, world_size
        self.batches_per_epoch = num_items // global_batch

    def __len__(self) -> int:
        # The whole run, also when resuming: Lightning restores how many batches of its (single) epoch
        # were already done and counts on from there.
        return self.total_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        global_batch = self.batch_size * self.world_size
        epoch, order = -1, None
        for batch in range(self.start_batch, self.total_batches):
            batch_epoch, within = divmod(batch, self.batches_per_epoch)
            if batch_epoch != epoch:
                epoch = batch_epoch
                order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + epoch))
            start = within * global_batch
            indices = order[start:start + global_batch].tolist()
            positions = range(batch * global_batch, (batch + 1) * global_batch)
            pairs = list(zip(indices, positions))
            yield pairs[self.rank::self.world_size]


class ViewsDataset(Dataset):
    """``dataset[(index, position)]`` -> list of augmented views.

    An unreadable image (streamed stores only; a cached store has dropped them already) is replaced by the
    next readable one, so that every batch keeps its size: under DDP the ranks' batches meet in collectives
    (SimCLR's all-gather, the gradient all-reduce) that fail or hang on unequal shapes.  None only when no
    image at all can be read.
    """

    def __init__(self, store: PixelStore, views: RadiographViews, *, seed: int = 0) -> None:
        self.store, self.views, self.seed = store, views, seed

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, key: tuple[int, int]) -> list[torch.Tensor] | None:
        index, position = key
        pixels = None
        for offset in range(len(self.store)):
            pixels = self.store.pixels((index + offset) % len(self.store))
            if pixels is not None:
                break
        if pixels is None:
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + position) % (2 ** 63))
            return self.views(pixels)


def collate_views(samples: list[list[torch.Tensor] | None]) -> list[torch.Tensor]:
    """Stack view v of every sample: V tensors (N, 1, h, w); None samples (nothing readable) are dropped."""
    kept = [sample for sample in samples if sample is not None]
    if not kept:
        return []
    return [torch.stack([sample[v] for sample in kept]) for v in range(len(kept[0]))]


def total_batches(config_trainer: TrainerSettings, num_items: int, batch_size: int, world_size: int) -> int:
    """Batches per rank in the run: ``max_steps * accumulation`` or ``max_epochs`` worth of data."""
    if config_trainer.max_steps:
        return config_trainer.max_steps * config_trainer.accumulate_grad_batches
    per_epoch = max(1, num_items // (batch_size * world_size))
    return math.ceil(config_trainer.max_epochs * per_epoch / config_trainer.accumulate_grad_batches) \
        * config_trainer.accumulate_grad_batches
