"""Walkthrough 23e (storage): a disk that fills while radloop writes an embedding shard, its catalog rows, a render,
a checkpoint or a model export, as the libraries really report it (numpy's short write, safetensors'
``SafetensorError``, ``torch.save``'s ``RuntimeError``), and model files cut short by a crash.

Each write failure must come out as one line naming the file and the cause, leave no partial file, keep the
previous good file, and a rerun after freeing space must finish without redoing saved work.  The failures are
monkeypatched in the shape measured on a real full tmpfs (see each test), so the tests run anywhere without root.
"""

from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from ssl_workspace import build_workspace

from radloop.app.cli import build_app
from radloop.core import embedding_writer
from radloop.core.embeddings import load_embeddings, write_shard

VERSION = "enc-test-23e"
DISK_FULL = "No space left on device (disk full)"


def _vectors(count: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, dim)).astype(np.float32)


def _files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name != ".write.lock")


def test_a_short_write_of_a_shard_names_the_shard_and_says_disk_full(catalog, monkeypatch):
    """On a real full disk ``np.save`` raises ``OSError('1536 requested and 992 written')`` (no errno, no file):
    before, `radloop embed` said "embedding stopped: 1536 requested and 992 written"; now the error names the
    shard and says disk full, nothing of the shard is left, and the same shard is written once there is room."""
    ids = build_workspace(catalog, 6)
    write_shard(catalog, VERSION, ids[:3], _vectors(3), normalized=False)
    real_save = np.save

    def short_write(handle, array, *args, **kwargs):
        handle.write(b"\x93NUMPY half a shard")
        raise OSError("1536 requested and 992 written")

    monkeypatch.setattr(embedding_writer.np, "save", short_write)
    with pytest.raises(OSError) as caught:
        write_shard(catalog, VERSION, ids[3:], _vectors(3), normalized=False)
    folder = embedding_writer.shard_folder(catalog, VERSION)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(folder / "shard-00001.npy")
    assert caught.value.strerror.startswith(DISK_FULL + ": could not write an embedding shard of " + VERSION)
    assert _files(folder) == ["shard-00000.npy"]

    monkeypatch.setattr(embedding_writer.np, "save", real_save)
    assert write_shard(catalog, VERSION, ids[3:], _vectors(3), normalized=False).name == "shard-00001.npy"
    assert sorted(load_embeddings(catalog, VERSION).image_ids) == sorted(ids)


def _catalog_named(workspace) -> str:
    """How a disk-full error names the catalog: the SQLite file, or the server's URL without its password."""
    from sqlalchemy import make_url

    url = make_url(workspace.database_url)
    return str(workspace.root / "catalog.sqlite") if url.get_backend_name() == "sqlite" else url.render_as_string()


def test_a_full_catalog_while_recording_a_shard_says_so_and_removes_the_shard(catalog):
    """SQLite answers ``database or disk is full`` when the rows are committed: before, a traceback out of
    `radloop embed` (an ``OperationalError`` it does not catch); now an ``OSError`` naming the catalog file (the
    command's one error line), and the shard file whose rows were refused is gone."""
    ids = build_workspace(catalog, 4)

    def full(connection, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO EMBEDDINGS"):
            raise OperationalError(statement, {}, sqlite3.OperationalError("database or disk is full"))

    event.listen(catalog.engine, "before_cursor_execute", full)
    try:
        with pytest.raises(OSError) as caught:
            write_shard(catalog, VERSION, ids, _vectors(4), normalized=False)
    finally:
        event.remove(catalog.engine, "before_cursor_execute", full)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == _catalog_named(catalog.workspace)
    assert DISK_FULL + ": could not write the rows of embedding shard shard-00000.npy" in caught.value.strerror
    assert _files(embedding_writer.shard_folder(catalog, VERSION)) == []


def test_a_full_disk_while_ingest_writes_renders_is_a_render_failure_not_a_bad_input(workspace, tmp_path,
                                                                                   monkeypatch):
    """Measured on a 100 KB tmpfs under renders/: each image after the disk filled was recorded as
    ``read: <input>.png: cannot read file: [Errno 28] No space left on device`` (blaming the input) and its half
    written temporary render stayed until the run ended.  Now (with walk 23j) the run stops at the first refused
    render with an ``OSError`` naming the renders folder and saying disk full (not an input's error row), no
    partial file is left, and a rerun adds exactly the images not yet catalogued."""
    from PIL import Image as PILImage

    from radloop.core import render
    from radloop.core.catalog import Catalog
    from radloop.core.ingest import ingest_paths
    from radloop.core.schema import Image, IngestError

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 255, (40, 40), dtype=np.uint8)
        PILImage.fromarray(pixels).save(inputs / f"xray{index}.png")
    real_write_bytes = Path.write_bytes
    written = []

    def fills_after_two(self, data):
        if ".tmp" in self.name and len(written) >= 2:  # the first image's render and thumbnail fit
            real_write_bytes(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(self)
        return real_write_bytes(self, data)

    monkeypatch.setattr(render.Path, "write_bytes", fills_after_two)
    catalog = Catalog.open(workspace)
    try:
        with pytest.raises(OSError) as stopped:
            ingest_paths(catalog, [inputs], workers=1)
        assert stopped.value.errno == errno.ENOSPC
        assert stopped.value.filename == str(workspace.renders_dir)
        assert DISK_FULL in str(stopped.value)
        with catalog.session() as session:
            errors = [(row.stage, row.reason) for row in session.query(IngestError)]
            images = session.query(Image).count()
    finally:
        catalog.dispose()
    assert (images, errors) == (1, [])
    assert [path for path in workspace.root.rglob("*") if path.name.endswith((".tmp", ".pending"))] == []

    monkeypatch.setattr(render.Path, "write_bytes", real_write_bytes)
    command = ["ingest", str(inputs), "-w", str(workspace.root), "-j", "1", "--json"]
    again = CliRunner().invoke(build_app(), command)
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["images_added"], summary["images_skipped_existing"]) == (2, 1)


