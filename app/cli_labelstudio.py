"""Label Studio commands: ``radloop ls init|export|connect-backend``, ``radloop round push|pull``,
``radloop serve-backend`` and ``radloop bench backend``.

The API token comes from ``--token`` or ``LABEL_STUDIO_API_KEY`` / ``RADLOOP_LS_TOKEN``; it is used in
memory only (never written to the catalog, the workspace or logs).  Push/pull logic lives in
:mod:`radloop.labeling.ls_sync` (``push_round`` / ``pull_round``) so that other commands can call it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.options import JsonOption, WorkspaceOption, check_output_file, console, emit, fail, open_catalog

TokenOption = Annotated[Optional[str], typer.Option(
    "--token", help="Label Studio API token (default: $LABEL_STUDIO_API_KEY or $RADLOOP_LS_TOKEN). Never stored.",
    show_default=False)]
RoundOption = Annotated[Optional[int], typer.Option("--round", "-r", metavar="N", help=(
    "Round number, as `radloop round status` shows it (default: the latest round)."))]
ReportTextOption = Annotated[Optional[str], typer.Option(
    "--report-text", metavar="redacted|none|as_stored", show_default=False, help=(
        "What the tasks' report field carries: 'redacted' (identifiers scrubbed by radloop's rules; not a "
        "certified de-identification), 'none' (no report text), 'as_stored' (reports de-identified at the "
        "source)."))]


def _client(url: Optional[str], token: Optional[str]):
    from radloop.labeling.ls_client import LabelStudioClient, LabelStudioError, token_from_env

    url = url or os.environ.get("LABEL_STUDIO_URL")
    if not url:
        fail("no Label Studio URL: pass --url or set LABEL_STUDIO_URL")
    try:
        return LabelStudioClient(url, token or token_from_env() or "")
    except LabelStudioError as error:
        fail(str(error))


def _round_id(catalog, number: Optional[int]) -> int:
    """The catalog id of round ``number`` (``--round``), else of the latest round."""
    from sqlalchemy import select

    from radloop.app.round_record import RoundError, round_id_for_number
    from radloop.core.schema import Round

    if number is not None:
        try:
            return round_id_for_number(catalog, number)
        except RoundError as error:
            fail(str(error))
    with catalog.session() as session:
        latest = session.scalars(select(Round.id).order_by(Round.id.desc()).limit(1)).first()
    if latest is None:
        fail("the catalog has no rounds yet: start one with `radloop round start`")
    return latest


def _bound_client(catalog, token: Optional[str]):
    from radloop.labeling.ls_project import load_binding

    try:
        binding = load_binding(catalog.workspace)
    except FileNotFoundError as error:
        fail(str(error))
    return binding, _client(binding.url, token)


def _pull_client(catalog, round_key: int, token: Optional[str]):
    """(binding, client) to pull round ``round_key`` from: the server and project its tasks were pushed to
    (recorded per task, as `round finish` pulls), else the workspace's `ls init` binding."""
    from radloop.labeling.ls_project import load_binding
    from radloop.labeling.ls_sync import pushed_binding

    binding = pushed_binding(catalog, round_key)  # the workspace's own binding when the tasks went there
    if binding is None:
        try:
            binding = load_binding(catalog.workspace)
        except FileNotFoundError as error:
            fail(str(error))
        except (ValueError, TypeError) as error:
            fail(f"the workspace's Label Studio binding is unreadable ({error}): rerun `radloop ls init`")
    return binding, _client(binding.url, token)


