"""`radloop round status` shows skipped and deleted tasks, so that a round's task columns add up to its
selection (a task deleted in Label Studio was counted nowhere)."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from test_round_handout_notes import unbound  # noqa: F401 - the fixture


def test_status_counts_deleted_tasks(unbound):  # noqa: F811
    from radloop.app.cli import build_app
    from radloop.app.rounds import start_round
    from radloop.core.schema import Selection
    from radloop.labeling.ls_pull_store import set_ls_meta

    catalog, _ = unbound
    started = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    with catalog.session() as session:  # one task imported, then deleted in Label Studio (as a push records it)
        selection = session.scalars(select(Selection).where(Selection.round_id == started.round_id)).first()
        selection.ls_task_id = 7
        set_ls_meta(selection, project_id="1", deleted_at="2026-11-28T05:00:00+00:00")
        session.commit()
    root, env = str(catalog.workspace.root), {"RADLOOP_DATABASE_URL": catalog.workspace.database_url}
    listed = CliRunner().invoke(build_app(), ["round", "status", "--json", "--workspace", root], env=env)
    [row] = json.loads(listed.stdout)["rounds"]
    assert (row["answered"], row["skipped"], row["pending"], row["deleted"], row["not_in_label_studio"]) \
        == (0, 0, 0, 1, 2)
    table = CliRunner().invoke(build_app(), ["round", "status", "--workspace", root], env=env).output
    header = next(line for line in table.splitlines() if "answered" in line)
    assert "skipped" in header and "deleted" in header, table
    cells = next(line for line in table.splitlines() if line.strip("│ ").startswith("1 "))
    numbers = [cell.strip() for cell in cells.split("│")[1:-1]]
    assert numbers[4:10] == ["3", "0", "0", "0", "1", "2"], table  # selected = answered + ... + not in LS
