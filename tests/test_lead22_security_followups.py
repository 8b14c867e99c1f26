"""Follow-ups of walk 22n's security walk (its "outside my area" list), each failing before its fix."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner


@pytest.fixture
def served(monkeypatch, catalog):
    """`radloop serve-backend` up to the point where uvicorn would start (its arguments recorded)."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    monkeypatch.delenv("RADLOOP_BACKEND_PASSWORD", raising=False)
    return calls


def _serve(workspace, *arguments):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), ["serve-backend", *arguments, "--workspace", str(workspace.root)])


def test_serving_beyond_this_machine_without_auth_warns(served, catalog):
    workspace = catalog.workspace
    open_to_all = _serve(workspace, "--host", "0.0.0.0")
    assert open_to_all.exit_code == 0, open_to_all.output
    assert served[-1]["host"] == "0.0.0.0"
    assert "without --auth" in " ".join(open_to_all.output.split())
    local = _serve(workspace, "--host", "127.0.0.1")
    assert local.exit_code == 0 and "without --auth" not in local.output


def test_info_logging_does_not_log_request_urls(monkeypatch):
    """httpx logs each request's full URL at INFO (signed image URLs, Label Studio `?d=` file paths)."""
    from radloop.app import cli

    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.INFO)
    for name in ("httpx", "httpcore"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setattr("sys.argv", ["radloop", "--help"])
    with pytest.raises(SystemExit):
        cli.main()
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING


def test_an_unusable_task_is_described_without_its_report_text():
    """The error (logged by pulls) quoted the first 200 characters of the task, report text included."""
    from radloop.labeling.ls_adapter import AdapterError, parse_annotation, parse_task

    task = {"id": "7", "data": {"report": "JOHN DOE, MRN 12345: displaced fracture"}}
    with pytest.raises(AdapterError) as raised:
        parse_task(task, None, lambda _url: None)
    assert "JOHN DOE" not in str(raised.value) and "keys: data, id" in str(raised.value)
    with pytest.raises(AdapterError) as raised:
        parse_annotation({"result": [{"value": {"text": ["JOHN DOE"]}}]}, None, None)
    assert "JOHN DOE" not in str(raised.value) and "id missing" in str(raised.value)


def test_ingest_refuses_a_dicom_declaring_a_huge_image_without_decoding_it(tmp_path, monkeypatch):
    """Walk 22n guarded uploads only: ingest decoded 2.6 kB of RLE declaring 60000 x 60000 pixels (3.35 GiB) in a
    worker; now any decode refuses it from the header, and ingest records one error and goes on."""
    from test_walk22n_security import _rle_dicom

    from radloop.core import dicom_pixels
    from radloop.core.catalog import Catalog
    from radloop.core.ingest import ingest_paths
    from radloop.core.input_errors import CorruptImageError
    from radloop.core.workspace import resolve_workspace

    def no_decode(*args, **kwargs):
        raise AssertionError("pixels decoded")

    with monkeypatch.context() as patched:
        patched.setattr(dicom_pixels, "pixel_array", no_decode)
        import pydicom

        with pytest.raises(CorruptImageError, match="too large to decode safely .*60000 x 60000"):
            dicom_pixels.decode_stored_values(pydicom.dcmread(__import__("io").BytesIO(_rle_dicom(60000, 60000))))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.dcm").write_bytes(_rle_dicom(60000, 60000))
    (folder / "small.dcm").write_bytes(_rle_dicom(16, 16, runs=2))
    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    catalog = Catalog.open(resolve_workspace(tmp_path / "ws"))
    try:
        summary = ingest_paths(catalog, [folder], workers=1, progress=False)
    finally:
        catalog.dispose()
    assert summary.images_added == 1 and summary.errors_by_stage == {"decode": 1}, summary
