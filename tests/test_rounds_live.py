"""Rounds against a REAL Label Studio server (tests/ls_server.py): `round start` pulls the answers given since
the last pull before it selects, and leaves out the images an expert answered "cannot tell" for or skipped."""

from __future__ import annotations

import pytest
from ls_server import label_studio  # noqa: F401  (session fixture)
from rounds_workspace import build_rounds_catalog
from sqlalchemy import select

from radloop.labeling.ls_client import LabelStudioClient
from radloop.labeling.ls_project import init_project

pytestmark = pytest.mark.labelstudio


def _choices(control: str, *values: str) -> dict:
    return {"from_name": control, "to_name": "image", "type": "choices", "value": {"choices": list(values)}}


def test_start_pulls_late_answers_and_leaves_unclear_images_out(label_studio, test_catalog_url,  # noqa: F811
                                                                 monkeypatch):
    from radloop.app.rounds import finish_round, round_status, start_round
    from radloop.core.schema import Selection

    server = label_studio
    root = (server.document_root / "ws-rounds-live").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 24)
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    project_id = init_project(client, catalog.workspace, title="radloop rounds live",
                              document_root=str(server.document_root))["project_id"]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)  # what `round start` / `round finish` use
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)

    def selected(round_id):
        with catalog.session() as session:
            return list(session.scalars(select(Selection.image_id).where(Selection.round_id == round_id)
                                        .order_by(Selection.rank)))

    try:
        first = start_round(catalog, strategy="random", budget=4, dataset="fracture")
        assert first.state == "pushed" and first.pending == 4
        tasks = {task["data"]["case_id"]: task["id"] for task in client.iter_tasks(project_id, round_id=first.round_id)}
        answered, late, unsure, skipped = selected(first.round_id)
        client.create_annotation(tasks[answered], [_choices("findings", "fracture")])
        assert finish_round(catalog).pending == 3
        # given in Label Studio after the finish's pull: only the next start's pull sees them
        client.create_annotation(tasks[late], [_choices("findings", "normal")])
        client.create_annotation(tasks[unsure], [_choices("cannot_tell", "fracture")])
        client.create_annotation(tasks[skipped], [], was_cancelled=True)

        second = start_round(catalog, strategy="random", budget=1000, dataset="fracture")
        assert second.notes[0] == "pulled 2 late answer(s) from Label Studio before selecting (round 1: 2)"
        earlier = next(report for report in round_status(catalog) if report.round_id == first.round_id)
        assert (earlier.answered, earlier.skipped, earlier.pending, earlier.labels_spent) == (3, 1, 0, 3)
        assert any(note.startswith("2 image(s) left out of the pool: experts could not label them for 'fracture'")
                   and "(1 cannot tell, 1 skipped)" in note for note in second.notes), second.notes
        assert not any("still unanswered" in note for note in second.notes), second.notes
        picked = set(selected(second.round_id))
        assert picked and not picked & {answered, late, unsure, skipped}
    finally:
        client.delete_project(project_id)
        catalog.dispose()
