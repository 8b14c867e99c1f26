"""A catalog render the ML backend cannot read: the 422 Label Studio shows annotators names the task and the
image id, not the server's file path (it read "task 2: [Errno 2] No such file or directory: '/srv/…/renders/…'");
the path goes to the server's log for the operator."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from test_labelstudio_backend import _app, cases  # noqa: F401  (fixture)


def test_missing_render_is_named_by_image_id_and_logged_with_its_path(catalog, cases, caplog):  # noqa: F811
    app, _ = _app(catalog)
    render = catalog.workspace.renders_dir / f"{cases[1]}.png"
    render.unlink()
    with caplog.at_level(logging.WARNING):
        response = TestClient(app).post("/predict", json={"tasks": [{"id": 2, "data": {"case_id": cases[1]}}]})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "task 2" in detail and cases[1] in detail and "cannot be read" in detail
    assert str(catalog.workspace.root) not in detail and "renders" not in detail
    assert any(str(render) in record.getMessage() for record in caplog.records)
