"""`radloop ls init` against a REAL Label Studio server (tests/ls_server.py): task images must open.

Found by hand: `ls init` run without --document-root in a shell without LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
took the workspace as the server's document root; Label Studio accepted the storage (the media folder is under
its real root), `round start` pushed the batch, and every task image answered 404 in the labelling view.  A
second `ls init` with the right root did not repair the tasks already pushed.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from ls_catalog import add_round, build_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)

from radloop.labeling.ls_client import LabelStudioClient
from radloop.labeling.ls_project import init_project, load_binding, save_binding
from radloop.labeling.ls_sync import push_round

pytestmark = pytest.mark.labelstudio


def _image_statuses(client, project_id: int, round_id: int) -> list[int]:
    """What an annotator's browser gets for each task image of the round (through the API token)."""
    statuses = []
    for task in client.iter_tasks(project_id, round_id=round_id, with_annotations=False):
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d="), url
        statuses.append(client.local_file_status(parse_qs(urlsplit(url).query)["d"][0]))
    return statuses


def test_init_finds_the_servers_document_root_and_repairs_pushed_images(label_studio, test_catalog_url,  # noqa: F811
                                                                        monkeypatch):
    server = label_studio
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    root = (server.document_root / "ws-docroot").resolve()
    catalog, round_id, image_ids = build_round_catalog(root, n_images=3, database_url=test_catalog_url(root))
    workspace = catalog.workspace
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    project_id = None
    try:
        # no --document-root, no variable: the server's root (a parent of the workspace) is found, not guessed
        first = init_project(client, workspace, title="radloop docroot live")
        project_id = first["project_id"]
        assert first["document_root"] == str(server.document_root.resolve()), first
        assert "serves local files from" in first["note"]
        assert load_binding(workspace).document_root == str(server.document_root.resolve())
        assert push_round(catalog, client, round_id, with_model=False)["imported"] == len(image_ids)
        assert _image_statuses(client, project_id, round_id) == [200] * len(image_ids)
        assert not list((workspace.root / "labelstudio" / "media").glob(".radloop-serving-check*"))

        # an explicit root the server does not serve from is refused, naming the one it does
        with pytest.raises(ValueError, match=f"serves local files from {server.document_root.resolve()}"):
            init_project(client, workspace, title="radloop docroot live", document_root=str(root))

        # a workspace bound with the wrong root (before this check existed) pushed tasks whose images 404 ...
        save_binding(workspace, replace(load_binding(workspace), document_root=str(root)))
        second = add_round(catalog, image_ids, number=2)
        assert push_round(catalog, client, second, with_model=False)["imported"] == len(image_ids)
        assert _image_statuses(client, project_id, second) == [404] * len(image_ids)
        # ... and `ls init` points them at the right URLs; round 1's tasks were right and stay untouched
        again = init_project(client, workspace, title="radloop docroot live")
        assert again["project_id"] == project_id and again["image_urls_repaired"] == len(image_ids)
        assert _image_statuses(client, project_id, second) == [200] * len(image_ids)
        assert _image_statuses(client, project_id, round_id) == [200] * len(image_ids)
        assert "image_urls_repaired" not in init_project(client, workspace, title="radloop docroot live")
    finally:
        if project_id is not None:
            client.delete_project(project_id)
        catalog.dispose()


def test_init_says_when_the_server_cannot_serve_the_workspace(label_studio, test_catalog_url, tmp_path,  # noqa: F811
                                                             monkeypatch):
    """A workspace outside the server's document root: Label Studio refuses the storage (its own check); the
    message names the path, nothing is bound."""
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    root = (tmp_path / "outside").resolve()
    catalog, _round_id, _ids = build_round_catalog(root, n_images=1, database_url=test_catalog_url(root))
    client = LabelStudioClient(label_studio.url, label_studio.token, retries=2, backoff=0.2)
    try:
        with pytest.raises(Exception, match="labelstudio/media|document root|LOCAL_FILES"):
            init_project(client, catalog.workspace, title="radloop outside live")
        assert not (root / "labelstudio" / "project.json").exists()
    finally:
        project_id = client.find_project("radloop outside live")
        if project_id is not None:
            client.delete_project(project_id)
        catalog.dispose()
