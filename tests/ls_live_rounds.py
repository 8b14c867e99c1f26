"""A round catalog bound to a project on the real Label Studio test server (the set-up the live tests share), with
the pull before a round start recorded (walk 22c's changed-rounds test, walk 22m's deleted answers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ls_catalog import build_round_catalog

from radloop.labeling.ls_client import LabelStudioClient
from radloop.labeling.ls_project import init_project


def choices(*values: str) -> list[dict]:
    """An annotation result choosing ``values`` in radloop's labelling config."""
    return [{"from_name": "findings", "to_name": "image", "type": "choices", "value": {"choices": list(values)}}]


@dataclass
class LiveRounds:
    catalog: Any
    first_round: int
    image_ids: list[str]
    client: LabelStudioClient
    project_id: int
    pulled: list[int] = field(default_factory=list)

    def pull_before_start(self) -> list[int]:
        """Run the pull `round start` makes first; the rounds it pulled."""
        from radloop.app.round_pool import pull_late_answers
        from radloop.app.round_record import RoundConfig, no_progress

        self.pulled.clear()
        pull_late_answers(self.catalog, RoundConfig(), no_progress)
        return list(self.pulled)

    def close(self) -> None:
        self.client.delete_project(self.project_id)
        self.catalog.dispose()


def bound_round_catalog(server, test_catalog_url, folder: str, title: str, **options):
    """:func:`build_round_catalog` (``options``: its own) in ``folder`` of the server's document root and a new
    project ``title`` it is bound to; returns ``(catalog, round_id, image_ids, client, project_id)``."""
    root = (server.document_root / folder).resolve()
    catalog, round_id, image_ids = build_round_catalog(root, database_url=test_catalog_url(root), **options)
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    project_id = init_project(client, catalog.workspace, title=title,
                              document_root=str(server.document_root))["project_id"]
    return catalog, round_id, image_ids, client, project_id


def delete_projects(client: LabelStudioClient, project_ids: list[int]) -> None:
    """Delete each project; one already deleted is passed over."""
    for project_id in project_ids:
        try:
            client.delete_project(project_id)
        except Exception:  # noqa: BLE001 - already deleted
            pass


def live_rounds(server, test_catalog_url, monkeypatch, name: str) -> LiveRounds:
    """A two-image round catalog in workspace ``ws-<name>`` and its project ``<name>`` on ``server``; every
    ``pull_round`` call is recorded in ``pulled``."""
    from radloop.labeling import ls_sync

    catalog, first, image_ids, client, project_id = bound_round_catalog(
        server, test_catalog_url, f"ws-{name}", name.replace("-", " "), n_images=2)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    live = LiveRounds(catalog, first, image_ids, client, project_id)
    real = ls_sync.pull_round
    monkeypatch.setattr(ls_sync, "pull_round", lambda catalog, client, round_id, **kwargs: live.pulled.append(
        round_id) or real(catalog, client, round_id, **kwargs))
    return live
