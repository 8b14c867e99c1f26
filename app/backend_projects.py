"""What Label Studio projects tell the ML backend: the state ``/setup`` teaches it per project, and which
requests ask for training (webhook actions, the legacy ``POST /train`` body).

Split from :mod:`radloop.app.backend`.
"""

from __future__ import annotations

import threading
from typing import Any

from radloop.labeling.ls_adapter import AdapterError
from radloop.labeling.ls_config import ParsedLabelConfig

__all__ = ["MAX_PROJECT_ID_CHARS", "TRAINING_ACTIONS"]

#: Webhook actions that mean "there are new labels" (and the explicit training request).
TRAINING_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED",
                              "ANNOTATIONS_DELETED", "START_TRAINING"})
#: Longest project id accepted by ``/train`` (Label Studio sends ``"<id>.<created timestamp>"``).
MAX_PROJECT_ID_CHARS = 100


class _ProjectState:
    """Per-project state learned from ``/setup`` (config, where to fetch images)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configs: dict[str, ParsedLabelConfig] = {}
        self._hosts: dict[str, tuple[str, str | None]] = {}

    def remember(self, project: str, config: ParsedLabelConfig | None, hostname: str | None,
                 token: str | None) -> None:
        with self._lock:
            if config is not None:
                self._configs[project] = config
            if hostname:
                self._hosts[project] = (hostname.rstrip("/"), token)

    def config(self, project: str | None) -> ParsedLabelConfig | None:
        with self._lock:
            return self._configs.get(project or "")

    def host(self, project: str | None) -> tuple[str, str | None] | None:
        with self._lock:
            return self._hosts.get(project or "")

    def token(self, project_id: int) -> str | None:
        """The token /setup sent for Label Studio project ``project_id`` (/setup names it ``"<id>.<created>"``)."""
        with self._lock:
            return next((token for project, (_host, token) in self._hosts.items()
                         if token and project.split(".", 1)[0] == str(project_id)), None)


def _parse_train_request(body: Any) -> str:
    """The project of a legacy ``POST /train`` body (``MLApi.train`` in Label Studio's ``ml/api_connector.py``:
    ``{"project": "<id>.<timestamp>", "annotations": [task, ...], "label_config": "<View>...", "params": {}}``).
    Other keys are ignored, as Label Studio's own ML backend does.

    Raises:
        AdapterError: not an object, no usable ``project``, or a known key of the wrong type.
    """
    if not isinstance(body, dict):
        raise AdapterError("train body must be a JSON object {'project', 'annotations', 'label_config', 'params'}")
    project = body.get("project")
    if isinstance(project, bool) or not isinstance(project, (str, int)) or not str(project).strip():
        raise AdapterError("train body needs 'project': Label Studio's project id (a string or an integer)")
    if len(str(project)) > MAX_PROJECT_ID_CHARS:
        raise AdapterError(f"train body 'project' is longer than {MAX_PROJECT_ID_CHARS} characters")
    annotations = body.get("annotations", [])
    if not isinstance(annotations, list) or not all(isinstance(task, dict) for task in annotations):
        raise AdapterError("train body 'annotations' must be a list of task objects")
    if not isinstance(body.get("label_config", ""), (str, type(None))):
        raise AdapterError("train body 'label_config' must be a string")
    if not isinstance(body.get("params", {}), (dict, type(None))):
        raise AdapterError("train body 'params' must be an object")
    return str(project)
