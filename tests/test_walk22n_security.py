"""Security walk 22n: the workspace's pseudonym key at rest, DICOM uploads that declare huge images, the ML
backend's basic-auth comparison and what it says of a failed training run."""

from __future__ import annotations

import base64
import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from dicom_synthetic import synthetic_dataset


# --- the pseudonym key -------------------------------------------------------------------------------------------

def test_pseudonym_key_is_private_whole_and_leaves_no_temporary_file(tmp_path):
    from radloop.core.workspace import local_workspace

    workspace = local_workspace(tmp_path / "ws")
    key = workspace.pseudonym_key
    path = workspace.root / "secret.key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(workspace.root.stat().st_mode) == 0o700
    assert sorted(item.name for item in workspace.root.iterdir() if "secret" in item.name) == ["secret.key"]
    assert local_workspace(tmp_path / "ws").pseudonym_key == key  # read back, not replaced


@pytest.mark.parametrize("content", ["", "\n", "abc", "not hex at all"])
def test_an_empty_or_damaged_pseudonym_key_is_refused_not_used(tmp_path, content):
    """Before: an empty secret.key (a crash between creating and writing it, or a second process reading it in
    that moment) gave the HMAC key b"": every study id derivable by anyone; "abc" was a traceback."""
    from radloop.core.workspace import local_workspace

    workspace = local_workspace(tmp_path / "ws").ensure()
    (workspace.root / "secret.key").write_text(content)
    with pytest.raises(OSError, match="pseudonym key is empty or damaged") as caught:
        _ = workspace.pseudonym_key
    assert caught.value.filename == str(workspace.root / "secret.key")  # the CLI's one line names the file


def test_the_key_file_appears_only_whole(tmp_path, monkeypatch):
    """The key is never visible half written: at the moment secret.key appears it already holds the key (the
    old code created the empty file first, then wrote it)."""
    from radloop.core import workspace as workspace_module

    workspace = workspace_module.local_workspace(tmp_path / "ws").ensure()
    path = workspace.root / "secret.key"
    seen = []
    real_open = os.open

    def spying_open(name, flags, *args):
        descriptor = real_open(name, flags, *args)
        if Path(name) == path:  # created in place: what another process would read now
            seen.append(path.read_text())
        return descriptor

    monkeypatch.setattr(workspace_module.os, "open", spying_open)
    real_link = os.link

    def spying_link(source, target, *args, **kwargs):
        real_link(source, target, *args, **kwargs)
        seen.append(Path(target).read_text())

    monkeypatch.setattr(workspace_module.os, "link", spying_link)
    key = workspace.pseudonym_key
    assert seen and all(text.strip() == key.hex() for text in seen)


def test_a_key_created_meanwhile_by_another_process_is_kept(tmp_path):
    from radloop.core.workspace import _create_key_file

    path = tmp_path / "secret.key"
    path.write_text("ab" * 32)
    _create_key_file(path)  # lost the race: no error, the other key stands
    assert path.read_text() == "ab" * 32
    assert [item.name for item in tmp_path.iterdir()] == ["secret.key"]


# --- DICOM uploads declaring huge images -------------------------------------------------------------------------

