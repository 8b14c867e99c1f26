"""What the ML backend runs on: the current model (atomic swaps) and debounced background training.

- :class:`CasePredictor` turns cases (catalog image + study) into :class:`PredictionRecord` s, from the
  registry's current image model (``radloop.ssl.predict.load_predictor``) when there is one, else from
  the report rules' weak labels of the case's study (``model_version`` ``report-rules:<version>``).
- :class:`ModelHolder` keeps the current :class:`CasePredictor`; :meth:`ModelHolder.reload` builds the new
  one outside the lock and swaps a single reference, so a request sees the old or the new model, never a
  half-loaded one.
- :class:`TrainingScheduler` collects training requests (annotation webhooks, START_TRAINING) and runs the
  training function in its own thread once no request came for ``debounce_s`` seconds; a request that
  arrives during a run schedules one more run after it.  Requests never wait for training.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy import select

from radloop.core.catalog import Catalog
from radloop.core.schema import Image
from radloop.labeling.ls_adapter import ImageGeometry, PredictionRecord
from radloop.labeling.ls_tasks import load_current_predictor, weak_label_predictions

__all__ = ["CaseInput", "CasePredictor", "ModelHolder", "TrainingRequest", "TrainingScheduler",
           "default_train_function"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseInput:
    """One image to predict: a catalog case (``case_id``) and/or decoded pixels (uint8, (H, W))."""

    case_id: str | None
    geometry: ImageGeometry
    study_id: str | None = None
    render_path: str | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)


class CasePredictor:
    """Predictions for cases from the current image model, else from report weak labels."""

    def __init__(self, catalog: Catalog | None, predictor: Any = None) -> None:
        self.catalog = catalog
        self.predictor = predictor

    @property
    def model_version(self) -> str:
        if self.predictor is not None:
            return str(self.predictor.model_version)
        return "report-rules"

    @property
    def kind(self) -> str:
        return type(self.predictor).__name__ if self.predictor is not None else "ReportRules"

    def lookup(self, case_id: str) -> CaseInput | None:
        """The catalog case ``case_id`` (None when unknown or no catalog)."""
        if self.catalog is None:
            return None
        with self.catalog.session() as session:
            image = session.get(Image, case_id)
            if image is None:
                return None
            return CaseInput(case_id=image.id, study_id=image.study_id, render_path=image.render_path,
                             geometry=ImageGeometry(image.width, image.height, image.render_width,
                                                    image.render_height))

    def predict(self, cases: list[CaseInput]) -> list[PredictionRecord]:
        if self.predictor is not None:
            images = [case.pixels if case.pixels is not None else str(self.catalog.workspace.absolute(case.render_path))
                      for case in cases]
            outputs = self.predictor.predict(images)
            return [PredictionRecord(model_version=str(output.model_version), choices=dict(output.choices),
                                     boxes=tuple(output.boxes)) for output in outputs]
        weak: dict[str, PredictionRecord] = {}
        study_ids = sorted({case.study_id for case in cases if case.study_id})
        if self.catalog is not None and study_ids:
            with self.catalog.session() as session:
                weak = weak_label_predictions(session, study_ids)
        empty = PredictionRecord(model_version=self.model_version, choices={})
        return [weak.get(case.study_id or "", empty) for case in cases]


class ModelHolder:
    """The current :class:`CasePredictor`, replaced atomically."""

    def __init__(self, loader: Callable[[], CasePredictor]) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._current = loader()
        self.swaps = 0

    def get(self) -> CasePredictor:
        with self._lock:
            return self._current

    def swap(self, predictor: CasePredictor) -> None:
        with self._lock:
            self._current = predictor
            self.swaps += 1

    def reload(self) -> str:
        """Load the registry's current model (outside the lock) and swap it in; returns its version."""
        fresh = self._loader()
        self.swap(fresh)
        return fresh.model_version


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
                                      "started_at": datetime.now(timezone.utc).isoformat()}
            try:
                record["result"] = self._train(batch)
                if self._on_trained is not None:
                    record["model_version"] = self._on_trained()
                record["ok"] = True
            except Exception as error:  # a failed run is recorded, the server keeps serving
                logger.exception("background training failed")
                record.update(ok=False, error=f"{type(error).__name__}: {error}")
            record["seconds"] = round(time.monotonic() - started, 3)
            with self._condition:
                self.history.append(record)
                self._running = False
                self._condition.notify_all()


def default_train_function(catalog: Catalog | None, config_path: str | Path | None = None
                           ) -> Callable[[list[TrainingRequest]], Any]:
    """Training the backend runs in the background: ``radloop.ssl.finetune_jobs.run_training`` with the job
    config at ``config_path`` (e.g. ``configs/finetune/probe_cpu.yaml``), registering the new model as
    current; without a config (or without the fine-tuning part installed) the request is only recorded.

    Every request is appended to ``<workspace>/logs/training-requests.jsonl``.
    """

    def train(batch: list[TrainingRequest]) -> Any:
        if catalog is not None:
            path = catalog.workspace.logs_dir / "training-requests.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                for request in batch:
                    handle.write(json.dumps(request.__dict__) + "\n")
        if catalog is None or config_path is None:
            return {"trained": False, "reason": "no training config given; request recorded"}
        try:
            from radloop.core.config import load_config
            from radloop.ssl.finetune_config import TrainConfig
            from radloop.ssl.finetune_jobs import run_training
        except ImportError as error:
            return {"trained": False, "reason": f"fine-tuning is not available ({error}); request recorded"}
        result = run_training(catalog, load_config(Path(config_path), TrainConfig), register=True, progress=False)
        return {"trained": True, "version": result.version, "metrics": {
            key: value for key, value in result.metrics.items() if isinstance(value, (int, float, str))}}

    return train


def load_case_predictor(catalog: Catalog | None, task: str = "findings") -> CasePredictor:
    """A :class:`CasePredictor` on the registry's current model (or the report rules)."""
    predictor = load_current_predictor(catalog, task) if catalog is not None else None
    return CasePredictor(catalog, predictor)


def first_case(catalog: Catalog) -> str | None:
    """Any catalog image id (for benchmarks)."""
    with catalog.session() as session:
        return session.scalars(select(Image.id).order_by(Image.id).limit(1)).first()
