"""The ML backend's debounced background training, and the Label Studio pull that runs before it.

Split from :mod:`radloop.app.backend_runtime`, which re-exports the public names here.

- :class:`TrainingScheduler` collects training requests (annotation webhooks, START_TRAINING) and runs the
  training function in its own thread once no request came for ``debounce_s`` seconds; a request that
  arrives during a run schedules one more run after it.  Requests never wait for training.
- :func:`default_train_function` first pulls the Label Studio project's new annotations into the catalog
  (:func:`annotation_puller`, ``ls_sync.pull_round`` for every round pushed to the project), then trains;
  an unchanged labelled set is the outcome "no new labels; model <version> unchanged", not a failure.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select

from radloop.core.catalog import Catalog
from radloop.core.schema import Selection

__all__ = ["TrainingRequest", "TrainingScheduler", "annotation_puller", "brief_error", "default_train_function",
           "pull_project_annotations"]

# the runtime's logger name, kept from before the split: `radloop serve-backend` lets its INFO lines through
logger = logging.getLogger("radloop.app.backend_runtime")

#: An absolute server path in an error message (not a URL's path: that follows its host or another slash).
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def brief_error(error: BaseException) -> str:
    """A failed run's error as ``/health`` and ``/training`` answer it: type and message, without the server's
    paths (a file is named by its name only) or a database error's SQL and parameters (task data); the
    server log has the whole error."""
    message = str(error).split("\n[SQL:", 1)[0].split("\n(Background on this error", 1)[0]
    message = _SERVER_PATH.sub(lambda match: ".../" + match.group(1), message)
    return f"{type(error).__name__}: {message[:500]}"


@dataclass(frozen=True)
class TrainingRequest:
    """Why training was requested (one per webhook / START_TRAINING), and when."""

    reason: str
    project: str | None
    at: str


class TrainingScheduler:
    """Debounced background training.

    Args:
        train_function: called with the list of requests gathered since the last run; its return value is
            recorded.  Runs in the scheduler's thread, never in a request.
        on_trained: called after each successful run (e.g. ``ModelHolder.reload``).
        debounce_s: quiet time after the last request before a run starts.

    Each run is recorded with a ``status``: ``failed`` (with ``error``) when the function raised, else the
    ``status`` of the dict it returned (``trained``, ``unchanged``, ``recorded``), else ``done``.
    """

    def __init__(self, train_function: Callable[[list[TrainingRequest]], Any], *,
                 on_trained: Callable[[], Any] | None = None, debounce_s: float = 30.0) -> None:
        self._train = train_function
        self._on_trained = on_trained
        self.debounce_s = debounce_s
        self._condition = threading.Condition()
        self._pending: list[TrainingRequest] = []
        self._deadline: float | None = None
        self._running = False
        self._closed = False
        self.history: deque[dict] = deque(maxlen=50)
        self._thread = threading.Thread(target=self._loop, name="radloop-training", daemon=True)
        self._thread.start()

    def request(self, reason: str, project: str | None = None) -> dict:
        """Queue a training request (returns at once)."""
        with self._condition:
            self._pending.append(TrainingRequest(reason, project, datetime.now(timezone.utc).isoformat()))
            self._deadline = time.monotonic() + self.debounce_s
            self._condition.notify_all()
            return {"scheduled": True, "pending": len(self._pending), "debounce_s": self.debounce_s,
                    "running": self._running}

    def status(self) -> dict:
        with self._condition:
            return {"pending": len(self._pending), "running": self._running, "runs": list(self.history)}

    def last_run(self) -> dict | None:
        """The newest run in brief (for ``/health``): status, when it finished, its error or outcome."""
        with self._condition:
            if not self.history:
                return None
            run = self.history[-1]
        brief = {key: run[key] for key in ("status", "finished_at", "error", "model_version") if key in run}
        result = run.get("result")
        if isinstance(result, dict) and result.get("outcome"):
            brief["outcome"] = result["outcome"]
        return brief

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or running (tests, shutdown); False on timeout."""
        end = time.monotonic() + timeout
        with self._condition:
            while self._pending or self._running:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
            return True

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._closed and (not self._pending or time.monotonic() < (self._deadline or 0)):
                    timeout = None if not self._pending else max(self._deadline - time.monotonic(), 0.0)
                    self._condition.wait(timeout if timeout is not None else 1.0)
                if self._closed:
                    return
                batch, self._pending = self._pending, []
                self._running = True
            started = time.monotonic()
            record: dict[str, Any] = {"requests": len(batch), "reasons": sorted({r.reason for r in batch}),
                                      "projects": sorted({r.project for r in batch if r.project}),
                                      "started_at": datetime.now(timezone.utc).isoformat()}
            try:
                result = record["result"] = self._train(batch)
                if self._on_trained is not None:
                    record["model_version"] = self._on_trained()
                status = result.get("status") if isinstance(result, dict) else None
                record.update(ok=True, status=status if isinstance(status, str) else "done")
                logger.info("background training: %s", (result.get("outcome") if isinstance(result, dict)
                                                          else None) or record["status"])
            except Exception as error:  # a failed run is recorded, the server keeps serving
                logger.exception("background training failed")
                record.update(ok=False, status="failed", error=brief_error(error))
            record["finished_at"] = datetime.now(timezone.utc).isoformat()
            record["seconds"] = round(time.monotonic() - started, 3)
            with self._condition:
                self.history.append(record)
                self._running = False
                self._condition.notify_all()


