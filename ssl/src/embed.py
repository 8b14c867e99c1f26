"""``radloop embed``: embed every catalog image not yet embedded by an encoder version.

Runs through Lightning's predict loop (one code path for CPU, one GPU or many: ``devices=4`` shards the
images over processes); a prediction writer appends shards of ``shard_size`` rows with
:func:`radloop.core.embeddings.write_shard`, so an interrupted run keeps every finished shard and a rerun
embeds only what is missing.  Unreadable images are skipped with a logged reason (retried next run).  Images
whose shard file was lost from disk (deleted, truncated, of the wrong width) count as missing: their rows are
removed with a warning and they are embedded again, unless every shard of the encoder is lost (a moved or unmounted
folder: restore it, or pass ``reembed_lost``).  Two runs of one encoder at once finish both: a writer skips the
images another run recorded meanwhile.  Ctrl-C holds back until the shard being written is recorded, and on several
processes (Lightning's ``ddp`` launch) the launcher passes it on to the others and waits for them before Lightning
kills them, so no process is stopped halfway through a shard.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from sqlalchemy import func, select
from torch.utils.data import Dataset

from radloop.core.catalog import Catalog
from radloop.core.embeddings import (embedded_image_ids, embedding_write_lock, forget_lost_shards,
                                     missing_image_ids, next_shard_index, shard_number, stored_setting,
                                     stored_settings, write_shard)
from radloop.core.registry import locate_encoder
from radloop.core.schema import Image
from radloop.ssl.encoders import EncoderBundle, check_registered_version, load_encoder, preprocess
from radloop.ssl.pixels import UnreadableImage

__all__ = ["embed_catalog", "resolve_encoder"]

logger = logging.getLogger(__name__)
#: how long the launcher of a multi-process run waits, after Ctrl-C, for the others to finish their shard
STOP_WAIT_S = 30.0
#: Lightning's loggers whose INFO lines (``GPU available: ...``, ``TPU available: ...``, the ``Tip: ... litlogger``
#: and ``litmodels`` adverts) say nothing about the embedding; their warnings still show
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


def resolve_encoder(catalog: Catalog, name: str | Path) -> EncoderBundle:
    """An encoder from a folder path, a registered encoder version, or ``current`` (the workspace's current
    encoder, e.g. the one ``radloop pretrain`` just registered).

    Raises:
        LookupError: neither an encoder folder nor a registered version (or no current encoder);
            ``EncoderOverwrittenError``: the registered version's folder now holds another version.
    """
    location = locate_encoder(catalog, name)
    bundle = load_encoder(location.folder)
    if location.registered is None:
        return bundle
    return check_registered_version(bundle, location.registered, location.folder)


class _CatalogImages(Dataset):
    def __init__(self, items: list[tuple[str, str]], bundle: EncoderBundle) -> None:
        self.items, self.config = items, bundle.config

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | None, str | None]:
        image_id, path = self.items[index]
        try:
            return image_id, preprocess(self.config, path), None
        except UnreadableImage as error:
            return image_id, None, str(error)


def _collate(samples: list[tuple[str, torch.Tensor | None, str | None]]) -> dict[str, Any]:
    kept = [(image_id, tensor) for image_id, tensor, _ in samples if tensor is not None]
    skipped = {image_id: reason for image_id, tensor, reason in samples if tensor is None}
    for image_id, reason in skipped.items():
        logger.warning("skipping unreadable image %s: %s", image_id, reason)
    return {"image_ids": [image_id for image_id, _ in kept],
            "images": torch.stack([tensor for _, tensor in kept]) if kept else None, "skipped": skipped}


class _EncoderModule(L.LightningModule):
    def __init__(self, bundle: EncoderBundle, normalize: bool) -> None:
        super().__init__()
        self.encoder = bundle.model
        self.normalize = normalize

    def predict_step(self, batch: dict[str, Any], batch_index: int) -> dict[str, Any]:
        if batch["images"] is None:
            return {"image_ids": [], "vectors": None, "skipped": batch["skipped"]}
        vectors = self.encoder(batch["images"]).float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=1)
        return {"image_ids": batch["image_ids"], "vectors": vectors.cpu().numpy(), "skipped": batch["skipped"]}


class _ShardWriter(BasePredictionWriter):
    """Buffers each process's embeddings and appends a shard every ``shard_size`` rows (under the embedding write
    lock), leaving out the images another run recorded meanwhile."""

    def __init__(self, catalog: Catalog, version: str, *, shard_size: int, fp16: bool, normalized: bool) -> None:
        super().__init__(write_interval="batch")
        self.catalog, self.version, self.shard_size = catalog, version, shard_size
        self.dtype = np.float16 if fp16 else np.float32
        self.normalized = normalized
        self.ids: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.written = 0
        self.embedded_meanwhile = 0  # by another run of the same encoder
        self.shards = 0
        self.next_index: int | None = None  # looked up at the first shard, then counted here (no query per shard)
        self.skipped: dict[str, str] = {}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self.skipped.update(prediction["skipped"])
        if prediction["vectors"] is not None:
            self.ids.extend(prediction["image_ids"])
            self.vectors.append(prediction["vectors"])
        while len(self.ids) >= self.shard_size:
            self.flush(self.shard_size)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self.flush()
        if trainer.world_size > 1:  # the summary counts every process's images, not only this one's
            import torch.distributed as dist

            parts: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(parts, (self.written, self.shards, self.skipped, self.embedded_meanwhile))
            self.written, self.shards = sum(part[0] for part in parts), sum(part[1] for part in parts)
            self.skipped = {image_id: reason for part in parts for image_id, reason in part[2].items()}
            self.embedded_meanwhile = sum(part[3] for part in parts)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            _stop_launched_processes(trainer)

    def flush(self, rows: int | None = None) -> None:
        """Write the first ``rows`` buffered rows (all when None) as one shard (Ctrl-C waits until it is recorded)."""
        if not self.ids:
            return
        with _sigint_deferred():
            self._flush(rows)

    def _flush(self, rows: int | None) -> None:
        vectors = np.concatenate(self.vectors)
        rows = len(self.ids) if rows is None else rows
        ids, block = self.ids[:rows], vectors[:rows]
        with embedding_write_lock(self.catalog):  # processes of this run and of others append one at a time
            taken = embedded_image_ids(self.catalog, self.version, ids)  # by another run since this one started
            if taken:
                keep = [position for position, image_id in enumerate(ids) if image_id not in taken]
                ids, block = [ids[position] for position in keep], block[keep]
            if ids:
                if self.next_index is None:
                    self.next_index = next_shard_index(self.catalog, self.version)
                path = write_shard(self.catalog, self.version, ids, block.astype(self.dtype),
                                   normalized=self.normalized, index=self.next_index)
                self.next_index = shard_number(path) + 1  # past names other processes took meanwhile too
                self.shards += 1
        self.written += len(ids)
        self.embedded_meanwhile += rows - len(ids)
        self.ids, self.vectors = self.ids[rows:], [vectors[rows:]] if rows < len(vectors) else []


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back until the block ends, then raise it: a shard is written and its rows recorded whole
    (a KeyboardInterrupt inside the write threw the shard away, and a second one, the launcher passing Ctrl-C on,
    could cut that clean-up short and leave a partial file)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    caught: list[tuple[int, Any]] = []
    signal.signal(signal.SIGINT, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(*caught[0])


@contextmanager
def _lightning_quiet() -> Iterator[None]:
    """Lightning's INFO lines and its internal ``LeafSpec`` deprecation warning held back for the block (a notebook's
    ``embed_catalog(progress=False)`` printed five lines of them); warnings about the run itself still show."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*\bLeafSpec\b.*")  # Lightning's own use of torch's pytree
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _stop_launched_processes(trainer: L.Trainer) -> None:
    """Pass Ctrl-C on to the processes this one launched (Lightning's ``ddp`` launch re-runs the command once per
    extra device) and wait for them to stop: Lightning kills them (SIGKILL) right after, which left a half-written
    shard file when SIGINT reached the launcher alone (``kill -INT``), or when a process was still writing."""
    launched = [process for process in getattr(trainer.strategy.launcher, "procs", None) or []
                if isinstance(process, subprocess.Popen) and process.poll() is None]
    for process in launched:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    for process in launched:
        try:
            process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            logger.warning("embedding process %d did not stop within %.0f s of Ctrl-C: it is killed", process.pid,
                           STOP_WAIT_S)


