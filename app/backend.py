"""The radloop ML backend for Label Studio 1.23 (FastAPI).

Endpoints (the contract Label Studio calls, see ``label_studio/ml/api_connector.py``):

- ``GET /health`` -> ``{"status": "UP", "model_version": ...}``
- ``POST /setup`` ``{"project", "schema", "hostname", "access_token"}`` -> ``{"model_version": ...}``;
  remembers the project's labelling config and how to fetch images from Label Studio.
- ``POST /predict`` ``{"tasks": [...], "label_config", "project"}`` -> ``{"results": [{"result": [...],
  "score", "model_version"}, ...]}``, one entry per task, choices and boxes with scores for the project's
  control names (parsed from its config).
- ``POST /webhook`` Label Studio events; annotation events and ``START_TRAINING`` schedule fine-tuning in
  the background (debounced), ``POST /train`` (older Label Studio) does the same.
- ``GET /versions`` -> ``{"versions": [...], "model_version": ...}``.

Everything lives in the app built by :func:`create_app` (``app.state``): no module-level mutable state.
Optional auth: HTTP basic (what Label Studio sends when its ML backend uses BASIC_AUTH) or a bearer token.
Malformed requests get 4xx with the reason; Label Studio JSON is read only through
:mod:`radloop.labeling.ls_adapter`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from radloop.app.backend_runtime import (
    CaseInput, CasePredictor, ModelHolder, TrainingScheduler, default_train_function, load_case_predictor,
)
from radloop.core.catalog import Catalog
from radloop.labeling.ls_adapter import (
    AdapterError, ImageGeometry, PredictTask, parse_predict_request, parse_setup_request, parse_webhook,
    prediction_to_ls,
)
from radloop.labeling.ls_config import (
    LabelConfigError, ParsedLabelConfig, build_label_config, parse_label_config,
)

__all__ = ["BackendAuth", "BackendSettings", "create_app"]

logger = logging.getLogger(__name__)

#: Webhook actions that mean "there are new labels" (and the explicit training request).
TRAINING_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED",
                              "ANNOTATIONS_DELETED", "START_TRAINING"})


@dataclass(frozen=True)
class BackendAuth:
    """Credentials the backend requires (none configured: open).  Secrets are hidden from ``repr``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return bool((self.username and self.password) or self.bearer_token)

    def check(self, header: str | None) -> bool:
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.bearer_token:
            return secrets.compare_digest(value.strip().encode(), self.bearer_token.encode())
        if scheme.lower() == "basic" and self.username and self.password:
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return (secrets.compare_digest(user.encode(), self.username.encode())
                    and secrets.compare_digest(password.encode(), self.password.encode()))
        return False


@dataclass(frozen=True)
class BackendSettings:
    """Backend configuration (from the CLI; secrets only via :class:`BackendAuth`)."""

    task: str = "findings"
    debounce_s: float = 30.0
    max_tasks: int = 64
    image_fetch_timeout_s: float = 10.0  # whole download of one image, not per read
    max_image_bytes: int = 256 * 1024 * 1024  # a larger image reply is refused while it downloads
    max_body_bytes: int = 32 * 1024 * 1024  # request bodies (Label Studio sends at most max_tasks tasks)
    train_config: str | None = None  # fine-tuning job config run in the background (None: record only)
    auth: BackendAuth = BackendAuth()


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


def _http_error(status: int, reason: str) -> HTTPException:
    return HTTPException(status_code=status, detail=reason)


