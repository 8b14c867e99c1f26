"""The radloop ML backend for Label Studio 1.23 (FastAPI).

Endpoints (the contract Label Studio calls, see ``label_studio/ml/api_connector.py``):

- ``GET /health`` -> ``{"status": "UP", "model_class", "model_version", "last_training"}``: the model being
  served (when the registry's current model changed and loading it takes longer than Label Studio's 1-s /
  3-s timeouts of /health and /setup allow, they answer with the model in place while it loads) and the newest training run in brief
  (``{"status": "failed", "error": ...}`` when it failed; None before the first).
- ``POST /setup`` ``{"project", "schema", "hostname", "access_token"}`` -> ``{"model_version": ...}``;
  remembers the project's labelling config and how to fetch images from Label Studio; 422 for a config
  without any radloop finding among its labels.
- ``POST /predict`` ``{"tasks": [...], "label_config", "project"}`` -> ``{"results": [{"result": [...],
  "score", "model_version"}, ...]}``, one entry per task, choices and boxes with scores for the project's
  control names (parsed from its config); ``[]`` (no prediction: Label Studio stores none and asks again) for a
  task that cannot be answered now or is beyond ``max_tasks`` / ``predict_budget_s``.

Refused requests (4xx) are logged with the reason: Label Studio's UI only shows the status code.
- ``POST /webhook`` Label Studio events; annotation events and ``START_TRAINING`` schedule fine-tuning in
  the background (debounced), other actions are acknowledged and ignored; ``POST /train`` (older Label
  Studio: ``{"project", "annotations", "label_config", "params"}``) does the same.  A run first pulls the
  bound project's new annotations into the catalog with ``settings.label_studio_token``, else the token
  ``/setup`` sent; without one it trains on the catalog's labels and says so in ``/training``.
- ``GET /versions`` -> ``{"versions": [...], "model_version": ...}``; ``GET /training`` -> the runs.

Images of tasks that are not catalog cases are downloaded under a :class:`FetchPolicy`: by default only from
the Label Studio URL (``settings.label_studio_url``, else the workspace's ``ls init`` binding), where
relative ``/data/...`` URLs are resolved with the token from ``/setup``; other hosts only by explicit prefix.

Everything lives in the app built by :func:`create_app` (``app.state``): no module-level mutable state.
Optional auth: HTTP basic (what Label Studio sends when its ML backend uses BASIC_AUTH) or a bearer token.
Malformed requests get 4xx with the reason; Label Studio JSON is read only through
:mod:`radloop.labeling.ls_adapter`.

The app's parts live beside it: settings and auth in :mod:`radloop.app.backend_settings`, what ``/setup`` and
the training requests say per project in :mod:`radloop.app.backend_projects`, the served model in
:mod:`radloop.app.backend_runtime`, background training in :mod:`radloop.app.backend_training`, image
downloads in :mod:`radloop.app.backend_fetch`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from radloop.app.backend_fetch import FetchPolicy, fetch_image
from radloop.app.backend_projects import (
    MAX_PROJECT_ID_CHARS, TRAINING_ACTIONS, _parse_train_request, _ProjectState, _RefusalLog, check_radloop_labels,
)
from radloop.app.backend_runtime import (
    CaseInput, CasePredictor, ModelHolder, TrainingScheduler, annotation_puller, default_train_function,
    load_case_predictor, registry_state,
)
from radloop.app.backend_settings import BackendAuth, BackendSettings
from radloop.core.catalog import Catalog
from radloop.labeling.ls_adapter import (
    AdapterError, ImageGeometry, PredictionRecord, PredictTask, parse_predict_request, parse_setup_request,
    parse_webhook, prediction_to_ls,
)
from radloop.labeling.ls_config import (
    LabelConfigError, ParsedLabelConfig, build_label_config, parse_label_config,
)

__all__ = ["BackendAuth", "BackendSettings", "FetchPolicy", "create_app"]

logger = logging.getLogger(__name__)


#: A JSON ``\\uXXXX`` escape of a UTF-16 surrogate: only a body holding one can decode to a string with an unpaired
#: surrogate, which Python's json accepts but no UTF-8 consumer (SQLite, the XML parser) can take.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _http_error(status: int, reason: str) -> HTTPException:
    return HTTPException(status_code=status, detail=reason)


def _label_studio_url(settings: BackendSettings, catalog: Catalog | None) -> str | None:
    """The Label Studio URL images are fetched from: the setting, else the workspace's ``ls init`` binding, else
    ``$LABEL_STUDIO_URL`` (:func:`radloop.labeling.ls_project.label_studio_url`)."""
    if settings.label_studio_url or catalog is None:
        return settings.label_studio_url
    from radloop.labeling.ls_project import label_studio_url

    try:
        return label_studio_url(catalog.workspace)[0]
    except ValueError as error:  # a damaged binding: say so, fetch from nowhere by default
        logger.warning("the workspace's Label Studio binding is unreadable (%s): rerun `radloop ls init`", error)
        return None


def _shown_in(prediction: PredictionRecord, config: ParsedLabelConfig, draws_boxes: bool) -> bool:
    """Whether the project's controls (the first Choices, "Cannot tell" and RectangleLabels ones, which
    :func:`prediction_to_ls` fills) show an opinion of this prediction.  One they cannot show (a classifier's
    findings in a boxes-only project, a fracture model in a chest project) is no prediction (``[]``), not an empty
    one: Label Studio would store that as "none present", with the model's score, and never ask again."""
    boxes = set(config.rectangles[0].labels) if config.rectangles else set()
    if any(box.label in boxes for box in prediction.boxes):
        return True
    labels = {label for control in (*config.choices[:1], *config.cannot_tell[:1]) for label in control.labels}
    if draws_boxes:  # a detector's "no box" for a label it boxes is an answer
        labels |= boxes
    return any(name in labels for name in (*prediction.choices, *prediction.uncertain))


