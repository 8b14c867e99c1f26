"""What the ML backend runs on: the current model (atomic swaps) and debounced background training.

- :class:`CasePredictor` turns cases (catalog image + study) into :class:`PredictionRecord` s, from the
  registry's current image model (``radloop.ssl.predict.load_predictor``) when there is one, else from
  the report rules' weak labels of the case's study (``model_version`` ``report-rules:<rules version>``, the
  catalog's newest, what ``/setup`` answers and what ``radloop ls push`` stamps on the same pre-annotations).
- :class:`ModelHolder` keeps the current :class:`CasePredictor`; :meth:`ModelHolder.reload` builds the new
  one outside the lock and swaps a single reference, so a request sees the old or the new model, never a
  half-loaded one.  It also notices when the registry's current model changes (``radloop round finish``,
  ``radloop models set-current``): at most every ``check_interval_s`` one small query, then a reload.
- Background training (:class:`TrainingScheduler`, :func:`default_train_function`, :func:`annotation_puller`)
  lives in :mod:`radloop.app.backend_training`, split from this module; its names are re-exported here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
from sqlalchemy import select

from radloop.app.backend_training import (
    TrainingRequest, TrainingScheduler, annotation_puller, default_train_function, pull_project_annotations,
)
from radloop.core.catalog import Catalog
from radloop.core.registry import TASK_DETECTION
from radloop.core.schema import Image, Model
from radloop.labeling.ls_adapter import ImageGeometry, PredictionRecord
from radloop.labeling.ls_tasks import (
    load_current_predictor, newest_rules_version, rules_model_version, weak_label_predictions,
)

__all__ = ["CaseInput", "CasePredictor", "ModelHolder", "TrainingRequest", "TrainingScheduler",
           "annotation_puller", "default_train_function", "pull_project_annotations", "registry_state"]

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
        self._rules_version: str | None = None
        if predictor is None and catalog is not None:  # read once: a relabel changes registry_state (a reload)
            with catalog.session() as session:
                self._rules_version = newest_rules_version(session)

    @property
    def model_version(self) -> str:
        """The image model's version, else ``report-rules:<the catalog's newest rules version>``: the version the
        push stamps on the same weak labels, so Label Studio (which skips tasks holding a prediction of the
        version ``/setup`` answers) sends no pushed task again and shows one prediction, one version."""
        if self.predictor is not None:
            return str(self.predictor.model_version)
        return rules_model_version(self._rules_version)

    @property
    def kind(self) -> str:
        return type(self.predictor).__name__ if self.predictor is not None else "ReportRules"

    @property
    def draws_boxes(self) -> bool:
        """Whether the model boxes findings (a detector, alone or attached): for it, no box is an answer."""
        if self.predictor is None:
            return False
        try:
            from radloop.ssl.detection import DetectorPredictor
            from radloop.ssl.predict import CombinedPredictor
        except ImportError:
            return False
        return isinstance(self.predictor, (DetectorPredictor, CombinedPredictor))

    @property
    def reads_pixels(self) -> bool:
        """Whether :meth:`predict` looks at images (an image model); the report rules read only reports."""
        return self.predictor is not None

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
            # The model reads the render (or the fetched pixels); its boxes come back in the original's pixels,
            # which is what prediction_to_ls divides by the geometry's original size.
            sizes = [(case.geometry.width, case.geometry.height) for case in cases]
            outputs = self.predictor.predict(images, original_sizes=sizes)
            return [PredictionRecord(model_version=str(output.model_version), choices=dict(output.choices),
                                     boxes=tuple(output.boxes)) for output in outputs]
        weak: dict[str, PredictionRecord] = {}
        study_ids = sorted({case.study_id for case in cases if case.study_id})
        if self.catalog is not None and study_ids:
            with self.catalog.session() as session:
                weak = weak_label_predictions(session, study_ids)
        empty = PredictionRecord(model_version=self.model_version, choices={})
        # Stamped with the version /setup answers (the catalog's newest rules version, also on a study labelled
        # only by older rules): Label Studio skips tasks holding a prediction of the version /setup gave, so a
        # task answered once is not sent again by the next "Retrieve predictions" (and deferred tasks get their
        # turn).  Tasks pushed with these weak labels carry that version already and are not sent at all.
        return [replace(weak.get(case.study_id or "", empty), model_version=self.model_version) for case in cases]


class ModelHolder:
    """The current :class:`CasePredictor`, replaced atomically.

    Args:
        loader: builds the predictor (e.g. from the registry's current model).
        registry_state: a cheap query of what ``loader`` would load (see :func:`registry_state`); when its
            answer changes, the next :meth:`get` reloads.  None: only :meth:`reload` swaps.
        check_interval_s: at most one ``registry_state`` query per this many seconds.
    """

    def __init__(self, loader: Callable[[], CasePredictor], *, registry_state: Callable[[], Any] | None = None,
                 check_interval_s: float = 5.0) -> None:
        self._loader = loader
        self._registry_state = registry_state
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()  # guards the reference only: held for nanoseconds
        self._reload_lock = threading.Lock()  # one check or load at a time; readers never wait for it
        self._state = self._read_state()
        self._checked_at = time.monotonic()
        self._current = loader()
        self.swaps = 0

    def get(self, *, wait_s: float | None = None) -> CasePredictor:
        """The current predictor; first reloads it when the registry's current model changed.

        ``wait_s``: wait at most that long for a due check (and reload), which then goes on in a background
        thread, and answer with the model in place: Label Studio gives ``/health`` 1 s and ``/setup`` 3 s, and
        a backend that misses them is marked disconnected ("Retrieve predictions" then predicts nothing).
        """
        if self._registry_state is not None and time.monotonic() - self._checked_at >= self.check_interval_s:
            if wait_s is None:
                self._refresh()
            else:
                check = threading.Thread(target=self._refresh, name="radloop-model-check", daemon=True)
                check.start()
                check.join(wait_s)
        with self._lock:
            return self._current

    def swap(self, predictor: CasePredictor) -> None:
        with self._lock:
            self._current = predictor
            self.swaps += 1

    def reload(self) -> str:
        """Load the registry's current model (outside the lock) and swap it in; returns its version."""
        with self._reload_lock:
            return self._load()

    def _load(self) -> str:
        state = self._read_state()  # read before loading: a change during the load is seen by the next check
        fresh = self._loader()
        self.swap(fresh)
        self._state, self._checked_at = state, time.monotonic()
        return fresh.model_version

    def _refresh(self) -> None:
        if not self._reload_lock.acquire(blocking=False):
            return  # another request is checking or loading: this one is served by the model in place
        try:
            if time.monotonic() - self._checked_at < self.check_interval_s:
                return
            state = self._read_state()
            self._checked_at = time.monotonic()
            if state != self._state:
                old = self._current.model_version
                logger.info("the registry's current model changed: now serving %s (was %s)", self._load(), old)
        except Exception:  # a failed check or load keeps the model in place; the next check tries again
            logger.exception("could not reload the current model; still serving %s", self._current.model_version)
        finally:
            self._reload_lock.release()

    def _read_state(self) -> Any:
        return self._registry_state() if self._registry_state is not None else None


def registry_state(catalog: Catalog, task: str = "findings") -> tuple:
    """What :func:`load_case_predictor` would load, in two small queries: the current (task, version) pairs of
    ``task`` and of the detector it attaches, then ``("report-rules", version)`` of the newest weak labels when
    there are any (a relabel changes what the rules-only predictor answers)."""
    with catalog.session() as session:
        rows = session.execute(select(Model.task, Model.version).where(
            Model.is_current.is_(True), Model.task.in_(sorted({task, TASK_DETECTION})))).all()
        rules_version = newest_rules_version(session)
    state = tuple(sorted((row.task, row.version) for row in rows))
    return state + ((("report-rules", rules_version),) if rules_version else ())


def load_case_predictor(catalog: Catalog | None, task: str = "findings") -> CasePredictor:
    """A :class:`CasePredictor` on the registry's current model (or the report rules)."""
    predictor = load_current_predictor(catalog, task) if catalog is not None else None
    return CasePredictor(catalog, predictor)


def first_case(catalog: Catalog) -> str | None:
    """Any catalog image id (for benchmarks)."""
    with catalog.session() as session:
        return session.scalars(select(Image.id).order_by(Image.id).limit(1)).first()
