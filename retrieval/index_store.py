"""Persistence of :class:`~radloop.retrieval.index.IndexManager`: generations of index files switched by
``manifest.json`` (see the index module's docstring for the guarantees), loading memory-mapped."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radloop.retrieval.index_config import IndexConfig

try:
    import fcntl
except ImportError:  # Windows: saves are not serialised across processes
    fcntl = None

if TYPE_CHECKING:
    from radloop.retrieval.index import IndexManager

MANIFEST = "manifest.json"
__all__ = ["DISTANCES", "IndexPersistence", "MANIFEST", "faiss_reason", "metric_change_note", "saved_config",
           "saved_metric"]
#: What a search hit's ``distance`` is, by the index's metric (``IndexConfig.metric``).
DISTANCES = {"cosine": "1 - cosine similarity", "l2": "Euclidean (L2) distance"}


def faiss_reason(error: BaseException) -> str:
    """The reason in a FAISS ``RuntimeError`` without its C++ signature and source location, and without the
    failed assertion's expression where a message follows it
    (``Error in ... at /project/faiss/...cpp:276: Error: 'ret == (size)' failed: read error ...``: ``read error ...``)."""
    text = " ".join(str(error).split())
    found = re.search(r" at \S+\.(?:cpp|h):\d+: (?:Error: )?(.*)$", text)
    reason = found.group(1) if found else text
    return re.sub(r"^'.*?' failed: (?=\S)", "", reason)


def _unreadable(folder: Path, detail: str, model_version: str | None) -> ValueError:
    """The error for an index folder whose files cannot be read (truncated, overwritten, deleted)."""
    rebuild = "radloop index build" + (f" --encoder {model_version}" if model_version else "")
    return ValueError(f"the index at {folder} cannot be read ({detail}): rebuild it with `{rebuild}`")


def _generation_files(folder: Path, manifest: dict | None = None) -> dict[str, str]:
    """The files of the saved index generation the manifest names (older layouts: fixed names)."""
    if manifest is None:
        path = folder / MANIFEST
        try:
            manifest = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):  # a garbled manifest names nothing: a rebuild replaces it (and the files
            manifest = {}  # it named go with the leftovers of interrupted saves)
        if not isinstance(manifest, dict):
            manifest = {}
    if manifest.get("files"):
        return dict(manifest["files"])
    legacy = {"index": "index.faiss", "ids": "ids.json"}
    if (folder / "vectors.npy").is_file():
        legacy["vectors"] = "vectors.npy"
    return legacy if manifest else {}


#: the lock file one save of an index folder holds from reading the previous generation to deleting it
SAVE_LOCK = ".save.lock"


@contextmanager
def _save_lock(folder: Path) -> Iterator[None]:
    """Serialise saves into ``folder`` across processes (``flock``; the kernel drops it with the process): a save
    deletes every generation but its own once it switched, so two at once deleted each other's files and left a
    manifest naming none (a round started while ``radloop index build`` ran, two app sessions extending one index)."""
    if fcntl is None:
        yield
        return
    with open(folder / SAVE_LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits for the other save; released when the file closes
        yield


def _saved_manifest(folder: Path) -> dict:
    """The manifest saved in ``folder``, ``{}`` when there is none or it cannot be read."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def saved_metric(folder: str | os.PathLike) -> tuple[str, dict | None]:
    """(the distance metric of the index saved in ``folder``, its ``metric_change`` or None); ``cosine`` (the
    default an index is built with on first use) when there is no readable manifest."""
    manifest = _saved_manifest(Path(folder))
    return str(manifest.get("metric") or "cosine"), manifest.get("metric_change") or None


def saved_config(folder: str | os.PathLike) -> IndexConfig | None:
    """The config the index saved in ``folder`` was built with (metric, factory, ...), None when there is no
    readable manifest or its config no longer validates."""
    config = _saved_manifest(Path(folder)).get("config")
    if not isinstance(config, dict):
        return None
    try:
        return IndexConfig(**config)
    except (TypeError, ValueError):
        return None


