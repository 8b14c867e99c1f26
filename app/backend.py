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
import io
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
    image_fetch_timeout_s: float = 10.0
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


def _fetch_pixels(url: str, host: tuple[str, str | None] | None, timeout: float) -> np.ndarray:
    """Download an image a task points to (Label Studio local files or http) as a uint8 (H, W) array."""
    import httpx
    from PIL import Image as PILImage

    headers = {}
    if url.startswith("/"):
        if host is None:
            raise AdapterError(f"relative image URL {url!r} but Label Studio's hostname is unknown (no /setup)")
        url, token = host[0] + url, host[1]
        if token:
            headers["Authorization"] = f"Token {token}"
    elif not url.startswith(("http://", "https://")):
        raise AdapterError(f"unsupported image URL {url[:80]!r}")
    response = httpx.get(url, headers=headers, timeout=timeout, follow_redirects=True)
    if response.status_code != 200:
        raise AdapterError(f"image URL answered HTTP {response.status_code}")
    with PILImage.open(io.BytesIO(response.content)) as image:
        return np.asarray(image.convert("L"))


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
            raise _http_error(401, "authentication required (basic or bearer)")

    app = FastAPI(title="radloop ML backend", version="1", dependencies=[Depends(authorize)])
    app.state.holder = holder
    app.state.scheduler = scheduler
    app.state.projects = projects

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, error):  # noqa: ANN001
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {error.errors()[:3]}"})

    async def _json(request: Request) -> Any:
        body = await request.body()
        if not body:
            return {}
        import json

        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise _http_error(400, f"request body is not valid JSON: {error}") from None

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
        pixels = _fetch_pixels(url, projects.host(project), settings.image_fetch_timeout_s)
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
        predictor = holder.get()  # one model version for the whole request, even if a swap happens now
        try:
            cases = [_resolve(task, config, predictor, parsed.project) for task in parsed.tasks]
        except AdapterError as error:
            raise _http_error(422, str(error)) from None
        known = [case for case in cases if case is not None]
        records = iter(predictor.predict(known) if known else [])
        results = []
        for case in cases:
            if case is None:
                results.append({"result": [], "score": None, "model_version": predictor.model_version})
                continue
            results.append(prediction_to_ls(next(records), case.geometry, config))
        return {"results": results}

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
