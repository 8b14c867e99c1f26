"""A thin wrapper around label-studio-sdk 2.x: retries with back-off and errors that say what to do.

Idempotent requests (reads, project/storage updates, deletes) are retried with exponential back-off on
connection errors and timeouts, HTTP 408, 429, 502, 503 and 504 (waiting as long as a ``Retry-After``
header in seconds asks, capped), and HTTP 500 once only: Label Studio also answers 500 for its own bugs,
which no retry cures.  Other statuses (4xx, 501, 505 ...) fail at once.  Requests that are not idempotent
(creating projects, annotations, ML backends; task import) are never retried: a lost response may hide a
success, so :mod:`radloop.labeling.ls_sync` reconciles by listing the project's tasks before importing
again (no duplicates).  The API token is kept only in memory: it never appears in messages, ``repr`` or logs.

The errors, the token's environment variables and the retry rules live in :mod:`radloop.labeling.ls_client_errors`,
the ML-backend calls in :mod:`radloop.labeling.ls_client_ml`; every name stays importable from here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from radloop.labeling.ls_client_errors import (  # noqa: F401 - TOKEN_ENV_VARS is re-exported
    RETRY_STATUSES, SERVER_ERROR_RETRIES, TOKEN_ENV_VARS, AuthenticationError, LabelStudioError, ProjectNotFoundError,
    ServerUnavailableError, TaskNotFoundError, _retry_after, _status, _unreachable, token_from_env,
)
from radloop.labeling.ls_client_ml import MLBackendCalls

__all__ = [
    "AuthenticationError", "LabelStudioClient", "LabelStudioError", "ProjectNotFoundError",
    "ServerUnavailableError", "TaskNotFoundError", "token_from_env",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LabelStudioClient(MLBackendCalls):
    """Label Studio operations radloop needs, on top of ``label_studio_sdk.LabelStudio``.

    Args:
        url: server URL, e.g. ``http://127.0.0.1:8080``.
        token: API token (legacy token or personal access token); never logged.
        retries: extra attempts for idempotent requests; backoff: first wait in seconds (doubles).
        max_retry_after: the longest wait in seconds a server's ``Retry-After`` header gets.
        timeout: per-request timeout in seconds.
        sleep: injectable for tests.
        transport: an ``httpx`` transport to send requests through (tests: ``httpx.MockTransport``).
    """

    def __init__(self, url: str, token: str, *, retries: int = 4, backoff: float = 0.5,
                 max_retry_after: float = 60.0, timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, transport: Any = None) -> None:
        if not url or not url.startswith(("http://", "https://")):
            raise LabelStudioError(f"Label Studio URL must start with http:// or https://, got {url!r}")
        if not token:
            raise AuthenticationError(
                "no Label Studio API token: set LABEL_STUDIO_API_KEY (or RADLOOP_LS_TOKEN), or pass --token where "
                "the command has it (ls init, ls connect-backend, round push / pull)")
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        # retries are ours (below): the SDK would also retry a lost POST response, duplicating imported tasks
        extra: dict[str, Any] = {}
        if transport is not None:
            import httpx

            extra["httpx_client"] = httpx.Client(transport=transport, timeout=timeout, follow_redirects=True)
        self._sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout, max_retries=0, **extra)

    def __repr__(self) -> str:
        return f"LabelStudioClient(url={self.url!r})"

    @property
    def sdk(self):
        """The underlying ``LabelStudio`` SDK client (for calls this wrapper does not cover)."""
        return self._sdk

    # ------------------------------------------------------------------------------------------ core
    def call(self, what: str, function: Callable[[], T], *, idempotent: bool = True, project_id: int | None = None,
             task_id: int | None = None) -> T:
        """Run one SDK call with retries (when idempotent) and translate its errors.

        An idempotent call is retried (up to ``retries`` times) on network errors and timeouts, on HTTP 408,
        429, 502, 503 and 504, and once on HTTP 500; it waits ``backoff`` seconds, doubling, or what a
        ``Retry-After`` header says (at most ``max_retry_after``).  A call that is not idempotent runs once:
        its request may have reached the server.

        Raises:
            AuthenticationError, ServerUnavailableError, ProjectNotFoundError, TaskNotFoundError,
            LabelStudioError: with ``what`` and the server's reason in the message.
        """
        from label_studio_sdk.core.api_error import ApiError

        attempts = 1 + (self.retries if idempotent else 0)
        server_errors = 0
        for attempt in range(attempts):
            try:
                return function()
            except Exception as error:  # translated below; the SDK raises ApiError or httpx errors
                status = _status(error)
                if status == 500:
                    server_errors += 1
                retry = _unreachable(error) or status in RETRY_STATUSES or (
                    status == 500 and server_errors <= SERVER_ERROR_RETRIES)
                if retry and attempt + 1 < attempts:
                    wait = self.backoff * (2 ** attempt)
                    asked = _retry_after(error)
                    if asked is not None:
                        wait = min(asked, self.max_retry_after)
                    logger.warning("Label Studio: could not %s (%s); retry %d/%d in %.1f s", what,
                                   f"HTTP {status}" if status else type(error).__name__, attempt + 1,
                                   attempts - 1, wait)
                    self._sleep(wait)
                    continue
                if isinstance(error, ApiError):
                    raise self._api_error(what, error, project_id, task_id) from None
                if _unreachable(error):
                    raise ServerUnavailableError(
                        f"Label Studio at {self.url} is unreachable ({type(error).__name__}: {error}) while "
                        f"trying to {what}, after {attempts} attempt(s); is the server running? Re-run the "
                        f"command when it is back: nothing is lost and nothing is duplicated") from None
                raise
        raise AssertionError("unreachable")

    def _api_error(self, what: str, error, project_id: int | None, task_id: int | None) -> LabelStudioError:
        status = error.status_code
        body = error.body
        if isinstance(body, dict):  # Label Studio: {"detail": "Validation error", "validation_errors": {...}}
            parts = [body.get("detail"), body.get("validation_errors")]
            detail = ": ".join(part if isinstance(part, str) else json.dumps(part) for part in parts if part) or body
        else:
            detail = body
        detail = json.dumps(detail)[:300] if not isinstance(detail, str) else detail[:300]
        if status == 401 or (status == 403 and any(word in detail.lower() for word in ("token", "credential",
                                                                                      "authenticat"))):
            return AuthenticationError(
                f"Label Studio at {self.url} rejected the API token (HTTP {status}) while trying to {what}: "
                "check --token / LABEL_STUDIO_API_KEY (Account & Settings > Access Token); a legacy token "
                "also needs the server's LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true")
        if status == 404 and task_id is not None:
            return TaskNotFoundError(f"Label Studio task {task_id} was not found at {self.url} "
                                     f"(deleted in Label Studio?) while trying to {what}")
        if status == 404 and project_id is not None:
            return ProjectNotFoundError(
                f"Label Studio project {project_id} was not found at {self.url} (deleted?) while trying to "
                f"{what}: run `radloop ls init` to create it again; annotations already pulled stay in the catalog")
        return LabelStudioError(f"Label Studio refused to {what} (HTTP {status}): {detail}")

    # -------------------------------------------------------------------------------------- account
    def whoami(self) -> dict:
        """The token's user (checks URL and token)."""
        user = self.call("check the API token", lambda: self._sdk.users.whoami())
        return {"id": user.id, "email": user.email}

    def user_emails(self) -> dict[int, str]:
        users = self.call("list users", lambda: list(self._sdk.users.list()))
        return {user.id: user.email for user in users if getattr(user, "id", None) is not None}

    # ------------------------------------------------------------------------------------- projects
    def find_project(self, title: str) -> int | None:
        """Id of the (first) project titled ``title``, or None."""
        projects = self.call("list projects", lambda: list(self._sdk.projects.list(title=title)))
        matching = sorted(project.id for project in projects if project.title == title)
        return matching[0] if matching else None

    def get_project(self, project_id: int) -> dict:
        project = self.call(f"read project {project_id}", lambda: self._sdk.projects.get(id=project_id),
                            project_id=project_id)
        total, skipped = project.total_annotations_number, project.skipped_annotations_number
        # Label Studio 1.23.2 counts skipped annotations apart from total_annotations_number (checked live)
        annotations = None if total is None else total + (skipped or 0)
        return {"id": project.id, "title": project.title, "label_config": project.label_config or "",
                "task_number": project.task_number, "annotation_number": annotations}

    def create_project(self, title: str, label_config: str, description: str = "") -> int:
        project = self.call(f"create project {title!r}", lambda: self._sdk.projects.create(
            title=title, label_config=label_config, description=description, show_skip_button=True,
            enable_empty_annotation=True, sampling="Sequential sampling"), idempotent=False)
        return project.id

    def update_project(self, project_id: int, **fields: Any) -> None:
        self.call(f"update project {project_id}", lambda: self._sdk.projects.update(id=project_id, **fields),
                  project_id=project_id)

    def delete_project(self, project_id: int) -> None:
        self.call(f"delete project {project_id}", lambda: self._sdk.projects.delete(id=project_id),
                  project_id=project_id)

    def ensure_local_storage(self, project_id: int, path: str, title: str = "radloop renders") -> int:
        """Local-files import storage for ``path`` (needed before tasks can reference its files)."""
        storages = self.call("list local storages",
                             lambda: list(self._sdk.import_storage.local.list(project=project_id)),
                             project_id=project_id)
        for storage in storages:
            if storage.path == path:
                return storage.id
        try:  # not retried (a second POST would make a second storage): a lost response is found by listing
            storage = self.call("create local-files storage", lambda: self._sdk.import_storage.local.create(
                project=project_id, path=path, title=title, use_blob_urls=False), idempotent=False,
                project_id=project_id)
        except AuthenticationError:
            raise
        except LabelStudioError:  # a lost response (timeout, 502 from a proxy) may hide a created storage
            storages = self.call("list local storages",
                                 lambda: list(self._sdk.import_storage.local.list(project=project_id)),
                                 project_id=project_id)
            found = next((storage.id for storage in storages if storage.path == path), None)
            if found is None:
                raise
            return found
        return storage.id

    def list_storages(self, project_id: int) -> list[dict]:
        """The project's import and export storages of every type, as ``{"direction", "type", "id"}`` dicts
        (``type``: Label Studio's name, e.g. ``localfiles``, ``s3``); the SDK does not wrap these lists.

        Each type is listed on its own endpoint: Label Studio's all-types list answers ``[]`` for a type whose
        listing fails, which would read as "no storage"; here such a failure is raised.
        """
        import functools

        from label_studio_sdk.core.api_error import ApiError

        def _get(path: str) -> list[dict]:
            response = self._sdk._client_wrapper.httpx_client.request(path, method="GET",
                                                                      params={"project": project_id})
            if response.status_code >= 400:  # as the SDK's own calls do, so that `call` retries and translates it
                raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=response.text)
            return response.json()

        storages = []
        for direction, prefix in (("import", "api/storages/"), ("export", "api/storages/export/")):
            types = self.call(f"list the {direction} storage types", functools.partial(_get, f"{prefix}types"))
            for name in [str(kind["name"]) for kind in types]:
                path = f"{prefix}{name}/" if direction == "import" else f"{prefix}{name}"  # Label Studio's routes
                storages += [{"direction": direction, "type": name, "id": item.get("id")} for item in self.call(
                    f"list the {direction} {name} storages of project {project_id}", functools.partial(_get, path),
                    project_id=project_id)]
        return storages

    def local_file_status(self, relative: str) -> int:
        """HTTP status of ``/data/local-files/?d=<relative>`` (200 served, 404 not under the server's document
        root or a storage, 403 local-files serving disabled): what an annotator's browser would get."""
        return self.call("read a local file", lambda: self._sdk._client_wrapper.httpx_client.request(
            "data/local-files/", method="GET", params={"d": relative})).status_code

    # ---------------------------------------------------------------------------------------- tasks
    def update_task_data(self, task_id: int, data: dict) -> None:
        self.call(f"update task {task_id}", lambda: self._sdk.tasks.update(id=task_id, data=data), task_id=task_id)

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import tasks (with predictions) in one request; returns the new task ids.  Not retried."""
        response = self.call(
            f"import {len(tasks)} task(s) into project {project_id}",
            lambda: self._sdk.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True,
                                                    request_options={"max_retries": 0}),
            idempotent=False, project_id=project_id)
        return list(response.task_ids or [])

    def iter_tasks(self, project_id: int, *, round_id: int | None = None, updated_after: str | None = None,
                   with_annotations: bool = True, page_size: int = 100) -> list[dict]:
        """All tasks of a project as raw dicts (with annotations: ``fields=all``), optionally filtered.

        Args:
            round_id: only tasks whose ``data.round_id`` equals it.
            updated_after: ISO timestamp; only tasks updated after it (incremental pull).
        """
        items = []
        if round_id is not None:
            items.append({"filter": "filter:tasks:data.round_id", "operator": "equal", "type": "Number",
                          "value": round_id})
        if updated_after:
            items.append({"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
                          "value": updated_after})
        query = json.dumps({"filters": {"conjunction": "and", "items": items}}) if items else None

        def _list() -> list[dict]:
            pager = self._sdk.tasks.list(project=project_id, fields="all" if with_annotations else "task_only",
                                         query=query, page_size=page_size)
            return [task.model_dump(mode="json", by_alias=True) for task in pager]

        return self.call(f"list tasks of project {project_id}", _list, project_id=project_id)

    def get_task(self, task_id: int) -> dict:
        task = self.call(f"read task {task_id}", lambda: self._sdk.tasks.get(id=task_id), task_id=task_id)
        return task.model_dump(mode="json", by_alias=True)

    def delete_task(self, task_id: int) -> None:
        self.call(f"delete task {task_id}", lambda: self._sdk.tasks.delete(id=task_id), task_id=task_id)

    def create_annotation(self, task_id: int, result: list[dict], *, was_cancelled: bool = False) -> int:
        """Submit an annotation as the token's user would in the UI (used by tests and scripts)."""
        annotation = self.call(f"annotate task {task_id}", lambda: self._sdk.annotations.create(
            id=task_id, result=result, was_cancelled=was_cancelled), idempotent=False, task_id=task_id)
        return annotation.id

    def update_annotation(self, annotation_id: int, result: list[dict]) -> None:
        self.call(f"update annotation {annotation_id}",
                  lambda: self._sdk.annotations.update(id=annotation_id, result=result))


def iter_chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