def _rle_dicom(rows: int, columns: int, runs: int = 200) -> bytes:
    """A tiny RLE Lossless DICOM whose header declares ``rows`` x ``columns`` 8-bit pixels (``runs`` runs of 128
    zero bytes in its segment)."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    dataset = synthetic_dataset(np.zeros((4, 4), np.uint8), bits=8, allocated=8)
    dataset.Rows, dataset.Columns = rows, columns
    segment = (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + b"\0" * 56 + bytes([0x81, 0]) * runs
    dataset.PixelData = encapsulate([segment])
    dataset.file_meta.TransferSyntaxUID = RLELossless
    dataset.preamble = b"\0" * 128
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def test_a_dicom_upload_declaring_a_huge_image_is_refused_before_decoding(monkeypatch):
    """Before: 2.6 kB of RLE declaring 60000 x 60000 pixels made the page allocate 3.35 GiB (a MemoryError
    where memory is limited, the server's memory otherwise); now the header is checked against the limit a
    PNG/JPEG upload has (twice Pillow's decompression-bomb limit) and nothing is decoded."""
    from radloop.app import views_search
    from radloop.core import dicom_pixels

    def no_decode(*args, **kwargs):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(dicom_pixels, "pixel_array", no_decode)
    data = _rle_dicom(60000, 60000)
    assert len(data) < 4096
    with pytest.raises(ValueError, match="too large to decode safely .*60000 x 60000"):
        views_search.decode_image(data)


def test_the_dicom_limit_follows_pillows_and_small_uploads_still_decode(monkeypatch):
    from PIL import Image as PILImage

    from radloop.app import views_search

    data = _rle_dicom(16, 16, runs=2)
    assert views_search.decode_image(data).shape == (16, 16)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 256 pixels are then > 2x the limit
    with pytest.raises(ValueError, match="too large to decode safely"):
        views_search.decode_image(data)


def test_the_catalog_match_does_not_decode_a_huge_dicom(monkeypatch):
    pytest.importorskip("radloop.retrieval.query_match")
    from radloop.app import views_search
    from radloop.core import ingest_worker

    class NoCatalog:  # a byte match is looked up first: no catalog row has these bytes
        def session(self):
            raise AssertionError("not reached for a refused file")

    def no_hash(data):
        raise AssertionError("pixels decoded for the pixel hash")

    monkeypatch.setattr(ingest_worker, "file_pixel_hash", no_hash)
    assert views_search.catalog_match_for_upload(NoCatalog(), _rle_dicom(60000, 60000)) is None


# --- the ML backend's basic auth -----------------------------------------------------------------------------------

def test_basic_auth_compares_the_password_even_for_a_wrong_user_name(monkeypatch):
    """Before: ``a and b`` skipped the password comparison for a wrong user name, so the answer's time told
    whether a user name was right."""
    from radloop.app import backend_settings

    compared = []
    real = backend_settings.secrets.compare_digest

    def counting(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(backend_settings.secrets, "compare_digest", counting)
    auth = backend_settings.BackendAuth(username="labelstudio", password="s3cret-pass")
    header = "Basic " + base64.b64encode(b"intruder:guess").decode()
    assert auth.check(header) is False
    assert len(compared) == 2
    compared.clear()
    assert auth.check("Basic " + base64.b64encode(b"labelstudio:s3cret-pass").decode()) is True
    assert len(compared) == 2


# --- what /health and /training say of a failed training run -------------------------------------------------------

def test_a_failed_training_run_is_reported_without_server_paths_or_sql():
    """Before: ``/health`` and ``/training`` answered the raw message, e.g. "FileNotFoundError: ... No such file
    or directory: '/srv/radloop/ws/renders/ab/I-1.png'" or a database error with its SQL and parameters (task
    data); the server log keeps the whole error."""
    import sqlalchemy.exc
    from fastapi.testclient import TestClient

    from radloop.app.backend import BackendSettings, create_app

    class Predictor:
        kind, model_version, reads_pixels, draws_boxes = "fake", "m1", True, False

        def lookup(self, case_id):
            return None

        def predict(self, cases):
            return []

    failures = iter([
        FileNotFoundError(2, "No such file or directory", "/srv/radloop/ws/renders/ab/I-1.png"),
        sqlalchemy.exc.IntegrityError("INSERT INTO reports (text) VALUES (?)", ("Patient Jane Roe, fracture",),
                                      Exception("UNIQUE constraint failed")),
    ])

    def train(batch):
        raise next(failures)

    app = create_app(None, settings=BackendSettings(debounce_s=0.0), predictor_loader=Predictor,
                     train_function=train)
    with TestClient(app) as client:
        client.post("/train", json={"project": "1.1"})
        assert app.state.scheduler.wait_idle(10)
        error = client.get("/health").json()["last_training"]["error"]
        assert error == "FileNotFoundError: [Errno 2] No such file or directory: '.../I-1.png'"
        client.post("/train", json={"project": "1.1"})
        assert app.state.scheduler.wait_idle(10)
        runs = client.get("/training").json()["runs"]
        assert runs[-1]["error"] == "IntegrityError: (builtins.Exception) UNIQUE constraint failed"
        assert "/srv/radloop" not in str(runs) and "Jane Roe" not in str(runs)


def test_brief_error_keeps_urls_and_plain_messages():
    from radloop.app.backend_training import brief_error

    assert brief_error(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    text = "HTTP 401 from http://ls:8080/api/projects/3/tasks"
    assert brief_error(RuntimeError(text)) == f"RuntimeError: {text}"


def test_a_key_created_meanwhile_is_kept_where_hard_links_fail(tmp_path, monkeypatch):
    """The fallback for file systems without hard links raised FileExistsError when another process had just
    created the key (lead, re-reading walk 22n's change)."""
    import os

    from radloop.core import workspace as workspace_module

    path = tmp_path / "secret.key"
    path.write_text("cd" * 32)

    def no_links(*_args, **_kwargs):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    workspace_module._create_key_file(path)
    assert path.read_text() == "cd" * 32
    assert [item.name for item in tmp_path.iterdir()] == ["secret.key"]
