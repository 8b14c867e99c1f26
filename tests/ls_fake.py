"""A fake Label Studio for offline round tests: the client calls ``push_round`` / ``pull_round`` make, in Label
Studio's JSON shapes, served from memory.  Unlike Label Studio 1.23.2 (walk 22m, live), it does not bump a task's
``updated_at`` when an annotation is deleted: it stands for a server that does not, which radloop's annotation
counts still catch."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

URL = "http://fake-label-studio:8080"
PROJECT_ID = 7


class FakeLabelStudio:
    """The client calls ``push_round`` / ``pull_round`` make, served from memory (``down``: unreachable)."""

    url = URL

    def __init__(self) -> None:
        self.tasks: dict[int, dict] = {}
        self.down = False
        self._ids = itertools.count(1)
        self._clock = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def _now(self) -> str:
        self._clock += timedelta(seconds=10)  # past the pull's 5-second cursor margin
        return self._clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _check(self) -> None:
        from radloop.labeling.ls_client import ServerUnavailableError

        if self.down:
            raise ServerUnavailableError(f"Label Studio at {URL} is unreachable (ConnectError: [Errno 111] "
                                         "Connection refused); is the server running?")

    # ------------------------------------------------------------------------------- client surface
    def whoami(self) -> dict:
        self._check()
        return {"id": 1}

    def user_emails(self) -> dict[int, str]:
        self._check()
        return {1: "rad1@example.com", 2: "rad2@example.com"}

    def get_project(self, project_id: int) -> dict:
        from radloop.labeling.ls_config import build_label_config

        self._check()
        return {"id": project_id, "label_config": build_label_config()}

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        self._check()
        ids = []
        for task in tasks:
            task_id = next(self._ids)
            stamp = self._now()
            self.tasks[task_id] = {"id": task_id, "data": task["data"], "annotations": [], "created_at": stamp,
                                   "updated_at": stamp}
            ids.append(task_id)
        return ids

    def iter_tasks(self, project_id: int, *, round_id=None, updated_after=None, with_annotations=True,
                   page_size=100) -> list[dict]:
        self._check()
        since = datetime.fromisoformat(updated_after.replace("Z", "+00:00")) if updated_after else None
        found = []
        for task in self.tasks.values():
            if round_id is not None and task["data"].get("round_id") != round_id:
                continue
            if since and datetime.fromisoformat(task["updated_at"].replace("Z", "+00:00")) <= since:
                continue
            found.append(json.loads(json.dumps(task if with_annotations else {**task, "annotations": []})))
        return found

    # ------------------------------------------------------------------------------ annotator side
    def annotate(self, task_id: int, findings: list[str], *, user: int = 1, cannot_tell: list[str] = (),
                 skip: bool = False) -> int:
        """Submit an annotation ticking ``findings`` (none ticked: every finding absent) and ``cannot_tell``
        under "Cannot tell"; ``skip``: the annotator skipped the task (a cancelled annotation, no result)."""
        annotation_id = next(self._ids)
        stamp = self._now()
        result = [{"from_name": "findings", "to_name": "image", "type": "choices", "value": {"choices": findings}}]
        if cannot_tell:
            result.append({"from_name": "cannot_tell", "to_name": "image", "type": "choices",
                           "value": {"choices": list(cannot_tell)}})
        self.tasks[task_id]["annotations"].append({
            "id": annotation_id, "task": task_id, "completed_by": user, "was_cancelled": skip,
            "result": [] if skip else result, "created_at": stamp, "updated_at": stamp, "lead_time": 4.0})
        self.tasks[task_id]["updated_at"] = stamp
        return annotation_id

    def delete_annotation(self, annotation_id: int) -> None:
        for task in self.tasks.values():  # the task's updated_at stays, as in Label Studio
            task["annotations"] = [a for a in task["annotations"] if a["id"] != annotation_id]

    def task_of(self, round_id: int, image_id: str) -> int:
        return next(task_id for task_id, task in self.tasks.items()
                    if task["data"]["round_id"] == round_id and task["data"]["case_id"] == image_id)


def bind_fake(catalog) -> None:
    """Bind the workspace to the fake's project, as `radloop ls init` would."""
    from radloop.labeling.ls_project import ProjectBinding, save_binding

    save_binding(catalog.workspace, ProjectBinding(url=URL, project_id=PROJECT_ID, title="radloop findings",
                                                   config_digest="d", media_url="https://media.test/"))


def use_fake(monkeypatch, fake) -> None:
    """Make rounds talk to ``fake`` (``ls_sync.client_from_env``)."""
    from radloop.labeling import ls_sync

    monkeypatch.setattr(ls_sync, "client_from_env", lambda url, token=None, **options: fake)