def create_app(catalog: Catalog | None, *, settings: BackendSettings | None = None,
               predictor_loader: Callable[[], CasePredictor] | None = None,
               train_function: Callable[[list], Any] | None = None,
               connect_label_studio: Callable[[str, str], Any] | None = None):
    """Build the FastAPI app.

    Args:
        catalog: the workspace catalog (cases, renders, weak labels, model registry); None: images only by URL.
        settings: see :class:`BackendSettings`; the Label Studio URL (setting or binding) is read once, here.
        predictor_loader: returns the current :class:`CasePredictor` (default: registry's current model); it is
            called again whenever the registry's current model changes.
        train_function: called in the background with the gathered training requests (default:
            :func:`radloop.app.backend_runtime.default_train_function` with ``settings.train_config``, after
            pulling Label Studio's new annotations).
        connect_label_studio: builds the Label Studio client for that pull from (url, token) (default:
            :class:`radloop.labeling.ls_client.LabelStudioClient`).
    """
    settings = settings or BackendSettings()
    label_studio_url = _label_studio_url(settings, catalog)
    fetch_policy = (settings.fetch_policy.with_prefix(label_studio_url) if label_studio_url
                    else settings.fetch_policy)
    loader = predictor_loader or (lambda: load_case_predictor(catalog, settings.task))
    holder = ModelHolder(loader, check_interval_s=settings.model_check_s,
                         registry_state=(lambda: registry_state(catalog, settings.task)) if catalog else None)
    projects = _ProjectState()
    if train_function is None and catalog is not None:
        pull = annotation_puller(catalog, label_studio_url,
                                 lambda project_id: settings.label_studio_token or projects.token(project_id),
                                 connect=connect_label_studio)
        train_function = default_train_function(catalog, settings.train_config, pull=pull)
    train_function = train_function or default_train_function(catalog, settings.train_config)
    scheduler = TrainingScheduler(train_function, on_trained=holder.reload,
                                  debounce_s=settings.debounce_s)
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
    app.state.fetch_policy = fetch_policy

    refusals = _RefusalLog()

    @app.exception_handler(RequestValidationError)
    async def _validation(request, error):  # noqa: ANN001
        detail = f"invalid request: {error.errors()[:3]}"
        refusals.log(request, 422, detail)
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(Exception)
    async def _failed(request, error):
        # the traceback goes to the server log (uvicorn logs the exception after this answer); the caller gets
        # JSON without it, and without the message, which may hold paths, SQL or task data
        return JSONResponse(status_code=500, content={
            "detail": f"internal error ({type(error).__name__}) in {request.url.path}; the ML backend's log has "
                      "the details"})

    @app.exception_handler(StarletteHTTPException)
    async def _refused(request, error):  # noqa: ANN001
        refusals.log(request, error.status_code, str(error.detail), auth=settings.auth.enabled)
        return await http_exception_handler(request, error)

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
        try:
            value = json.loads(body)
            # an unpaired one fails here, not later as a 500 in the catalog (json decodes UTF-16/32 with surrogatepass)
            if json.detect_encoding(body) != "utf-8" or _SURROGATE_ESCAPE.search(body):
                json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _http_error(400, "request body is not valid JSON text: it holds an unpaired UTF-16 surrogate "
                                   "escape (\\ud800-\\udfff)") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise _http_error(400, f"request body is not valid JSON: {error}") from None
        except RecursionError:
            raise _http_error(400, "request body is not valid JSON: nested too deeply") from None
        return value

    @app.get("/health")
    def health() -> dict:
        current = holder.get(wait_s=0.3)  # Label Studio waits 1 s: a longer model load goes on in the background
        return {"status": "UP", "model_class": current.kind, "model_version": current.model_version,
                "last_training": scheduler.last_run()}

    @app.post("/setup")
    async def setup(request: Request) -> dict:
        try:
            parsed = parse_setup_request(await _json(request))
            if len(parsed.project or "") > MAX_PROJECT_ID_CHARS:  # Label Studio sends "<id>.<created timestamp>"
                raise AdapterError(f"setup 'project' is longer than {MAX_PROJECT_ID_CHARS} characters")
            config = parse_label_config(parsed.label_config) if parsed.label_config else None
            if config is not None:
                check_radloop_labels(config)
        except (AdapterError, LabelConfigError) as error:
            raise _http_error(422, str(error)) from None
        projects.remember(parsed.project or "", config, parsed.hostname, parsed.access_token)
        from starlette.concurrency import run_in_threadpool

        # Label Studio waits 3 s; the wait runs off the event loop, which other requests share
        return {"model_version": (await run_in_threadpool(holder.get, wait_s=1.0)).model_version}

    def _label_studio(project: str | None) -> tuple[str, str | None] | None:
        """Base URL and token for relative image URLs: the configured Label Studio URL with the project's
        /setup token; without one, the hostname /setup sent (which the policy then has to allow)."""
        known = projects.host(project)
        if label_studio_url is None:
            return known
        return label_studio_url, known[1] if known else None

    def _resolve(task: PredictTask, config: ParsedLabelConfig, predictor: CasePredictor,
                 project: str | None, deadline: float | None = None) -> CaseInput | None:
        if task.case_id:
            case = predictor.lookup(task.case_id)
            if case is not None:
                return case
        url = task.data.get(config.image_value)
        if not isinstance(url, str) or not url:
            if task.case_id:
                return None  # a case unknown to this catalog: no prediction
            raise AdapterError(f"task {task.task_id} has neither a known case_id nor an image URL "
                               f"in data[{config.image_value!r}]")
        if not getattr(predictor, "reads_pixels", True):
            return None  # no image model yet: the report rules cannot read pixels, nothing worth downloading
        timeout = settings.image_fetch_timeout_s
        if deadline is not None:  # a download never runs past the request's budget (Label Studio's timeout)
            timeout = max(0.5, min(timeout, deadline - time.monotonic()))
        pixels = fetch_image(url, fetch_policy, _label_studio(project), timeout=timeout,
                             max_bytes=settings.max_image_bytes)
        height, width = pixels.shape[:2]
        return CaseInput(case_id=task.case_id, geometry=ImageGeometry(width, height, width, height), pixels=pixels)

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        body = await _json(request)
        try:
            parsed = parse_predict_request(body)
            config = (parse_label_config(parsed.label_config) if parsed.label_config
                      else projects.config(parsed.project) or default_config)
        except (AdapterError, LabelConfigError) as error:
            raise _http_error(422, str(error)) from None
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_predict_sync, parsed, config, time.monotonic())

    def _predict_sync(parsed, config: ParsedLabelConfig, started: float) -> dict:
        """One entry per task, in order.  A task that cannot be answered (its image cannot be fetched or read,
        a case this catalog does not know, no model opinion) gets ``[]``: no prediction, which Label Studio
        stores nothing for and asks again later, instead of an empty one that reads as "none present" and
        would never be replaced for this model version.  Tasks beyond ``settings.max_tasks`` or left when
        ``settings.predict_budget_s`` ran out are deferred the same way (Label Studio 1.23 sends every selected
        task in one request: "Retrieve predictions" again answers the next ones).  When every task fails the
        request fails with 422 and the reasons.  One INFO line per request says how many tasks, which model
        and how long (never task data: report text, signed image URLs)."""
        predictor = holder.get()  # one model version for the whole request, even if a swap happens now
        cases: list[CaseInput | None] = []
        failures: dict[int, str] = {}
        deadline = started + settings.predict_budget_s
        for index, task in enumerate(parsed.tasks):
            if index >= settings.max_tasks or time.monotonic() > deadline:
                break
            try:
                cases.append(_resolve(task, config, predictor, parsed.project, deadline))
            except AdapterError as error:
                cases.append(None)
                failures[index] = str(error)
        deferred = len(parsed.tasks) - len(cases)
        predictions = _predict_each(predictor, cases, failures, parsed.tasks)
        draws_boxes = predictor.draws_boxes
        answered = {index: prediction for index, prediction in predictions.items()
                    if _shown_in(prediction, config, draws_boxes)}
        logger.info("predict: %d task(s), %d answered, %d failed, %d deferred, project %r, model %s, %.2f s",
                    len(parsed.tasks), len(answered), len(failures), deferred,
                    (parsed.project or "")[:MAX_PROJECT_ID_CHARS], predictor.model_version, time.monotonic() - started)
        if failures and len(failures) == len(cases) and not deferred:
            raise _http_error(422, "; ".join(list(dict.fromkeys(failures.values()))[:3]))
        for index, reason in failures.items():
            logger.warning("predict: task %s has no prediction: %s", parsed.tasks[index].task_id, reason)
        if deferred:
            logger.warning("predict: %d of %d task(s) deferred (at most %d per request, %.0f s budget): "
                           "they get no prediction now; \"Retrieve predictions\" again answers them", deferred,
                           len(parsed.tasks), settings.max_tasks, settings.predict_budget_s)
        return {"results": [prediction_to_ls(answered[index], cases[index].geometry, config) if index in answered
                            else [] for index in range(len(parsed.tasks))]}

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
                failures[indices[0]] = _read_failure(tasks[indices[0]], cases[indices[0]], error)
                return {}
        answered = {}
        for index in indices:
            try:
                answered[index] = predictor.predict([cases[index]])[0]
            except (OSError, ValueError) as error:
                failures[index] = _read_failure(tasks[index], cases[index], error)
        return answered

    def _read_failure(task, case: CaseInput, error: Exception) -> str:
        """Why ``task`` got no prediction, as the response says it.  A catalog render that cannot be read is
        named by image id only: the server's file path (in ``error``) goes to its log, for the operator, not to
        Label Studio, which shows the reason to annotators."""
        if case.pixels is None and case.render_path:
            logger.warning("predict: task %s: the render of image %s cannot be read: %s", task.task_id,
                           case.case_id, error)
            return (f"task {task.task_id}: the render of image {case.case_id} cannot be read on the ML backend "
                    "server (its log names the file; `radloop ingest` of the image's folder again restores it)")
        return f"task {task.task_id}: {error}"

    @app.post("/webhook")
    async def webhook(request: Request) -> dict:
        try:
            event = parse_webhook(await _json(request))
        except AdapterError as error:
            raise _http_error(400, str(error)) from None
        if event.action not in TRAINING_ACTIONS:  # Label Studio sends many event types; never echoed back
            return {"status": "ignored", "reason": "not a training event"}
        scheduled = scheduler.request(event.action, str(event.project_id) if event.project_id else None)
        return {"status": "scheduled", "action": event.action, **scheduled}

    @app.post("/train")
    async def train(request: Request) -> dict:
        try:
            project = _parse_train_request(await _json(request))
        except AdapterError as error:
            raise _http_error(400, str(error)) from None
        return {"status": "scheduled", **scheduler.request("train", project)}

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