def metric_change_note(model_version: str, change: dict) -> str:
    """What to tell a searcher whose index was rebuilt with another metric (``change``: a ``metric_change``)."""
    before, now = change.get("from"), change.get("to")
    when = str(change.get("at") or "")[:10]
    return (f"the case-search index of {model_version} was rebuilt with {now} distance"
            + (f" on {when}" if when else "") + f" (it was built with {before} before; `radloop round start` "
            f"rebuilds it with the default, cosine): distances are {DISTANCES.get(str(now), now)} now, not "
            f"comparable with earlier searches; `radloop index build --encoder {model_version} --set "
            f"metric={before}` builds it with {before} again")


class IndexPersistence:
    """``save`` / ``load`` of an index manager (mixed into :class:`~radloop.retrieval.index.IndexManager`)."""

    #: set when the index in its folder replaced one built with another distance metric (``radloop round
    #: start`` rebuilds with the default, cosine): ``{"from": "l2", "to": "cosine", "at": ISO time}``; kept
    #: by later saves with the same metric so that case search keeps saying its distances changed
    metric_change: dict | None = None

    def _check_consistent(self, where: str) -> None:
        """The FAISS index holds one vector per live id plus one per tombstone (index types that cannot delete).

        Raises:
            ValueError: it does not (the message says to rebuild).
        """
        expected = len(self._labels) + len(self._removed)
        vectors_match = self._vectors is None or len(self._vectors) == len(self._ids)
        if self.index.ntotal != expected or not vectors_match:
            raise ValueError(f"index at {where} is inconsistent ({self.index.ntotal} vectors, {len(self._labels)} "
                             f"ids, {len(self._removed)} removed): rebuild it with `radloop index build`")

    def save(self, folder: str | os.PathLike, *, note_metric_change: bool = True) -> Path:
        """Write the index, id map, manifest (and vectors for re-ranking) to ``folder`` as a new generation.

        The new files are read back and checked as ``load`` checks them before the manifest switches to them;
        the previous generation is deleted only after the switch.  When the index there was built with another
        metric, the manifest records the change (``metric_change``, see :attr:`metric_change`); a save with the
        same metric keeps a recorded change.  ``note_metric_change=False`` (``radloop index build``: the metric
        asked for) records none and drops a recorded one.

        Raises:
            ValueError: nothing to save, or the new generation does not load back consistently (the previous
                one is left in place then).

        Saves into one folder wait for one another (a lock file, ``.save.lock``, across processes).
        """
        if self.index is None:
            raise ValueError("nothing to save: the index is empty")
        self._check_consistent("(unsaved)")
        self._writable()  # a memory-mapped IVF index refers to its file: write a self-contained copy
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with _save_lock(folder):
            return self._save_locked(folder, note_metric_change=note_metric_change)

    def _save_locked(self, folder: Path, *, note_metric_change: bool) -> Path:
        """:meth:`save` while holding the folder's save lock."""
        import faiss

        previous = _generation_files(folder)  # deleted once the new generation is in place
        before = _saved_manifest(folder)
        if not note_metric_change:
            self.metric_change = None
        elif before.get("metric") and before["metric"] != self.config.metric:
            self.metric_change = {"from": before["metric"], "to": self.config.metric,
                                  "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        elif self.metric_change is None and before.get("metric") == self.config.metric:
            self.metric_change = before.get("metric_change")  # a rebuild with the same metric: still changed
        generation = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + f"-{os.getpid()}"
        files = {"index": f"index-{generation}.faiss", "ids": f"ids-{generation}.json"}
        faiss.write_index(self.index, str(folder / files["index"]))
        (folder / files["ids"]).write_text(json.dumps({"ids": self._ids, "removed": sorted(self._removed)}))
        if self._vectors is not None:
            files["vectors"] = f"vectors-{generation}.npy"
            with open(folder / files["vectors"], "wb") as handle:
                np.save(handle, np.asarray(self._vectors))
        manifest = {
            "model_version": self.model_version, "dim": self.dim, "metric": self.config.metric,
            "factory": self.factory, "count": len(self), "faiss_version": faiss.__version__,
            "saved_at": datetime.now(timezone.utc).isoformat(), "config": self.config.model_dump(),
            "calibration": self.calibration, "trained_count": self.trained_count, "catalog": self.catalog_mark,
            "files": files, **({"metric_change": self.metric_change} if self.metric_change else {}),
        }
        try:  # verify before the switch: a generation that would not load must not replace a good one
            written = self._open(folder, manifest, mmap=True)
            if len(written) != len(self) or written.dim != self.dim:
                raise ValueError(f"index at {folder}: the new generation holds {len(written)} ids, not {len(self)}")
        except BaseException:
            for name in files.values():
                (folder / name).unlink(missing_ok=True)
            raise
        del written
        (folder / f".{MANIFEST}.{os.getpid()}.tmp").write_text(json.dumps(manifest, indent=2))
        os.replace(folder / f".{MANIFEST}.{os.getpid()}.tmp", folder / MANIFEST)  # the switch to the new generation
        # the previous generation, and any left by a save that was interrupted before its switch
        leftovers = set(previous.values()) | {path.name for pattern in ("index-*.faiss", "ids-*.json", "vectors-*.npy")
                                             for path in folder.glob(pattern)}
        for name in leftovers - set(files.values()):
            (folder / name).unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, model_version: str | None = None, mmap: bool = True,
             ) -> "IndexManager":
        """Load an index folder; memory-mapped where FAISS allows (``IO_FLAG_MMAP``).

        Raises:
            FileNotFoundError: no index there.
            ValueError: the index was built for another model version than ``model_version``, or its files
                disagree (vectors, ids and tombstones do not add up).
        """
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(f"no index at {folder} (missing {MANIFEST}): build one with `radloop index build`")
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            if not isinstance(manifest, dict) or not isinstance(manifest.get("model_version"), str):
                raise ValueError("no model_version")
        except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise _unreadable(folder, f"{MANIFEST}: {error}", model_version) from None
        if model_version is not None and manifest["model_version"] != model_version:
            raise ValueError(f"index at {folder} was built for model version {manifest['model_version']!r}, "
                             f"not {model_version!r}")
        try:
            return cls._open(folder, manifest, mmap=mmap)
        except ValueError:
            # a save switched to a new generation and deleted this one's files between our reads: open the new one
            again = _saved_manifest(folder)
            if not again or again == manifest or again.get("model_version") != manifest["model_version"]:
                raise
            return cls._open(folder, again, mmap=mmap)

    @classmethod
    def _open(cls, folder: Path, manifest: dict, *, mmap: bool) -> "IndexManager":
        """The index generation ``manifest`` names in ``folder``, checked for consistency.

        Raises:
            ValueError: a file is missing, truncated or not what the manifest says (the message names the folder
                and says to rebuild), or the files disagree.
        """
        try:
            manager = cls._read_generation(folder, manifest, mmap=mmap)
        except RuntimeError as error:  # FAISS: truncated or overwritten index file, or one that is gone
            raise _unreadable(folder, faiss_reason(error), manifest.get("model_version")) from None
        except (OSError, KeyError, TypeError, ValueError) as error:  # id map / vectors / manifest entries
            detail = f"{type(error).__name__}: {error}" if isinstance(error, (KeyError, TypeError)) else str(error)
            raise _unreadable(folder, detail, manifest.get("model_version")) from None
        manager._check_consistent(str(folder))
        return manager

    @classmethod
    def _read_generation(cls, folder: Path, manifest: dict, *, mmap: bool) -> "IndexManager":
        import faiss

        manager = cls(manifest["dim"], manifest["model_version"], IndexConfig(**manifest["config"]))
        manager.factory = manifest["factory"]
        manager.calibration = manifest.get("calibration")
        manager.trained_count = manifest.get("trained_count")
        manager.catalog_mark = manifest.get("catalog")
        manager.metric_change = manifest.get("metric_change")
        files = _generation_files(folder, manifest)
        path = str(folder / files["index"])
        manager.index, manager.memory_mapped, manager._source = None, False, folder / files["index"]
        if mmap:
            try:
                manager.index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
                manager.memory_mapped = True
            except RuntimeError:
                manager.index = None
        if manager.index is None:
            manager.index = faiss.read_index(path)
        manager._apply_search_parameters()
        try:
            stored = json.loads((folder / files["ids"]).read_text())
        except ValueError as error:  # JSON / text decoding: name the file
            raise ValueError(f"{files['ids']}: {error}") from None
        manager._ids = stored["ids"]
        manager._removed = set(stored.get("removed", []))
        manager._labels = {value: label for label, value in enumerate(manager._ids) if value is not None}
        if "vectors" in files and (folder / files["vectors"]).is_file():
            manager._vectors = np.load(folder / files["vectors"], mmap_mode="r" if mmap else None)
        return manager