def _check_same_normalization(catalog: Catalog, version: str, normalize: bool) -> None:
    """Refuse to add raw vectors to a version stored L2-normalized, or the reverse: loaders, indexes and the rounds'
    strategies read a version's vectors as one set, and unit-length vectors beside raw ones (norms in the tens)
    would make distances between the two meaningless."""
    stored = stored_settings(catalog, version)[0]
    if stored and normalize not in stored:  # one setting stored (an earlier mix is left as it is)
        kept, flag = ("L2-normalized", "without --no-normalize") if not normalize else \
            ("raw (--no-normalize)", "with --no-normalize")
        raise ValueError(f"the embeddings stored for {version} are {kept}: embedding the other images "
                         f"{'raw' if not normalize else 'normalized'} would mix the two in one set; rerun {flag}")


def embed_catalog(catalog: Catalog, bundle: EncoderBundle, *, batch_size: int = 64, fp16: bool = False,
                  normalize: bool = True, shard_size: int = 4096, devices: int | str = 1,
                  accelerator: str = "auto", num_workers: int = 0, progress: bool = True,
                  reembed_lost: bool = False) -> dict[str, Any]:
    """Embed the catalog images that have no embedding for ``bundle.version`` yet.

    Rows that point at a lost shard file (missing, unreadable, truncated, of the wrong width) are removed first,
    with a warning, so that their images are embedded again.

    Args:
        progress: a progress bar on stderr; False prints nothing but the warnings about the run (unreadable
            images, lost shards), none of Lightning's set-up lines.
        reembed_lost: do so even when every shard of the version is lost (else that raises).

    The encoder is not registered in the workspace (``radloop embed --encoder FOLDER`` registers its folder:
    :func:`radloop.ssl.encoder_adapter.ensure_encoder_registered`).

    Returns:
        Summary: model_version, embedded, skipped (unreadable, retried next time), shards, dim, dtype,
        normalized (with nothing to embed: as the version's vectors are stored), already_embedded, seconds;
        images_per_second (the embedding loop's throughput over every process; only when images were embedded);
        lost_shards ({images, shards}) when some were lost; embedded_meanwhile (images another run of the encoder
        recorded first) when not 0.

    Raises:
        EmbeddingShardError: every shard of the version is lost and not ``reembed_lost`` (nothing is forgotten).
        OSError: a shard file could not be read (permissions, I/O error): nothing is forgotten.
        ValueError: the version's stored vectors were written with the other ``normalize`` setting.
    """
    started = time.time()
    lost = forget_lost_shards(catalog, bundle.version, allow_total_loss=reembed_lost)
    missing = missing_image_ids(catalog, bundle.version)
    with catalog.session() as session:
        total = session.scalar(select(func.count()).select_from(Image)) or 0
        paths = dict(session.execute(select(Image.id, Image.render_path).where(Image.id.in_(missing))).all()) \
            if len(missing) < 30000 else dict(session.execute(select(Image.id, Image.render_path)).all())
    items = [(image_id, str(catalog.workspace.absolute(paths[image_id]))) for image_id in missing]
    summary: dict[str, Any] = {"model_version": bundle.version, "embedded": 0, "skipped": 0, "shards": 0,
                               "dim": bundle.embed_dim, "dtype": "float16" if fp16 else "float32",
                               "normalized": normalize, "already_embedded": total - len(missing)}
    if lost:
        summary["lost_shards"] = {"images": sum(shard.images for shard in lost),
                                  "shards": [Path(shard.shard_path).name for shard in lost]}
    if items:
        _check_same_normalization(catalog, bundle.version, normalize)
        writer = _ShardWriter(catalog, bundle.version, shard_size=shard_size, fp16=fp16, normalized=normalize)
        loader = torch.utils.data.DataLoader(_CatalogImages(items, bundle), batch_size=batch_size, shuffle=False,
                                             num_workers=num_workers, collate_fn=_collate)
        from radloop.ssl.distributed import destroy_process_group_at_exit
        from radloop.ssl.trainer_progress import trainer_callbacks

        destroy_process_group_at_exit()  # several devices: Lightning leaves the DDP process group alive
        with _lightning_quiet():
            trainer = L.Trainer(accelerator=accelerator, devices=devices,
                                callbacks=[writer, *trainer_callbacks(progress)], logger=False,
                                enable_progress_bar=progress, enable_model_summary=False)
            predict_started = time.time()
            trainer.predict(_EncoderModule(bundle, normalize), dataloaders=loader, return_predictions=False)
        # decode + forward + shard writes over every process, start-up and the catalog queries excluded
        images_per_second = writer.written / max(time.time() - predict_started, 1e-9)
        summary.update(embedded=writer.written, skipped=len(writer.skipped), shards=writer.shards,
                       images_per_second=round(images_per_second, 1))
        if writer.embedded_meanwhile:
            summary["embedded_meanwhile"] = writer.embedded_meanwhile
        if writer.skipped:
            summary["skipped_examples"] = dict(list(writer.skipped.items())[:5])
    else:  # nothing to embed: what is stored, not the flags (the same where images were embedded)
        normalized, dtypes = stored_settings(catalog, bundle.version)
        summary.update(normalized=stored_setting(normalized, normalize),
                       dtype=stored_setting(dtypes, summary["dtype"]))
    summary["seconds"] = round(time.time() - started, 1)
    return summary
