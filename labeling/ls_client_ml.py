"""The ML-backend calls of :class:`radloop.labeling.ls_client.LabelStudioClient`: connect the radloop backend,
give its webhook the backend's credentials, start training, retrieve predictions.

A mixin: it uses the client's ``call`` (retries, error translation) and ``_sdk``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MLBackendCalls"]


class MLBackendCalls:
    """Label Studio ML-backend operations; mixed into ``LabelStudioClient``."""

    def ensure_ml_backend(self, project_id: int, url: str, *, title: str = "radloop",
                          basic_auth: tuple[str, str] | None = None, timeout: float = 30.0) -> int:
        """Connect (or update) the radloop ML backend; Label Studio checks ``/health`` and ``/setup`` on save."""
        auth: dict[str, Any] = {"auth_method": "NONE"}
        if basic_auth:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        backends = self.call("list ML backends", lambda: list(self._sdk.ml.list(project=project_id)),
                             project_id=project_id)
        backend_id = None
        for backend in backends:
            if backend.url.rstrip("/") == url.rstrip("/"):
                # Label Studio 1.23 re-validates the backend on PATCH with the request's fields only: without
                # ``project`` its /setup check fails (HTTP 500, "setup_() missing ... 'project'")
                self.call("update ML backend", lambda: self._sdk.ml.update(
                    id=backend.id, project=project_id, url=url, title=title, is_interactive=False,
                    timeout=timeout, **auth))
                backend_id = backend.id
        if backend_id is None:
            backend_id = self.call("connect the ML backend", lambda: self._sdk.ml.create(
                project=project_id, url=url, title=title, is_interactive=False, timeout=timeout, **auth),
                idempotent=False, project_id=project_id).id
        self._authorize_backend_webhook(project_id, url, basic_auth)
        return backend_id

    def _authorize_backend_webhook(self, project_id: int, url: str, basic_auth: tuple[str, str] | None) -> None:
        """Give the webhook Label Studio created for the backend the backend's credentials.

        Label Studio sends START_TRAINING with the backend's basic auth, but annotation events go through
        a plain project webhook without credentials; without this they would be refused by an
        authenticated backend.
        """
        import base64

        target = url.rstrip("/") + "/webhook"
        headers = {}
        if basic_auth:
            encoded = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            headers = {"Authorization": f"Basic {encoded}"}
        hooks = self.call("list webhooks", lambda: list(self._sdk.webhooks.list(project=str(project_id))),
                          project_id=project_id)
        for hook in hooks:
            if hook.url.rstrip("/") == target and (hook.headers or {}) != headers:
                self.call("set the backend webhook's credentials",
                          lambda: self._sdk.webhooks.update(id=hook.id, url=hook.url, headers=headers))

    def train(self, backend_id: int) -> None:
        """Ask Label Studio to send START_TRAINING to the backend."""
        self.call("start training", lambda: self._sdk.ml.train(id=backend_id), idempotent=False)

    def retrieve_predictions(self, project_id: int) -> None:
        """Ask Label Studio to fetch predictions for all the project's tasks from its ML backend.

        (The Data Manager action "Retrieve predictions": Label Studio then calls the backend's ``/predict``.)
        """
        self.call("retrieve predictions from the ML backend", lambda: self._sdk.actions.create(
            id="retrieve_tasks_predictions", project=project_id, selected_items={"all": True, "excluded": []}),
            idempotent=False, project_id=project_id)
