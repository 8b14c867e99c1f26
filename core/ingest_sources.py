"""Find what to ingest: DICOM/PNG/JPEG files and folders, COCO and YOLO detection sets, report files.

Discovery only reads folder listings and annotation files; pixels are decoded later in the worker pool.
Every image becomes an :class:`ImageTask` (picklable, :mod:`radloop.core.ingest_tasks`) that carries the boxes
its dataset gives it (COCO / YOLO: :mod:`radloop.core.ingest_detection_sets`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

from radloop.core.ingest_detection_sets import RASTER_SUFFIXES, discover_coco, discover_yolo
from radloop.core.ingest_tasks import (
    OPENI_IMAGE, ROBOFLOW_COPY, UNBOXED_CHOICES, Discovery, ImageTask, RawBox, box_label_for_class,
    has_fracture_box, plain_task, region_for_class,
)

__all__ = [
    "IGNORED_SUFFIXES", "MEDIA_DIRECTORY", "OPENI_IMAGE", "RASTER_SUFFIXES", "REPORT_SUFFIXES", "ROBOFLOW_COPY",
    "UNBOXED_CHOICES", "Discovery", "ImageTask", "RawBox", "box_label_for_class", "discover", "folder_files",
    "has_fracture_box", "region_for_class",
]

#: A file with one of these endings, passed as an input path, is a report file (Open-i tarball / XML, CSV).
REPORT_SUFFIXES = (".tgz", ".tar.gz", ".xml", ".csv")
#: Suffixes skipped (and counted) when walking a folder; passed explicitly they are still tried.
IGNORED_SUFFIXES = {".txt", ".md", ".json", ".yaml", ".yml", ".gz", ".zip", ".py", ".html", ".pdf", ".csv",
                    ".tgz", ".log", ".ini", ".cfg", ".sqlite", ".key", ".tmp"}
#: A DICOM media's directory file (PS3.10 8.6): an index of the images beside it, not an image; skipped (and
#: counted) in a folder like the suffixes above.
MEDIA_DIRECTORY = "DICOMDIR"


def discover(paths: list[Path], *, images_dir: Path | None = None, dataset: str | None = None,
             reports: list[Path] | None = None, limit: int | None = None, unboxed: str = "negative") -> Discovery:
    """Classify every input path and list image tasks (sorted by path) and report files.

    Args:
        paths: files or folders (DICOM/PNG/JPEG files or folders, COCO json, YOLO folder, report files).
        images_dir: image folder of a COCO json (default: the json's folder).
        dataset: dataset name for every image (default: the input path's name).
        reports: extra report files (Open-i XML/tgz/folder, CSV).
        limit: keep only the first ``limit`` images (sorted by path) of each input path.
        unboxed: what a detection-set image without a fracture box means (:data:`UNBOXED_CHOICES`).
    """
    if unboxed not in UNBOXED_CHOICES:
        raise ValueError(f"unboxed must be one of {', '.join(UNBOXED_CHOICES)}, not {unboxed!r}")
    found = Discovery()
    for report in reports or []:
        _add_report_path(Path(report), found)
    for path in paths:
        path = Path(path)
        name = dataset or _default_dataset(path)
        if not (path.is_file() and path.name.lower().endswith(REPORT_SUFFIXES)):
            found.datasets.add(name)  # not a report file
        if not path.exists():
            found.errors.append((str(path), "read", "path does not exist"))
            continue
        before = len(found.image_tasks)
        if path.is_file():
            _discover_file(path, name, images_dir, found)
        elif (path / "data.yaml").is_file() or (path / "data.yml").is_file():
            discover_yolo(path, dataset, found)
        else:
            _discover_folder(path, name, found)
        if limit is not None:
            added = sorted(found.image_tasks[before:], key=lambda task: task.path)
            found.image_tasks[before:] = added[:limit]
    unique: dict[str, ImageTask] = {}
    for task in found.image_tasks:  # a file named twice (folder + explicit path) is ingested once
        unique.setdefault(str(Path(task.path).resolve()), task)
    found.image_tasks = sorted(unique.values(), key=lambda task: (task.dataset, task.path))
    found.datasets |= {task.dataset for task in found.image_tasks}
    if unboxed == "unknown":
        for index, task in enumerate(found.image_tasks):
            if task.box_source and not has_fracture_box(task):
                found.image_tasks[index] = replace(task, fracture_unknown=True)
    return found


def _default_dataset(path: Path) -> str:
    name = path.name
    for suffix in (".coco.json", ".json", ".tar.gz", ".tgz", ".xml", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or path.parent.name
    return path.stem if path.is_file() else name


def _add_report_path(path: Path, found: Discovery) -> None:
    # a folder is one report source (read_reports reads its XML and CSV files, recursively): one dataset
    # named after the folder, as its tarball is named after the tarball
    if path.exists():
        found.report_files.append(path)
    else:
        found.errors.append((str(path), "read", "report path does not exist"))


def _discover_file(path: Path, dataset: str, images_dir: Path | None, found: Discovery) -> None:
    lowered = path.name.lower()
    if lowered.endswith(".json"):
        discover_coco(path, images_dir or path.parent, dataset, found)
    elif lowered.endswith(REPORT_SUFFIXES):
        found.report_files.append(path)
    elif lowered in ("data.yaml", "data.yml"):
        discover_yolo(path.parent, dataset, found)
    else:
        found.image_tasks.append(plain_task(path, path.parent, dataset))
        found.sources["files"] += 1


def _discover_folder(root: Path, dataset: str, found: Discovery) -> None:
    for path in folder_files(root, found):
        if path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix == ".xml":
            found.report_files.append(path)
            found.report_datasets[str(path)] = dataset
        elif suffix in IGNORED_SUFFIXES or path.name.upper() == MEDIA_DIRECTORY:
            found.ignored_files.append(str(path))
        else:  # images, extension-less files (often DICOM) and anything unknown: tried, errors recorded
            found.image_tasks.append(plain_task(path, root, dataset))
    found.sources["folders"] += 1


def folder_files(root: Path, found: Discovery) -> list[Path]:
    """The files under ``root`` (sorted), through symbolic links to folders too (an archive's dated folders are
    often links to other volumes), each real folder once (a link loop ends there).  A folder that cannot be
    listed and a link whose target is gone are recorded as ``read`` errors (``Path.rglob`` skipped all three
    without a word)."""
    files: list[Path] = []
    listed: set[tuple[int, int]] = set()

    def unlistable(error: OSError) -> None:
        found.errors.append((str(error.filename or root), "read",
                             f"cannot list folder ({error.strerror or error}): its files are not ingested"))

    for folder, folders, names in os.walk(root, onerror=unlistable, followlinks=True):
        try:
            status = os.stat(folder)
        except OSError as error:
            unlistable(error)
            folders[:] = []
            continue
        if (status.st_dev, status.st_ino) in listed:  # a link back up (loop) or a second link to one folder
            folders[:] = []
            continue
        listed.add((status.st_dev, status.st_ino))
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                files.append(path)
            elif path.is_symlink() and not path.exists():
                found.errors.append((str(path), "read", _dangling_link_reason(path)))
    return sorted(files)


def _dangling_link_reason(path: Path) -> str:
    """Why a symbolic link leads to no file: its target is gone, or the links lead round in a loop (``a -> b``,
    ``b -> a``; it was called broken, its target named as missing though it is there)."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"symbolic link loop (it leads through {os.readlink(path)} back to a link, never to a file)"
    return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