def ls_init(url: Annotated[Optional[str], typer.Option("--url", help="Label Studio URL ($LABEL_STUDIO_URL).")] = None,
            token: TokenOption = None,
            project: Annotated[Optional[str], typer.Option(
                "--project", help="Project title; renames the bound project (default: keep the bound project's "
                "title; a new project is called 'radloop findings').")] = None,
            document_root: Annotated[Optional[Path], typer.Option(
                "--document-root", help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (must contain the "
                "workspace); default: that variable, else the parent folder the server is found to serve the "
                "workspace's renders from (checked either way).")] = None,
            media_url: Annotated[Optional[str], typer.Option(
                "--media-url", help="Serve renders from this URL prefix instead of local-files storage.")] = None,
            report_text: ReportTextOption = None,
            workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Create or update (idempotent) the Label Studio project with the vocabulary's labelling config.

    Checks that Label Studio serves the renders as annotators will ask for them (a probe file); tasks pushed
    with other serving settings get the new image URLs.

    --report-text is saved in the workspace's binding and used by `round push` and `ls export` (default: the
    binding's setting, 'redacted' for a new one).
    """
    from radloop.core.workspace import resolve_workspace
    from radloop.labeling.ls_client import LabelStudioError
    from radloop.labeling.ls_config import check_report_text
    from radloop.labeling.ls_project import init_project

    if report_text is not None:
        try:
            check_report_text(report_text)
        except ValueError as error:
            fail(str(error))
    client = _client(url, token)
    try:
        result = init_project(client, resolve_workspace(workspace).ensure(), title=project,
                              document_root=str(document_root) if document_root else None, media_url=media_url,
                              report_text=report_text)
    except (LabelStudioError, ValueError, OSError) as error:  # OSError: the media folder or binding not written
        message = str(error)  # init_project says here what became of a project it created; PEP 678 notes too
        fail("; ".join([message, *(note for note in getattr(error, "__notes__", ()) if note not in message)]))
    emit(result, as_json, title="Label Studio project")


def ls_export(out: Annotated[Path, typer.Option("--out", help="Where to write the import JSON.")],
              round_id: RoundOption = None,
              document_root: Annotated[Optional[Path], typer.Option("--document-root", help=(
                  "The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, for the renders' local-files URLs "
                  "(default: the project binding's, else the workspace)."))] = None,
              media_url: Annotated[Optional[str], typer.Option(
                  "--media-url", help="Serve renders from this URL prefix instead of local-files storage.")] = None,
              report_text: ReportTextOption = None,
              workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Write a round's Label Studio import file (tasks + pre-annotations) without a server.

    The report field follows --report-text, else the `ls init` binding's setting, else 'redacted'.
    """
    from radloop.labeling.ls_project import load_binding, report_text_setting
    from radloop.labeling.ls_tasks import export_tasks_json

    check_output_file(out)
    catalog = open_catalog(workspace)
    try:
        binding = load_binding(catalog.workspace)
    except FileNotFoundError:
        binding = None
    except (ValueError, TypeError) as error:
        fail(f"the workspace's Label Studio binding is unreadable ({error}): rerun `radloop ls init`")
    try:
        report_text = report_text_setting(catalog.workspace, binding, report_text)
        result = export_tasks_json(catalog, _round_id(catalog, round_id), out, binding=binding,
                                   document_root=str(document_root) if document_root else None, media_url=media_url,
                                   report_text=report_text)
    except (LookupError, OSError, ValueError) as error:  # OSError: e.g. --out or the media folder not writable
        fail(str(error))
    emit({**result, "report_text": report_text}, as_json, title="Label Studio import file")


def ls_connect_backend(backend_url: Annotated[str, typer.Option("--backend-url", help="radloop ML backend URL.")],
                       token: TokenOption = None,
                       auth_user: Annotated[Optional[str], typer.Option("--auth-user", help=(
                           "Basic-auth user the backend requires (its password from "
                           "$RADLOOP_BACKEND_PASSWORD)."))] = None,
                       workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Connect the radloop ML backend to the workspace's project (password: $RADLOOP_BACKEND_PASSWORD)."""
    from radloop.labeling.ls_client import LabelStudioError

    catalog = open_catalog(workspace)
    binding, client = _bound_client(catalog, token)
    password = os.environ.get("RADLOOP_BACKEND_PASSWORD")
    if auth_user and not password:
        fail("--auth-user needs the password in $RADLOOP_BACKEND_PASSWORD")
    try:
        backend_id = client.ensure_ml_backend(binding.project_id, backend_url,
                                              basic_auth=(auth_user, password) if auth_user else None)
    except LabelStudioError as error:
        message = str(error)
        if "authentication parameters" in message:  # Label Studio's words for a 401/403 from the backend
            message += ("\nThe ML backend refused the credentials: pass `--auth-user USER` with the password in "
                        "$RADLOOP_BACKEND_PASSWORD, as `radloop serve-backend --auth basic:USER` was started with "
                        "(Label Studio sends basic auth only: a backend started with `--auth bearer` cannot be "
                        "connected)")
        fail(message)
    emit({"project_id": binding.project_id, "ml_backend_id": backend_id, "backend_url": backend_url}, as_json)


def round_push(round_id: RoundOption = None, token: TokenOption = None,
               chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Tasks per import request.")] = 50,
               recreate_deleted: Annotated[bool, typer.Option("--recreate-deleted", help=(
                   "Import again the tasks someone deleted in Label Studio (default: report them and skip)."))] = False,
               no_model: Annotated[bool, typer.Option("--no-model", help="Skip model pre-annotations.")] = False,
               workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Import the round's selected batch into Label Studio (idempotent, with pre-annotations)."""
    from radloop.labeling.ls_client import LabelStudioError
    from radloop.labeling.ls_sync import PushIncompleteError, push_round

    catalog = open_catalog(workspace)
    round_key = _round_id(catalog, round_id)  # an unknown round number is named before any server is asked
    binding, client = _bound_client(catalog, token)
    try:
        result = push_round(catalog, client, round_key, binding=binding, chunk_size=chunk_size,
                            recreate_deleted=recreate_deleted, with_model=not no_model)
    except PushIncompleteError as error:
        if as_json:
            emit({**error.summary, "error": str(error)}, True)
        fail(str(error), code=3)
    except (LabelStudioError, LookupError, FileNotFoundError, ValueError) as error:  # ValueError: the binding's
        fail(str(error))  # document root no longer contains the workspace's images, or it is unreadable
    emit(result, as_json, title="round push")


def round_pull(round_id: RoundOption = None, token: TokenOption = None,
               full: Annotated[bool, typer.Option("--full", help="Re-read every task, not only changed ones.")] = False,
               workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Fetch new annotations of the round from Label Studio into the catalog (append-only)."""
    from radloop.labeling.ls_client import LabelStudioError
    from radloop.labeling.ls_sync import pull_round

    catalog = open_catalog(workspace)
    round_key = _round_id(catalog, round_id)  # an unknown round number is named before any server is asked
    binding, client = _pull_client(catalog, round_key, token)
    try:
        result = pull_round(catalog, client, round_key, binding=binding, full=full)
    except (LabelStudioError, LookupError) as error:
        fail(str(error))
    emit(result, as_json, title="round pull")


def _backend_auth(auth: Optional[str]):
    from radloop.app.backend import BackendAuth

    if auth is None:
        return BackendAuth()
    if auth == "bearer":
        token = os.environ.get("RADLOOP_BACKEND_TOKEN")
        if not token:
            fail("--auth bearer needs the token in $RADLOOP_BACKEND_TOKEN")
        return BackendAuth(bearer_token=token)
    if auth.startswith("basic:"):
        if not auth.split(":", 1)[1]:
            fail("--auth basic:USER needs a user name after 'basic:'")
        password = os.environ.get("RADLOOP_BACKEND_PASSWORD")
        if not password:
            fail("--auth basic:USER needs the password in $RADLOOP_BACKEND_PASSWORD")
        return BackendAuth(username=auth.split(":", 1)[1], password=password)
    fail(f"--auth must be 'basic:USER' or 'bearer', got {auth!r}")


AuthOption = Annotated[Optional[str], typer.Option(
    "--auth", help="Require 'basic:USER' (password in $RADLOOP_BACKEND_PASSWORD) or 'bearer' "
    "(token in $RADLOOP_BACKEND_TOKEN).")]
LabelStudioUrlOption = Annotated[Optional[str], typer.Option(
    "--label-studio-url", metavar="URL", show_default=False, help="Label Studio as this backend reaches it; task "
    "images are fetched from it (default: the workspace's `ls init` binding, else $LABEL_STUDIO_URL).")]
AllowUrlPrefixOption = Annotated[Optional[list[str]], typer.Option(
    "--allow-url-prefix", metavar="URL", envvar="RADLOOP_BACKEND_ALLOW_URL_PREFIX", show_envvar=True, help=(
        "Also fetch task images under this URL prefix, e.g. https://bucket.s3.amazonaws.com/ (repeatable; "
        "the variable takes a space-separated list; '*': any URL). Hosts are compared as written, not resolved."))]
AllowAnyUrlOption = Annotated[bool, typer.Option(
    "--allow-any-url", help="Fetch task images from any http(s) URL (lets whoever can call /predict make "
    "this server request internal addresses).")]


def _fetch_settings(catalog, label_studio_url: Optional[str], allow_url_prefix: Optional[list[str]],
                    allow_any_url: bool) -> dict:
    """``label_studio_url`` and ``fetch_policy`` for :class:`BackendSettings` (explicit URL, else the binding,
    else $LABEL_STUDIO_URL: :func:`radloop.labeling.ls_project.label_studio_url`, as rounds use it)."""
    from radloop.app.backend import FetchPolicy
    from radloop.labeling.ls_project import label_studio_url as resolve

    try:
        label_studio_url = resolve(catalog.workspace, label_studio_url)[0]
    except ValueError as error:
        fail(f"the workspace's Label Studio binding is unreadable ({error}): rerun `radloop ls init`")
    try:
        policy = FetchPolicy(prefixes=tuple(allow_url_prefix or ()), allow_any=allow_any_url)
        if label_studio_url:
            policy.with_prefix(label_studio_url)  # checked now, not at the first image
    except ValueError as error:
        fail(str(error))
    return {"label_studio_url": label_studio_url, "fetch_policy": policy}


def serve_backend(host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
                  port: Annotated[int, typer.Option("--port")] = 9090, auth: AuthOption = None,
                  debounce: Annotated[float, typer.Option("--debounce", help="Seconds of quiet before training.")] = 30.0,
                  threads: Annotated[int, typer.Option("--threads", help="torch CPU threads.")] = 2,
                  train_config: Annotated[Optional[Path], typer.Option(
                      "--train-config", help="Fine-tuning job run in the background on new annotations, e.g. "
                      "configs/finetune/probe_cpu.yaml (default: only record the requests).")] = None,
                  label_studio_url: LabelStudioUrlOption = None, allow_url_prefix: AllowUrlPrefixOption = None,
                  allow_any_url: AllowAnyUrlOption = False, workspace: WorkspaceOption = None) -> None:
    """Serve the Label Studio ML backend (/health, /setup, /predict, /webhook, /train, /training, /versions).

    Task images that are not catalog cases are fetched only from Label Studio unless --allow-url-prefix or
    --allow-any-url says otherwise.  Before each training run the project's new annotations are pulled into
    the catalog with $LABEL_STUDIO_API_KEY / $RADLOOP_LS_TOKEN, else the token Label Studio sends to /setup;
    with neither, training uses the catalog's labels only.  The model served follows the registry's current one.
    """
    import uvicorn

    from radloop.app.backend import BackendSettings, create_app
    from radloop.labeling.ls_client import token_from_env

    _set_threads(threads)
    _log_requests()
    catalog = open_catalog(workspace)
    settings = BackendSettings(debounce_s=debounce, auth=_backend_auth(auth), label_studio_token=token_from_env(),
                               train_config=_train_config_path(train_config),
                               **_fetch_settings(catalog, label_studio_url, allow_url_prefix, allow_any_url))
    try:
        app = create_app(catalog, settings=settings)
    except ValueError as error:  # e.g. the `ls init` binding's URL is not an http(s) URL
        fail(str(error))
    policy = app.state.fetch_policy
    allowed = "any URL" if policy.allows_any else ", ".join(policy.prefixes) or "none (catalog cases only)"
    console.print(f"radloop ML backend on http://{host}:{port} (model {app.state.holder.get().model_version}); "
                  f"image URLs fetched from: {allowed}")
    if auth is None and not _loopback(host):
        console.print(f"warning: serving on {host} without --auth: anyone who reaches port {port} can read "
                      "predictions drawn from the reports and start training; use --auth basic:USER (what Label "
                      "Studio sends) behind the site's TLS reverse proxy", style="yellow", markup=False,
                      highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.x.x.x, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def _train_config_path(train_config: Optional[Path]) -> Optional[str]:
    """The absolute path of ``--train-config`` (None: not given): the file itself, else, for a relative path
    given outside the repository, radloop's shipped config of that name, as every other --config option;
    fails naming both when neither exists."""
    from radloop.core.config import ConfigError, find_config

    if train_config is None:
        return None
    try:
        return str(find_config(train_config).resolve())
    except ConfigError as error:
        fail(f"training {error}")


def _log_requests() -> None:
    """Let the backend's one-line request and training summaries (INFO) through at the default WARNING level;
    a quieter level chosen with RADLOOP_LOG_LEVEL (ERROR, CRITICAL) is kept."""
    import logging

    if logging.getLogger().getEffectiveLevel() <= logging.WARNING:
        for name in ("radloop.app.backend", "radloop.app.backend_runtime"):
            logger = logging.getLogger(name)
            logger.setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))


def _set_threads(threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:
        pass


def bench_backend(requests: Annotated[int, typer.Option("--requests", min=5)] = 50,
                  concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 8,
                  case_id: Annotated[Optional[str], typer.Option("--case", help="Image id (default: any).")] = None,
                  threads: Annotated[int, typer.Option("--threads")] = 2,
                  workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """p50/p95 latency of /predict for one task, sequential and under concurrent clients (real HTTP)."""
    from radloop.app.backend import BackendSettings, create_app
    from radloop.app.backend_bench import measure_predict, serve_in_thread
    from radloop.app.backend_runtime import first_case

    _set_threads(threads)
    catalog = open_catalog(workspace)
    case_id = case_id or first_case(catalog)
    if case_id is None:
        fail("the catalog has no images to predict on: ingest some first")
    app = create_app(catalog, settings=BackendSettings(debounce_s=3600))
    body = {"tasks": [{"id": 1, "data": {"case_id": case_id}}], "project": "bench"}
    with serve_in_thread(app) as url:
        result = measure_predict(url, body, requests=requests, concurrency=concurrency)
    predictor = app.state.holder.get()
    result.update(case_id=case_id, model_version=predictor.model_version, predictor=predictor.kind,
                  torch_threads=threads, cpu_count=os.cpu_count())
    emit(result, as_json, title="ML backend /predict latency")


def register(groups) -> None:
    """Attach the Label Studio commands to the CLI groups."""
    groups.labelstudio.command("init")(ls_init)
    groups.labelstudio.command("export")(ls_export)
    groups.labelstudio.command("connect-backend")(ls_connect_backend)
    groups.round.command("push")(round_push)
    groups.round.command("pull")(round_pull)
    groups.root.command("serve-backend")(serve_backend)
    groups.bench.command("backend")(bench_backend)
