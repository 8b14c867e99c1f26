"""What Label Studio projects tell the ML backend: the state ``/setup`` teaches it per project, and which
requests ask for training (webhook actions, the legacy ``POST /train`` body).

Split from :mod:`radloop.app.backend`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from radloop.labeling.ls_adapter import AdapterError
from radloop.labeling.ls_config import LabelConfigError, ParsedLabelConfig

__all__ = ["MAX_PROJECT_ID_CHARS", "TRAINING_ACTIONS", "check_radloop_labels"]

logger = logging.getLogger("radloop.app.backend")  # `radloop serve-backend` shows this logger's lines

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


def check_radloop_labels(config: ParsedLabelConfig) -> None:
    """Refuse a labelling config none of whose Choices / RectangleLabels labels is a radloop finding: every
    prediction for it would be empty while Label Studio shows the backend as connected.

    Raises:
        LabelConfigError: naming the config's labels and the findings radloop predicts.
    """
    from radloop.core.vocabulary import FINDINGS

    labels = [label for control in (*config.choices, *config.cannot_tell, *config.rectangles)
              for label in control.labels]
    if not any(label in FINDINGS for label in labels):
        shown = ", ".join(dict.fromkeys(labels)) or "none"
        raise LabelConfigError(
            f"the project's labelling config has no radloop finding among its labels ({shown[:200]}): radloop "
            f"predicts {', '.join(FINDINGS)}; use the config `radloop ls init` creates (labels, or their alias, "
            "must be these names)")


class _RefusalLog:
    """Logs the requests the backend refuses (4xx), each (path, status, reason) at most once a minute: Label
    Studio only shows "422 Client Error ... check the ML backend server console logs", so the reason has to be
    there, and a page reload must not flood the console.  Unknown routes and methods (404 / 405: a client
    probing the port) are not logged."""

    MAX_KEYS = 1000

    def __init__(self, interval_s: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, int, str], float] = {}
        self.interval_s = interval_s

    def log(self, request: Any, status: int, detail: str, *, auth: bool = False) -> None:
        if status < 400 or status in (404, 405):
            return  # an unknown route or method is no request of Label Studio's (port scanners, typos)
        path = request.url.path
        now = time.monotonic()
        key = (path, status, detail[:200])
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                return
            if len(self._last) >= self.MAX_KEYS:
                self._last.clear()
            self._last[key] = now
        hint = ""
        if status == 401 and path == "/webhook" and auth:
            hint = (" (Label Studio sends annotation events through the project's webhook, which has no credentials "
                    "when the model was connected in its UI: run `radloop ls connect-backend --backend-url URL "
                    "--auth-user USER`, or add the Authorization header to that webhook in the project's settings)")
        logger.warning("refused %s %s from %s: HTTP %d: %s%s", request.method, path,
                       request.client.host if request.client else "?", status, detail[:500], hint)
