"""Per-image work of an ingest, run in the worker processes: read once, hash, decode, window, render.

The file is read once; the same bytes are hashed (idempotency key) and decoded, so an image already in the
catalog costs one read and one SHA-256, never a decode (except once, without rendering, for a row catalogued
before pixel hashes existed: its pixel hash, SOP pseudonym and BurnedInAnnotation flag are backfilled).  While
decoding, the worker also computes the duplicate keys of a new image: the pixel hash
(:func:`radloop.core.deid.pixel_hash`: for DICOM the stored values, before the modality LUT and the window; for
PNG/JPEG the 8-bit grey pixels ingest keeps) and, for DICOM, the pseudonym of its SOPInstanceUID.  Whether the
image is a duplicate is decided in the main process, which sees every outcome.  Workers write only
render/thumbnail files (a new image's under pending names, :mod:`radloop.core.ingest_renders`); every catalog
write happens in the main process.

A catalogued image's render and thumbnail are looked at when its file is read again
(:func:`radloop.core.render.render_problem`: the quick check, or a full decode with ``verify_renders``); one that
is missing or damaged is made again from the bytes just read (they are the catalogued image's: same SHA-256), at
the paths the catalog has for it, so nothing in the catalog changes but, should the render's size differ, its
``render_width`` / ``render_height``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from radloop.core.deid import content_hash, image_id_for_hash, instance_pseudonym, pixel_hash, study_pseudonym
from radloop.core.dicom_io import (
    DicomImage, decode_stored_values, display_image, has_burned_in_annotation, header_values_unlogged, is_dicom_bytes,
    read_dataset,
)
from radloop.core.ingest_renders import pending_paths
from radloop.core.ingest_sources import ImageTask
from radloop.core.input_errors import (
    EmptyFileError, InputError, NotAnImageObjectError, NotDicomError, UnsupportedFileError,
)
from radloop.core.render import RenderWriteError, read_raster, render_files, render_problem

__all__ = ["JPEG_MAGIC", "PNG_MAGIC", "ImageOutcome", "RenderStorageError", "WorkerContext", "file_pixel_hash",
           "process_task", "render_relative_paths"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
#: errnos of a refused render write that every later image would meet too: the run stops at the first
STOP_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class RenderStorageError(OSError):
    """A render or thumbnail write refused by its file system (full, over quota, read-only): raised out of
    :func:`process_task` (an ``OSError`` pickles through the pool) so that the run stops at the first such image
    instead of recording the same error for every later one."""


def _stop_for_storage(error: RenderWriteError) -> None:
    """Raise :class:`RenderStorageError` when ``error``'s errno says every later render would fail alike."""
    if error.errno in STOP_ERRNOS:
        strerror = str(error).removesuffix(f": {error.filename}")
        raise RenderStorageError(error.errno, strerror, error.filename) from None


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs: where to write, the pseudonym key, and the hashes already catalogued.

    ``existing_hashes`` are the content hashes of catalogued images and of recorded duplicate files
    (``duplicate_hashes``: those files have no render of their own); ``backfill_hashes`` those of catalogued
    images without a pixel hash yet (decoded once to fill it in).  ``render_paths`` maps the content hash of a
    catalogued image whose catalog render / thumbnail paths are not :func:`render_relative_paths` of its id to
    those paths (none for images ingest catalogued).  ``verify_renders``: decode a catalogued image's render and
    thumbnail to check them, not only the quick check.
    """

    workspace_root: Path
    pseudonym_key: bytes
    existing_hashes: frozenset[str] = frozenset()
    backfill_hashes: frozenset[str] = frozenset()
    duplicate_hashes: frozenset[str] = frozenset()
    render_paths: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    verify_renders: bool = False


@dataclass
class ImageOutcome:
    """Result of one task: ``status`` added | existing | error | skipped (a DICOM object that is no image).

    ``image`` holds the catalog columns of a new image (no patient identifiers), ``study_id`` its
    pseudonymous study, ``stage``/``reason`` describe a failure.  ``pixel_hash`` / ``sop_pseudonym`` are the
    duplicate keys of a new image, or of an existing one whose row gets them backfilled;
    ``burned_in_annotation`` (DICOM BurnedInAnnotation YES: text, possibly identifying, in the pixels) is also
    set for both (a new image has it in ``image["meta"]`` too).  For an existing image whose render or
    thumbnail was missing or damaged, ``render_restored`` says what was wrong and ``render_size`` is the
    (width, height) of the render made again, or ``render_error`` why it could not be made.
    """

    index: int
    status: str
    content_hash: str | None = None
    pixel_hash: str | None = None
    sop_pseudonym: str | None = None
    burned_in_annotation: bool = False
    image_id: str | None = None
    study_id: str | None = None
    image: dict = field(default_factory=dict)
    stage: str | None = None
    reason: str | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # CPU s: read, hash, decode (+window), render
    render_restored: str | None = None
    render_size: tuple[int, int] | None = None
    render_error: str | None = None
    #: a new image's render and thumbnail as written, under pending names (workspace-relative), put in place at
    #: ``image["render_path"]`` / ``image["thumb_path"]`` only once the image is committed
    pending_renders: tuple[str, str] | None = None


def render_relative_paths(image_id: str) -> tuple[str, str]:
    """Workspace-relative render and thumbnail paths of an image (sharded by two hex characters)."""
    shard = image_id[2:4]
    return f"renders/{shard}/{image_id}.png", f"thumbs/{shard}/{image_id}.png"


_context: WorkerContext | None = None
_parent_pid: int | None = None

#: prctl(2) option: the signal a process gets when its parent ends (Linux)
PR_SET_PDEATHSIG = 1


def init_worker(context: WorkerContext, parent_pid: int | None = None) -> None:
    """Pool initializer: keep the context for :func:`process_in_worker` (one per worker process).

    A worker ignores SIGINT: Ctrl-C reaches every process of the terminal's group, and the main process alone
    stops the run (it ends the pool); workers that took it printed a KeyboardInterrupt traceback each.

    A worker ends with its parent (``parent_pid``, the ingest): killed with it on Linux (``PR_SET_PDEATHSIG``),
    elsewhere before its next task.  After a ``kill -9`` of the ingest, workers that went on printed a
    BrokenPipeError traceback each when they handed over a result, and rendered files no one would catalogue.
    """
    global _context, _parent_pid
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _context, _parent_pid = context, parent_pid
    if parent_pid is None:
        return
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl to call: the check before each task remains
            pass
    _exit_if_orphaned()  # the parent may have ended before the line above


def _exit_if_orphaned() -> None:
    """End this worker quietly when the ingest that started it is gone (no traceback, no more renders)."""
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(0)


def process_in_worker(item: tuple[int, ImageTask]) -> ImageOutcome:
    """Pool entry point: :func:`process_task` with the context given to :func:`init_worker`."""
    assert _context is not None, "init_worker was not called"
    _exit_if_orphaned()
    return process_task(item[0], item[1], _context)


def process_task(index: int, task: ImageTask, context: WorkerContext) -> ImageOutcome:
    """Ingest one image file; never raises for bad input (returns an ``error`` outcome instead)."""
    started = time.perf_counter()
    try:
        with header_values_unlogged():  # an invalid header value is not echoed to the console or log
            outcome = _process(index, task, context)
    except RenderStorageError:  # a lost render made again on a full disk (_restore_render): the run stops
        raise
    except NotAnImageObjectError as error:  # a report or presentation state beside the images: not a failure
        outcome = ImageOutcome(index=index, status="skipped", stage=error.stage, reason=str(error))
    except InputError as error:
        if isinstance(error, RenderWriteError):
            _stop_for_storage(error)
        outcome = ImageOutcome(index=index, status="error", stage=error.stage, reason=str(error))
    except OSError as error:
        outcome = ImageOutcome(index=index, status="error", stage="read", reason=f"cannot read file: {error}")
    except Exception as error:  # a library failing on odd input must not stop the batch
        outcome = ImageOutcome(index=index, status="error", stage="decode",
                               reason=f"unexpected {type(error).__name__}: {error}")
    outcome.seconds = time.perf_counter() - started
    return outcome


def _process(index: int, task: ImageTask, context: WorkerContext) -> ImageOutcome:
    clock = time.process_time()  # CPU seconds: other load on a shared machine does not inflate them
    data = Path(task.path).read_bytes()
    if not data:
        raise EmptyFileError("file is empty (0 bytes)")
    timings = {"read": time.process_time() - clock}
    clock = time.process_time()
    digest = content_hash(data)
    image_id = image_id_for_hash(digest)
    timings["hash"] = time.process_time() - clock
    if digest in context.existing_hashes:
        outcome = ImageOutcome(index=index, status="existing", content_hash=digest, image_id=image_id,
                               stage_seconds=timings)
        if digest in context.backfill_hashes:
            clock = time.process_time()
            try:
                outcome.pixel_hash, outcome.sop_pseudonym, dataset = _duplicate_keys(data, context.pseudonym_key)
                # a row catalogued before BurnedInAnnotation was checked gets the flag too (it keeps it out of rounds)
                outcome.burned_in_annotation = dataset is not None and has_burned_in_annotation(dataset)
            except Exception:  # noqa: BLE001 - the image is catalogued; its row just stays without the keys
                pass
            timings["decode"] = time.process_time() - clock
        if digest not in context.duplicate_hashes:  # a recorded duplicate's render is its original's
            _restore_render(outcome, data, context, timings)
        return outcome
    clock = time.process_time()
    columns: dict = {"dataset": task.dataset, "external_id": task.external_id, "source_path": task.path,
                     "body_region": task.body_region}
    sop = None
    if _is_raster(data):
        raster = read_raster(data)
        pixels = raster.pixels
        pixels_key = _raster_pixel_hash(raster.pixels)
        columns.update(source_format=raster.format, meta={"source_mode": raster.mode})
        study_id = study_pseudonym(context.pseudonym_key, task.study_namespace, task.study_key)
    else:
        dicom, stored, dataset = _read_dicom(data)
        pixels = dicom.pixels
        metadata = dicom.metadata
        pixels_key = _dicom_pixel_hash(stored, dataset)
        sop = _sop_pseudonym(dataset, context.pseudonym_key)
        uid = metadata.study_instance_uid
        # The StudyInstanceUID only keys the pseudonym; without one, the patient id + accession / study date
        # (never stored, only hashed), else the image is its own study.
        if uid:
            study_id = study_pseudonym(context.pseudonym_key, "study", uid)
        elif metadata.study_fallback_key:
            study_id = study_pseudonym(context.pseudonym_key, "patient-day", metadata.study_fallback_key)
        else:
            study_id = study_pseudonym(context.pseudonym_key, "content", digest)
        spacing = metadata.pixel_spacing
        columns.update(
            source_format="dicom", modality=metadata.modality, view=metadata.view_position,
            laterality=metadata.laterality, bits_stored=metadata.bits_stored, photometric=metadata.photometric,
            pixel_spacing_row=spacing[0] if spacing else None, pixel_spacing_col=spacing[1] if spacing else None,
            pixel_spacing_source=metadata.pixel_spacing_source,
            body_region=task.body_region or metadata.body_region,
            meta={"dicom": {key: value for key, value in metadata.to_record().items()
                            if key in ("body_part", "transfer_syntax", "window_source", "number_of_frames",
                                       "bits_allocated")
                            or (key in ("orientation", "region_from", "laterality_from") and value)},
                  # text in the pixels (possibly identifying): kept out of active-learning pools, warned about
                  **({"burned_in_annotation": True} if metadata.burned_in_annotation else {})},
        )
    timings["decode"] = time.process_time() - clock
    clock = time.process_time()
    render_path, thumb_path = render_relative_paths(image_id)
    # pending names: renamed into place once the image is committed (radloop.core.ingest_renders)
    pending = pending_paths((render_path, thumb_path), index)
    sizes = render_files(pixels, context.workspace_root / pending[0], context.workspace_root / pending[1])
    columns.update(id=image_id, content_hash=digest, study_id=study_id, render_path=render_path,
                   thumb_path=thumb_path, width=sizes.width, height=sizes.height,
                   render_width=sizes.render_width, render_height=sizes.render_height,
                   pixel_hash=pixels_key, sop_pseudonym=sop)
    timings["render"] = time.process_time() - clock
    return ImageOutcome(index=index, status="added", content_hash=digest, pixel_hash=pixels_key,
                        sop_pseudonym=sop, burned_in_annotation=bool(columns["meta"].get("burned_in_annotation")),
                        image_id=image_id, study_id=study_id, image=columns, pending_renders=pending,
                        stage_seconds=timings)


def _restore_render(outcome: ImageOutcome, data: bytes, context: WorkerContext, timings: dict[str, float]) -> None:
    """Make a catalogued image's render and thumbnail again from its file's ``data`` when either is missing or
    damaged (a clean-up, a workspace copied without ``renders/``, a crash before the data reached the disk)."""
    clock = time.process_time()
    paths = context.render_paths.get(outcome.content_hash) or render_relative_paths(outcome.image_id)
    problems = [f"{relative} {problem}" for relative in paths
                if (problem := render_problem(context.workspace_root / relative, decode=context.verify_renders))]
    timings["render_check"] = time.process_time() - clock
    if not problems:
        return
    clock = time.process_time()
    try:
        pixels = read_raster(data).pixels if _is_raster(data) else _read_dicom(data)[0].pixels
        timings["decode"] = timings.get("decode", 0.0) + time.process_time() - clock
        clock = time.process_time()
        sizes = render_files(pixels, context.workspace_root / paths[0], context.workspace_root / paths[1])
        timings["render"] = time.process_time() - clock
    except Exception as error:  # noqa: BLE001 - the image stays catalogued; its lost render is reported
        if isinstance(error, RenderWriteError):
            _stop_for_storage(error)
        outcome.render_error = f"{'; '.join(problems)}, and it could not be made again: {error}"
        return
    outcome.render_restored = "; ".join(problems)
    outcome.render_size = (sizes.render_width, sizes.render_height)


def _is_raster(data: bytes) -> bool:
    return data.startswith(PNG_MAGIC) or data.startswith(JPEG_MAGIC)


def _read_dicom(data: bytes) -> tuple[DicomImage, np.ndarray, pydicom.Dataset]:
    """``read_dicom(data, as_uint8=True)``, step by step, also returning the stored values (H, W) or
    (H, W, 3) and the data set: the duplicate keys are taken from them, without a second decode."""
    try:
        dataset = read_dataset(data)
    except NotDicomError as error:
        if not is_dicom_bytes(data):
            raise UnsupportedFileError("not a DICOM, PNG or JPEG file (no DICM marker, no DICOM "
                                       "attributes, no PNG/JPEG signature)") from error
        raise
    stored = decode_stored_values(dataset)
    return display_image(dataset, stored, as_uint8=True), stored, dataset


def _duplicate_keys(data: bytes, key: bytes) -> tuple[str, str | None, pydicom.Dataset | None]:
    """(pixel hash, SOP pseudonym or None, the DICOM data set or None) of a file, decoding its pixels but not
    windowing or rendering them."""
    if _is_raster(data):
        return _raster_pixel_hash(read_raster(data).pixels), None, None
    dataset = read_dataset(data)
    return _dicom_pixel_hash(decode_stored_values(dataset), dataset), _sop_pseudonym(dataset, key), dataset


def file_pixel_hash(data: bytes) -> str:
    """The pixel hash ingest stores in ``images.pixel_hash`` for an image file's bytes (DICOM: the stored values,
    before the modality LUT and the window; PNG/JPEG: the 8-bit grey pixels ingest keeps): a re-saved or
    re-encoded copy of a catalogued image has its hash.  Decodes the pixels, never windows or renders them.

    Raises:
        radloop.core.input_errors.InputError, ValueError, OSError: not a PNG, JPEG or DICOM ingest can decode.
    """
    with header_values_unlogged():
        return _duplicate_keys(data, b"")[0]  # the SOP pseudonym (keyed with nothing here) is not wanted


def _raster_pixel_hash(grey: np.ndarray) -> str:
    # The 8-bit grey pixels ingest keeps (those of the file for a grey 8-bit PNG/JPEG): a colour or 16-bit file
    # that converts to the same grey pixels would make the same catalog image, so it is the same image here.
    return pixel_hash(grey, photometric="MONOCHROME2")


def _dicom_pixel_hash(stored: np.ndarray, dataset: pydicom.Dataset) -> str:
    # Colour arrives decoded to RGB (YBR and palette images included), so its own photometric is not hashed.
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip() or "MONOCHROME2"
    return pixel_hash(stored, photometric="RGB" if stored.ndim == 3 else photometric,
                      frames=int(dataset.get("NumberOfFrames", 1) or 1))


def _sop_pseudonym(dataset: pydicom.Dataset, key: bytes) -> str | None:
    file_meta = getattr(dataset, "file_meta", None)
    uid = str(dataset.get("SOPInstanceUID", "") or
              (file_meta.get("MediaStorageSOPInstanceUID", "") if file_meta is not None else "") or "").strip()
    return instance_pseudonym(key, uid) if uid else None