def test_a_full_disk_while_writing_a_checkpoint_is_an_oserror_naming_it(tmp_path, monkeypatch):
    """``torch.save`` on a real full disk raises ``RuntimeError('[enforce fail at inline_container.cc:672] .
    unexpected pos 704 vs 598')``, which `radloop pretrain` (it catches ``OSError``) showed as a traceback; now an
    ``OSError`` naming the checkpoint and saying disk full, with the previous checkpoint whole."""
    from radloop.core import workspace as workspace_module
    from radloop.ssl import checkpoint_io
    from radloop.ssl.checkpoint_io import SameFolderCheckpointIO

    target = tmp_path / "checkpoints" / "last.ckpt"
    writer = SameFolderCheckpointIO()
    writer.save_checkpoint({"global_step": 2}, target)

    def enforce_fail(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    class FullDisk:  # what statvfs says of the run folder's file system at that moment
        f_bavail = 0

    monkeypatch.setattr(checkpoint_io.torch, "save", enforce_fail)
    monkeypatch.setattr(workspace_module.os, "statvfs", lambda path: FullDisk())
    with pytest.raises(OSError) as caught:
        writer.save_checkpoint({"global_step": 4}, target)
    monkeypatch.undo()
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert caught.value.strerror == DISK_FULL + ": could not write the checkpoint"
    assert sorted(path.name for path in target.parent.iterdir()) == ["last.ckpt"]
    assert torch.load(target, weights_only=False)["global_step"] == 2


def test_a_torch_save_error_that_is_not_a_write_stays_what_it_is(tmp_path, monkeypatch):
    """Only write failures become OSErrors: a checkpoint torch cannot serialise keeps its own error."""
    from radloop.ssl import checkpoint_io
    from radloop.ssl.checkpoint_io import SameFolderCheckpointIO

    def cannot_pickle(obj, handle, *args, **kwargs):
        raise RuntimeError("cannot pickle 'generator' object")

    monkeypatch.setattr(checkpoint_io.torch, "save", cannot_pickle)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        SameFolderCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_a_full_catalog_during_ingest_is_one_line_and_the_rerun_adds_everything(workspace, tmp_path):
    """Measured with the workspace on a 400 KB tmpfs: SQLite's ``database or disk is full`` at a batch's commit
    was a traceback out of `radloop ingest`; now an OSError naming the catalog file (one line, exit 2), no render
    left under a pending name, and the same command adds every image once there is room."""
    from PIL import Image as PILImage

    from radloop.core.catalog import Catalog

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 255, (40, 40), dtype=np.uint8)
        PILImage.fromarray(pixels).save(inputs / f"xray{index}.png")
    catalog = Catalog.open(workspace)  # the engine the command opens again: the listener is on the class level

    def full(connection, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO IMAGES"):
            raise OperationalError(statement, {}, sqlite3.OperationalError("database or disk is full"))

    from sqlalchemy.engine import Engine

    event.listen(Engine, "before_cursor_execute", full)
    command = ["ingest", str(inputs), "-w", str(workspace.root), "-j", "1", "--json"]
    try:
        stopped = CliRunner().invoke(build_app(), command, terminal_width=400)
    finally:
        event.remove(Engine, "before_cursor_execute", full)
    # an OSError naming a file: `radloop`'s main() prints it as "error: <cause>: <file>" (exit 2), no traceback
    error = stopped.exception
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC, stopped.exc_info
    assert error.filename == _catalog_named(workspace) and error.strerror.startswith(DISK_FULL)
    assert [path for path in workspace.root.rglob("*") if path.name.endswith((".tmp", ".pending"))] == []
    again = CliRunner().invoke(build_app(), command)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["images_added"] == 3
    catalog.dispose()
