"""Label Studio's ML-backend requests (``/predict``, ``/setup``, webhooks) as typed records.

Split from :mod:`radloop.labeling.ls_adapter`, which re-exports everything here: the backend
(:mod:`radloop.app.backend`) reads request bodies only through these parsers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radloop.labeling.ls_records import AdapterError

__all__ = ["PredictRequest", "PredictTask", "SetupRequest", "WebhookEvent", "parse_predict_request",
           "parse_setup_request", "parse_webhook"]


@dataclass(frozen=True)
class PredictTask:
    """One task of a ``/predict`` request: its id and its data fields."""

    task_id: int | None
    data: dict[str, Any]

    @property
    def case_id(self) -> str | None:
        value = self.data.get("case_id")
        return str(value) if value else None


@dataclass(frozen=True)
class PredictRequest:
    tasks: tuple[PredictTask, ...]
    label_config: str | None
    project: str | None


@dataclass(frozen=True)
class SetupRequest:
    project: str | None
    label_config: str | None
    hostname: str | None
    access_token: str | None = field(repr=False, default=None)


@dataclass(frozen=True)
class WebhookEvent:
    action: str
    project_id: int | None
    task_id: int | None
    annotation_id: int | None


def parse_predict_request(body: Any) -> PredictRequest:
    """Typed ``/predict`` request (``{"tasks": [...], "label_config": ..., "project": ...}``).

    Raises:
        AdapterError: not an object, no ``tasks`` list, a task without a ``data`` object, or a ``label_config``
            that is not text.
    """
    if not isinstance(body, dict):
        raise AdapterError("request body must be a JSON object")
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise AdapterError("'tasks' must be a non-empty list")
    parsed = []
    for index, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise AdapterError(f"tasks[{index}] must be an object with a 'data' object")
        task_id = task.get("id")
        parsed.append(PredictTask(task_id=task_id if isinstance(task_id, int) else None, data=task["data"]))
    project = body.get("project")
    return PredictRequest(tasks=tuple(parsed), label_config=_xml_text(body, "label_config"),
                          project=str(project) if project is not None else None)


def _xml_text(body: dict, key: str) -> str | None:
    """The labelling config under ``key`` (absent or null: None); anything but text is refused, not ignored (an
    ignored config made the backend answer for a project whose controls it never saw)."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise AdapterError(f"{key!r} must be the project's labelling config as XML text, got {type(value).__name__}")
    return value


def parse_setup_request(body: Any) -> SetupRequest:
    """Typed ``/setup`` request (``project``, ``schema``, ``hostname``, ``access_token``).

    Raises:
        AdapterError: not a JSON object, or a ``schema`` that is not text.
    """
    if not isinstance(body, dict):
        raise AdapterError("request body must be a JSON object")
    return SetupRequest(project=str(body["project"]) if body.get("project") is not None else None,
                        label_config=_xml_text(body, "schema"),
                        hostname=body.get("hostname") if isinstance(body.get("hostname"), str) else None,
                        access_token=body.get("access_token") if isinstance(body.get("access_token"), str) else None)


def parse_webhook(body: Any) -> WebhookEvent:
    """Typed webhook event (``{"action": "ANNOTATION_CREATED", "project": {...}, "annotation": {...}}``).

    Raises:
        AdapterError: not an object or no string ``action``.
    """
    if not isinstance(body, dict) or not isinstance(body.get("action"), str) or not body["action"]:
        raise AdapterError("webhook body must be a JSON object with a string 'action'")

    def _id(name: str) -> int | None:
        value = body.get(name)
        value = value.get("id") if isinstance(value, dict) else value
        return value if isinstance(value, int) else None

    return WebhookEvent(action=body["action"], project_id=_id("project"), task_id=_id("task"),
                        annotation_id=_id("annotation"))