def _fetch_pixels(url: str, host: tuple[str, str | None] | None, timeout: float,
                  max_bytes: int = 256 * 1024 * 1024) -> np.ndarray:
    """Download an image a task points to (Label Studio local files or http) as a uint8 (H, W) array.

    The whole download must finish within ``timeout`` seconds and stay under ``max_bytes``; every network or
    decoding failure is an :class:`AdapterError` naming the cause.
    """
    import time

    import httpx

    headers = {}
    if url.startswith("/"):
        if host is None:
            raise AdapterError(f"relative image URL {url!r} but Label Studio's hostname is unknown (no /setup)")
        url, token = host[0] + url, host[1]
        if token:
            headers["Authorization"] = f"Token {token}"
    elif not url.startswith(("http://", "https://")):
        raise AdapterError(f"unsupported image URL {url[:80]!r}")
    deadline = time.monotonic() + timeout
    body = bytearray()
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise AdapterError(f"image URL answered HTTP {response.status_code}")
            if int(response.headers.get("content-length") or 0) > max_bytes:
                raise AdapterError(f"image is larger than {max_bytes // 2**20} MiB")
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise AdapterError(f"image is larger than {max_bytes // 2**20} MiB")
                if time.monotonic() > deadline:
                    raise AdapterError(f"image download took longer than {timeout:g} s")
    except httpx.TimeoutException:
        raise AdapterError(f"image URL did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
        raise AdapterError(f"image URL could not be fetched: {type(error).__name__}: {error}") from None
    from radloop.core.render import decode_upload

    try:
        return decode_upload(bytes(body))
    except ValueError as error:
        raise AdapterError(f"image URL did not return a PNG/JPEG image: {error}") from None


def create_app(catalog: Catalog | None, *, settings: BackendSettings | None = None,
               predictor_loader: Callable[[], CasePredictor] | None = None,
               train_function: Callable[[list], Any] | None = None):
    """Build the FastAPI app.

    Args:
        catalog: the workspace catalog (cases, renders, weak labels, model registry); None: images only by URL.
        predictor_loader: returns the current :class:`CasePredictor` (default: registry's current model).
        train_function: called in the background with the gathered training requests (default:
            :func:`radloop.app.backend_runtime.default_train_function` with ``settings.train_config``).
    """
    settings = settings or BackendSettings()
    loader = predictor_loader or (lambda: load_case_predictor(catalog, settings.task))
    holder = ModelHolder(loader)
    train_function = train_function or default_train_function(catalog, settings.train_config)
    scheduler = TrainingScheduler(train_function, on_trained=holder.reload,
                                  debounce_s=settings.debounce_s)
    projects = _ProjectState()
    default_config = parse_label_config(build_label_config())

    def authorize(request: Request) -> None:
        if not settings.auth.check(request.headers.get("authorization")):
            scheme = "Bearer" if settings.auth.bearer_token else "Basic"
            raise HTTPException(status_code=401, detail="authentication required (basic or bearer)",
                                headers={"WWW-Authenticate": f'{scheme} realm="radloop"'})

    # with auth on, the generated API docs (not covered by the dependency) are switched off
    docs = {} if not settings.auth.enabled else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="radloop ML backend", version="1", dependencies=[Depends(authorize)], **docs)
    app.state.holder = holder
    app.state.scheduler = scheduler
    app.state.projects = projects

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, error):  # noqa: ANN001
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {error.errors()[:3]}"})

    async def _json(request: Request) -> Any:
        too_large = _http_error(413, f"request body is larger than {settings.max_body_bytes // 2**20} MiB")
        try:
            if int(request.headers.get("content-length") or 0) > settings.max_body_bytes:
                raise too_large
        except ValueError:
            raise _http_error(400, "invalid Content-Length header") from None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                raise too_large
        if not body:
            return {}
        import json

        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise _http_error(400, f"request body is not valid JSON: {error}") from None
        except RecursionError:
            raise _http_error(400, "request body is not valid JSON: nested too deeply") from None

    @app.get("/health")
    def health() -> dict:
        current = holder.get()
        return {"status": "UP", "model_class": current.kind, "model_version": current.model_version}

    @app.post("/setup")
    async def setup(request: Request) -> dict:
        try:
            parsed = parse_setup_request(await _json(request))
            config = parse_label_config(parsed.label_config) if parsed.label_config else None
        except (AdapterError, LabelConfigError) as error:
            raise _http_error(422, str(error)) from None
        projects.remember(parsed.project or "", config, parsed.hostname, parsed.access_token)
        return {"model_version": holder.get().model_version}

    def _resolve(task: PredictTask, config: ParsedLabelConfig, predictor: CasePredictor,
                 project: str | None) -> CaseInput | None:
        if task.case_id:
            case = predictor.lookup(task.case_id)
            if case is not None:
                return case
        url = task.data.get(config.image_value)
        if not isinstance(url, str) or not url:
            if task.case_id:
                return None  # a case unknown to this catalog: answered with an empty prediction
            raise AdapterError(f"task {task.task_id} has neither a known case_id nor an image URL "
                               f"in data[{config.image_value!r}]")
        pixels = _fetch_pixels(url, projects.host(project), settings.image_fetch_timeout_s, settings.max_image_bytes)
        height, width = pixels.shape[:2]
        return CaseInput(case_id=task.case_id, geometry=ImageGeometry(width, height, width, height), pixels=pixels)

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        body = await _json(request)
        try:
            parsed = parse_predict_request(body)
            if len(parsed.tasks) > settings.max_tasks:
                raise AdapterError(f"at most {settings.max_tasks} tasks per request, got {len(parsed.tasks)}")
            config = (parse_label_config(parsed.label_config) if parsed.label_config
                      else projects.config(parsed.project) or default_config)
        except (AdapterError, LabelConfigError) as error:
            raise _http_error(422, str(error)) from None
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_predict_sync, parsed, config)

    def _predict_sync(parsed, config: ParsedLabelConfig) -> dict:
        """One result per task. A task that cannot be answered (its image cannot be fetched or read) gets an
        empty prediction and a logged warning, so one bad task never costs the batch its predictions; when no
        task can be answered the request fails with 422 and the reasons."""
        predictor = holder.get()  # one model version for the whole request, even if a swap happens now
        cases: list[CaseInput | None] = []
        failures: dict[int, str] = {}
        for index, task in enumerate(parsed.tasks):
            try:
                cases.append(_resolve(task, config, predictor, parsed.project))
            except AdapterError as error:
                cases.append(None)
                failures[index] = str(error)
        predictions = _predict_each(predictor, cases, failures, parsed.tasks)
        if failures and len(failures) == len(parsed.tasks):
            raise _http_error(422, "; ".join(list(dict.fromkeys(failures.values()))[:3]))
        for index, reason in failures.items():
            logger.warning("predict: task %s answered empty: %s", parsed.tasks[index].task_id, reason)
        empty = {"result": [], "score": None, "model_version": predictor.model_version}
        return {"results": [prediction_to_ls(predictions[index], case.geometry, config) if index in predictions
                            else dict(empty) for index, case in enumerate(cases)]}

    def _predict_each(predictor: CasePredictor, cases: list, failures: dict[int, str], tasks) -> dict:
        """Predictions by task index: the answerable cases in one batch; if the batch fails (e.g. a catalog
        render went missing), case by case so that only the broken ones go without."""
        indices = [index for index, case in enumerate(cases) if case is not None]
        if not indices:
            return {}
        try:
            return dict(zip(indices, predictor.predict([cases[index] for index in indices])))
        except (OSError, ValueError) as error:  # UnreadableImage is an OSError
            if len(indices) == 1:
                failures[indices[0]] = f"task {tasks[indices[0]].task_id}: {error}"
                return {}
        answered = {}
        for index in indices:
            try:
                answered[index] = predictor.predict([cases[index]])[0]
            except (OSError, ValueError) as error:
                failures[index] = f"task {tasks[index].task_id}: {error}"
        return answered

    @app.post("/webhook")
    async def webhook(request: Request) -> dict:
        try:
            event = parse_webhook(await _json(request))
        except AdapterError as error:
            raise _http_error(422, str(error)) from None
        if event.action not in TRAINING_ACTIONS:
            return {"status": "ignored", "action": event.action}
        scheduled = scheduler.request(event.action, str(event.project_id) if event.project_id else None)
        return {"status": "scheduled", "action": event.action, **scheduled}

    @app.post("/train")
    async def train(request: Request) -> dict:
        body = await _json(request)
        project = body.get("project") if isinstance(body, dict) else None
        return {"status": "scheduled", **scheduler.request("train", str(project) if project else None)}

    @app.get("/versions")
    def versions() -> dict:
        current = holder.get().model_version
        found = [current]
        if catalog is not None:
            try:
                from radloop.core.registry import list_models

                found += [record.version for record in list_models(catalog, task=settings.task)]
            except ImportError:
                pass
        return {"versions": sorted(set(found)), "model_version": current}

    @app.get("/training")
    def training() -> dict:
        return scheduler.status()

    @app.on_event("shutdown")
    def _shutdown() -> None:
        scheduler.close()

    return app
