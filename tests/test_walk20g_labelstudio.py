"""Walk 20g: the Label Studio round trip as a radiologist and a researcher run it.

- A box Label Studio's answer carries but radloop cannot convert (rotated image, another aspect ratio, a label
  that is no finding of the control) is quarantined; its finding must not be stored as absent (0) because its
  tick was not also set: a drawn box says "present".
- A round whose project was deleted in Label Studio, after `radloop ls init` bound the workspace to a new one:
  the pull's error must say what helps (push the round there; a finished round's unanswered tasks are gone),
  not "run `radloop ls init`" again.
"""

from __future__ import annotations

import pytest
from ls_live_rounds import delete_projects
from ls_server import label_studio  # noqa: F401  (session fixture)
from sqlalchemy import select

from radloop.labeling.ls_adapter import ImageGeometry, parse_annotation
from radloop.labeling.ls_config import build_label_config, parse_label_config

CONFIG = parse_label_config(build_label_config())
GEOMETRY = ImageGeometry(width=1660, height=1305, render_width=1660, render_height=1305)


def _annotation(results):
    return {"id": 1, "task": 7, "completed_by": 1, "was_cancelled": False, "result": results,
            "created_at": "2026-01-01T09:00:00Z", "updated_at": "2026-01-01T10:00:00Z"}


def _box(label, *, seen=(1660, 1305), rotation=0):
    return {"from_name": "boxes", "to_name": "image", "type": "rectanglelabels", "original_width": seen[0],
            "original_height": seen[1], "image_rotation": rotation,
            "value": {"x": 50, "y": 25, "width": 10, "height": 20, "rotation": 0, "rectanglelabels": [label]}}


@pytest.mark.parametrize("box", [_box("fracture", rotation=90), _box("fracture", seen=(512, 512))],
                         ids=["rotated", "aspect"])
def test_quarantined_box_of_a_known_finding_still_says_present(box):
    version = parse_annotation(_annotation([box]), CONFIG, GEOMETRY)
    assert version.boxes == () and len(version.problems) == 1
    assert version.choices["fracture"] == 1  # not the 0 of an unticked finding
    assert version.choices["foreign_body"] == 0  # the other findings are still answered "none present"


def test_box_with_an_unknown_label_leaves_unticked_findings_unread():
    # Label Studio accepts the shown name ("foreign body") as well as the alias the UI stores ("foreign_body")
    version = parse_annotation(_annotation([_box("foreign body")]), CONFIG, GEOMETRY)
    assert "unknown box label" in version.problems[0].reason
    assert "foreign_body" not in version.choices and "fracture" not in version.choices


def test_cannot_tell_still_wins_over_a_quarantined_box():
    cannot = {"from_name": "cannot_tell", "to_name": "image", "type": "choices", "value": {"choices": ["fracture"]}}
    version = parse_annotation(_annotation([_box("fracture", rotation=90), cannot]), CONFIG, GEOMETRY)
    assert version.choices["fracture"] is None


@pytest.mark.labelstudio
def test_round_in_a_deleted_project_after_ls_init_rebound(label_studio, test_catalog_url):  # noqa: F811
    from ls_catalog import add_round, build_round_catalog

    from radloop.core.schema import Annotation, Round
    from radloop.labeling.ls_client import LabelStudioClient, ProjectNotFoundError
    from radloop.labeling.ls_project import init_project
    from radloop.labeling.ls_sync import pull_round, push_round, pushed_binding

    server = label_studio
    root = (server.document_root / "ws-walk20g-moved").resolve()
    catalog, round_one, image_ids = build_round_catalog(root, n_images=3, database_url=test_catalog_url(root))
    round_two = add_round(catalog, image_ids[:2], number=2)
    client = LabelStudioClient(server.url, server.token, retries=1, backoff=0.2)
    projects = [init_project(client, catalog.workspace, title="walk20g moved",
                             document_root=str(server.document_root))["project_id"]]
    try:
        for round_id in (round_one, round_two):
            push_round(catalog, client, round_id, with_model=False)
        tasks = {task["data"]["case_id"]: task["id"] for task in client.iter_tasks(projects[0], round_id=round_one)}
        # a quarantined box (image rotated in Label Studio) still says "fracture present", through the real server
        rotated = _box("fracture", rotation=90)
        client.create_annotation(tasks[image_ids[0]], [rotated])
        assert pull_round(catalog, client, round_one)["quarantined"] == 1
        with catalog.session() as session:
            session.get(Round, round_one).state = "finished"
            values = {row.label: row.meta.get("value") for row in session.scalars(select(Annotation).where(
                Annotation.image_id == image_ids[0], Annotation.source == "labelstudio"))}
        assert values["fracture"] == 1
        client.delete_project(projects[0])
        projects.append(init_project(client, catalog.workspace, document_root=str(server.document_root))["project_id"])
        assert projects[1] != projects[0]
        with pytest.raises(ProjectNotFoundError) as finished:
            pull_round(catalog, client, round_one, binding=pushed_binding(catalog, round_one))  # as `round pull`
        message = str(finished.value)
        assert f"project {projects[0]}" in message and f"bound to project {projects[1]}" in message
        assert "round 1 is finished" in message and "ls init" not in message and "\n" not in message
        with pytest.raises(ProjectNotFoundError, match=r"`radloop round push --round 2` hands the round's tasks"):
            pull_round(catalog, client, round_two, binding=pushed_binding(catalog, round_two))
        assert push_round(catalog, client, round_two, with_model=False)["imported"] == 2
        moved = pull_round(catalog, client, round_two, binding=pushed_binding(catalog, round_two))
        assert moved["project_id"] == projects[1] and moved["pending"] == 2  # pulled from the new project
    finally:
        delete_projects(client, projects)
        catalog.dispose()