def _project_number(project: str | None) -> int | None:
    """Label Studio's project id from a request's project (``"3"`` from webhooks, ``"3.1700000000"`` from
    ``/train`` and ``/setup``)."""
    head = (project or "").split(".", 1)[0].strip()
    return int(head) if head.isdigit() else None


def pull_project_annotations(catalog: Catalog, client: Any, binding: Any, *, full: bool = False) -> dict:
    """Pull new annotations of every round pushed to ``binding``'s project (``ls_sync.pull_round``, incremental
    and append-only; ``full`` re-reads every task, which is how deleted annotations are noticed); returns a
    summary.

    Raises:
        LabelStudioError: the server refused or could not be reached.
    """
    from radloop.labeling.ls_sync import pull_round

    with catalog.session() as session:
        rows = session.execute(select(Selection.round_id, Selection.meta).where(
            Selection.ls_task_id.is_not(None))).all()
    rounds = sorted({round_id for round_id, meta in rows
                     if ((meta or {}).get("ls") or {}).get("project_id") == binding.project_id})
    added = quarantined = 0
    for round_id in rounds:
        summary = pull_round(catalog, client, round_id, binding=binding, full=full)
        added += summary["annotations_added"]
        quarantined += summary["quarantined"]
    return {"pulled": True, "full": full, "project_id": binding.project_id, "rounds": rounds,
            "annotations_added": added, "quarantined": quarantined}


