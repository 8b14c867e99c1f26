"""Offline Label Studio pieces: the import file, de-identified staging of renders, the bench command."""

from __future__ import annotations

import json

import pytest
from ls_catalog import build_round_catalog


def test_export_tasks_json_is_deidentified_with_weak_label_predictions(tmp_path, test_catalog_url):
    from radloop.labeling.ls_config import build_label_config, parse_label_config
    from radloop.labeling.ls_tasks import export_tasks_json

    catalog, round_id, image_ids = build_round_catalog(tmp_path / "ws", n_images=3,
                                                       database_url=test_catalog_url(tmp_path / "ws"))
    out = tmp_path / "import.json"
    summary = export_tasks_json(catalog, round_id, out, document_root=str(tmp_path))
    assert summary == {"path": str(out), "tasks": 3, "predictions": 3, "model_version": None}
    tasks = json.loads(out.read_text())
    text = out.read_text()
    assert ".jpg" not in text and "/work/" not in text and "JPEG" not in text  # no original file names
    assert [task["data"]["case_id"] for task in tasks] == image_ids  # rank order
    first = tasks[0]
    assert first["data"]["image"] == f"/data/local-files/?d=ws/labelstudio/media/{image_ids[0]}.png"
    assert first["data"]["radloop_key"] == f"{image_ids[0]}@round-{round_id}"
    assert first["data"]["selection_score"] == 0.9 and first["data"]["round"] == 1
    assert "Transverse fracture" in first["data"]["report"]
    prediction = first["predictions"][0]
    assert prediction["model_version"] == "report-rules:test-rules-1"
    assert prediction["result"][0]["value"]["choices"] == ["fracture"]
    assert tasks[1]["predictions"][0]["result"][0]["value"]["choices"] == ["device"]
    # every control named in a result exists in the generated config
    config = parse_label_config(build_label_config())
    assert all(config.control(result["from_name"]) for task in tasks for p in task["predictions"]
               for result in p["result"])
    staged = catalog.workspace.root / "labelstudio" / "media"
    assert sorted(path.name for path in staged.iterdir()) == sorted(f"{i}.png" for i in image_ids)
    media = export_tasks_json(catalog, round_id, tmp_path / "media.json", media_url="https://radloop.local/media/")
    assert media["tasks"] == 3
    assert json.loads((tmp_path / "media.json").read_text())[0]["data"]["image"] == \
        f"https://radloop.local/media/{image_ids[0]}.png"
    with pytest.raises(LookupError, match="no round"):
        export_tasks_json(catalog, 999, tmp_path / "x.json")
    catalog.dispose()


def test_stage_render_strips_png_metadata(workspace):
    from PIL import Image as PILImage
    from PIL.PngImagePlugin import PngInfo

    from radloop.labeling.ls_project import stage_render

    info = PngInfo()
    info.add_text("PatientName", "DOE^JANE")
    info.add_text("SourceFile", "/archive/1234567/IMG0001.dcm")
    render = workspace.renders_dir / "I-0000000000000001.png"
    PILImage.new("L", (40, 30), 128).save(render, pnginfo=info)
    clean = workspace.renders_dir / "I-0000000000000002.png"
    PILImage.new("L", (40, 30), 7).save(clean)
    staged = stage_render(workspace, "I-0000000000000001", workspace.relative(render))
    assert staged.name == "I-0000000000000001.png"
    assert b"DOE^JANE" not in staged.read_bytes() and b"IMG0001" not in staged.read_bytes()
    with PILImage.open(staged) as image:
        assert image.size == (40, 30) and image.getpixel((0, 0)) == 128 and not image.text
    linked = stage_render(workspace, "I-0000000000000002", workspace.relative(clean))
    assert linked.read_bytes() == clean.read_bytes()
    with pytest.raises(FileNotFoundError, match="render of I-9 missing"):
        stage_render(workspace, "I-9", "renders/none.png")


def test_binding_required_and_never_holds_token(workspace):
    from radloop.labeling.ls_project import ProjectBinding, load_binding, save_binding

    with pytest.raises(FileNotFoundError, match="radloop ls init"):
        load_binding(workspace)
    save_binding(workspace, ProjectBinding(url="http://127.0.0.1:1", project_id=3, title="t", config_digest="d"))
    assert load_binding(workspace).project_id == 3
    assert "token" not in (workspace.root / "labelstudio" / "project.json").read_text().lower()


def test_client_errors_are_clear_without_server(monkeypatch):
    from radloop.labeling.ls_client import (
        AuthenticationError, LabelStudioClient, LabelStudioError, ServerUnavailableError, token_from_env,
    )

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("RADLOOP_LS_TOKEN", "from-env")
    assert token_from_env() == "from-env"
    with pytest.raises(AuthenticationError, match="no Label Studio API token"):
        LabelStudioClient("http://127.0.0.1:9", "")
    with pytest.raises(LabelStudioError, match="must start with http"):
        LabelStudioClient("127.0.0.1:9", "t")
    waits = []
    client = LabelStudioClient("http://127.0.0.1:9", "secret-token-xyz", retries=3, backoff=0.5,
                               sleep=waits.append)
    with pytest.raises(ServerUnavailableError, match="unreachable") as caught:
        client.whoami()
    assert waits == [0.5, 1.0, 2.0]  # exponential back-off
    assert "secret-token-xyz" not in str(caught.value) and "secret-token-xyz" not in repr(client)


def test_rounds_push_to_the_project_ls_init_bound(catalog, monkeypatch):
    """`round start/finish` without a project title use the bound project as is (the default title used to
    differ from `ls init`'s and re-bound the workspace, losing its document root); another title re-binds with
    the binding's settings kept."""
    from types import SimpleNamespace

    from radloop.labeling import ls_sync
    from radloop.labeling.ls_project import ProjectBinding, load_binding, save_binding

    bound = ProjectBinding(url="http://ls:8080", project_id=7, title="radloop findings", config_digest="d",
                           document_root="/srv/data", media_url=None, storage_id=3)
    save_binding(catalog.workspace, bound)
    calls = []

    def fake_init(client, workspace, *, title, document_root=None, media_url=None):
        calls.append((title, document_root, media_url))
        save_binding(workspace, ProjectBinding(url=client.url, project_id=8, title=title, config_digest="d",
                                               document_root=document_root, media_url=media_url))

    monkeypatch.setattr(ls_sync, "init_project", fake_init)
    client = SimpleNamespace(url="http://ls:8080")
    assert ls_sync._resolve_binding(catalog, client, None, None) == bound and not calls
    assert ls_sync._resolve_binding(catalog, client, None, "radloop findings") == bound and not calls
    other = ls_sync._resolve_binding(catalog, client, None, "fracture round")
    assert calls == [("fracture round", "/srv/data", None)] and other.project_id == 8
    assert load_binding(catalog.workspace).title == "fracture round"
