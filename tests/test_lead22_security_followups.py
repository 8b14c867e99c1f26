"""Follow-ups of walk 22n's security walk (its "outside my area" list), each failing before its fix."""

from __future__ import annotations

import logging
import subprocess

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


def test_the_app_caps_uploads():
    from conftest import REPO_ROOT

    streamlit = REPO_ROOT / ".venv" / "bin" / "streamlit"
    if not streamlit.exists():
        import shutil

        streamlit = shutil.which("streamlit")
    shown = subprocess.run([str(streamlit), "config", "show"], cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=120).stdout
    assert "maxUploadSize = 64" in shown


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
