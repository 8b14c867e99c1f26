"""`radloop ls init` against a REAL Label Studio server (tests/ls_server.py): a project it creates and then
cannot configure is not left behind; a refused token is not reported as serving switched off."""

from __future__ import annotations

import pytest
from ls_catalog import build_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)

from radloop.labeling.ls_client import AuthenticationError, LabelStudioClient
from radloop.labeling.ls_project import binding_path, check_local_files, init_project, media_dir

pytestmark = pytest.mark.labelstudio

TITLE = "radloop cleanup live"


def test_a_refused_serving_check_leaves_no_project_behind(label_studio, test_catalog_url, monkeypatch):  # noqa: F811
    server = label_studio
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    root = (server.document_root / "ws-cleanup").resolve()
    catalog, _round_id, _ids = build_round_catalog(root, n_images=1, database_url=test_catalog_url(root))
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    try:
        assert client.find_project(TITLE) is None
        # the workspace as an explicit root: Label Studio accepts the storage (under its real root), then the
        # probe shows it serves from its own root: ls init stops, and removes the project it had just created
        with pytest.raises(ValueError, match=f"serves local files from {server.document_root.resolve()}") as raised:
            init_project(client, catalog.workspace, title=TITLE, document_root=str(root))
        assert "the project it created was removed" in str(raised.value)
        assert client.find_project(TITLE) is None
        assert not binding_path(catalog.workspace).exists()

        # the same refusal for a project that existed keeps it
        kept = client.create_project(TITLE, "<View><Image name='image' value='$image'/></View>")
        with pytest.raises(ValueError, match="serves local files from") as raised:
            init_project(client, catalog.workspace, title=TITLE, document_root=str(root))
        assert "removed" not in str(raised.value) and client.find_project(TITLE) == kept

        # Label Studio refuses the local-files request of a wrong token too: said as such, not as serving off
        media = media_dir(catalog.workspace)
        with pytest.raises(AuthenticationError, match="not serving being switched off"):
            check_local_files(LabelStudioClient(server.url, "not-the-token", retries=0), media,
                              str(server.document_root), explicit=True)
        assert not list(media.glob(".radloop-serving-check*"))
    finally:
        project_id = client.find_project(TITLE)
        if project_id is not None:
            client.delete_project(project_id)
        catalog.dispose()