def annotation_puller(catalog: Catalog, label_studio_url: str | None, token_for: Callable[[int], str | None], *,
                      connect: Callable[[str, str], Any] | None = None
                      ) -> Callable[[list[TrainingRequest]], dict]:
    """What runs before training: pull the workspace's Label Studio project's new annotations into the catalog.

    Args:
        label_studio_url: Label Studio as the backend reaches it (None: the ``ls init`` binding's URL).
        token_for: the API token for a project id (the deployment's, else the one ``/setup`` sent), or None.
        connect: builds the client from (url, token); default :class:`~radloop.labeling.ls_client.LabelStudioClient`.

    The returned function answers ``{"pulled": False, "reason": ...}`` when it cannot pull (no binding, the
    requests are for another project, no token): training then uses the labels already in the catalog.

    Raises (from the returned function):
        LabelStudioError: the pull failed (server down, token refused, project deleted).
    """

    def pull(batch: list[TrainingRequest]) -> dict:
        from radloop.labeling.ls_client import LabelStudioClient, LabelStudioError
        from radloop.labeling.ls_project import load_binding

        try:
            binding = load_binding(catalog.workspace)
        except (FileNotFoundError, ValueError, TypeError) as error:
            return {"pulled": False, "reason": f"no usable Label Studio binding ({error}); training uses the "
                                               "labels already in the catalog"}
        asked = {number for number in (_project_number(r.project) for r in batch) if number is not None}
        if asked and binding.project_id not in asked:
            return {"pulled": False, "reason": f"the requests are for Label Studio project(s) {sorted(asked)}, the "
                                               f"workspace is bound to project {binding.project_id}; not pulled"}
        token = token_for(binding.project_id)
        if not token:
            return {"pulled": False, "reason": "no Label Studio API token (none from /setup for project "
                    f"{binding.project_id}, none in the backend's environment): training uses the labels already "
                    "in the catalog; run `radloop round pull`, or set $LABEL_STUDIO_API_KEY for the backend"}
        client = (connect or (lambda url, key: LabelStudioClient(url, key, retries=2)))(
            label_studio_url or binding.url, token)
        # Label Studio does not touch a task's updated_at when one of its annotations is deleted: only a full
        # pull sees the deletion (and withdraws the labels)
        full = any(request.reason == "ANNOTATIONS_DELETED" for request in batch)
        try:
            return pull_project_annotations(catalog, client, binding, full=full)
        except LabelStudioError as error:
            raise LabelStudioError(f"pulling new annotations from Label Studio failed, nothing was trained (the "
                                   f"next annotation event, or Start Training in the model's settings, tries "
                                   f"again; the annotations stay in Label Studio): {error}") from error

    return pull


def default_train_function(catalog: Catalog | None, config_path: str | Path | None = None, *,
                           pull: Callable[[list[TrainingRequest]], dict] | None = None
                           ) -> Callable[[list[TrainingRequest]], Any]:
    """Training the backend runs in the background: ``pull`` (e.g. :func:`annotation_puller`) brings Label
    Studio's new annotations into the catalog, then ``radloop.ssl.finetune_jobs.run_training`` runs the job
    config at ``config_path`` (e.g. ``configs/finetune/probe_cpu.yaml``), registering the new model as current.

    Returns a dict with ``status``: ``trained``; ``unchanged`` (the labelled set, and so the version, is the
    registered one's: outcome "no new labels; model <version> unchanged"); ``busy`` (the same job is training in
    another process, e.g. a ``radloop train`` beside the backend: outcome says which); ``recorded`` (no config, or no
    fine-tuning installed).  Every request is appended to ``<workspace>/logs/training-requests.jsonl``.
    """

    def train(batch: list[TrainingRequest]) -> Any:
        if catalog is not None:
            path = catalog.workspace.logs_dir / "training-requests.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                for request in batch:
                    handle.write(json.dumps(request.__dict__) + "\n")
        pulled = pull(batch) if pull is not None and catalog is not None else {
            "pulled": False, "reason": "no Label Studio pull configured: training uses the labels in the catalog"}
        if catalog is None or config_path is None:
            return {"status": "recorded", "trained": False, "pull": pulled,
                    "reason": "no training config given; request recorded"}
        try:
            from radloop.core.config import load_config
            from radloop.ssl.finetune_config import TrainConfig
            from radloop.ssl.finetune_checkpoints import JobLockedError
            from radloop.ssl.finetune_jobs import VersionExistsError, run_training
        except ImportError as error:
            return {"status": "recorded", "trained": False, "pull": pulled,
                    "reason": f"fine-tuning is not available ({error}); request recorded"}
        try:
            result = run_training(catalog, load_config(Path(config_path), TrainConfig), register=True,
                                  progress=False)
        except VersionExistsError as error:
            return {"status": "unchanged", "trained": False, "version": error.version, "pull": pulled,
                    "outcome": f"no new labels; model {error.version} unchanged"}
        except JobLockedError as error:  # the same job is training elsewhere (a CLI `radloop train`): not an error
            return {"status": "busy", "trained": False, "pull": pulled, "outcome": str(error)}
        return {"status": "trained", "trained": True, "version": result.version, "pull": pulled,
                "outcome": f"trained and registered model {result.version}", "metrics": {
                    key: value for key, value in result.metrics.items() if isinstance(value, (int, float, str))}}

    return train
