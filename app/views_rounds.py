"""Round history for the app: rounds with what they bought, the learning curve, the selection queue."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import select

from radloop.app.views import UNKNOWN_REGION
from radloop.core.catalog import Catalog
from radloop.core.records import Box
from radloop.core.schema import Annotation, Image, Round, Selection
from radloop.core.workspace import Workspace

__all__ = ["ROUND_COLUMNS", "DEMO_SUMMARY", "PredictedBoxes", "RoundInfo", "SelectionQueue", "rounds_frame",
           "learning_curve", "demo_baseline", "latest_round", "predicted_boxes", "selection_queue"]


ROUND_COLUMNS = ["round_id", "number", "state", "strategy", "budget", "task", "labels_spent", "labels_total",
                 "metric_name", "metric_before", "metric_after", "gain", "model_version", "created_at",
                 "finished_at"]


def rounds_frame(catalog: Catalog) -> pd.DataFrame:
    """All active-learning rounds in order, with the labels bought so far and the metric gain.

    ``labels_total`` is the round's recorded ``meta["labels_total"]`` (labels the model was trained on) when
    the round scripts stored it, else the running sum of ``labels_spent`` over the rounds of the same task
    (labels bought for another finding do not train this one's model).

    Returns:
        DataFrame with the columns of :data:`ROUND_COLUMNS` (empty when no round was run).
    """
    with catalog.session() as session:
        rounds = session.scalars(select(Round).order_by(Round.number, Round.id)).all()
    rows, totals = [], {}
    for round_ in rounds:
        # The round scripts record how many labels the model was trained on; else count what rounds spent.
        recorded = (round_.meta or {}).get("labels_total")
        total = (int(recorded) if isinstance(recorded, (int, float))
                 else totals.get(round_.task, 0) + (round_.labels_spent or 0))
        totals[round_.task] = total
        gain = (round_.metric_after - round_.metric_before
                if round_.metric_after is not None and round_.metric_before is not None else None)
        rows.append((round_.id, round_.number, _shown_state(catalog, round_), round_.strategy, round_.budget,
                     round_.task,
                     round_.labels_spent or 0, total, round_.metric_name, round_.metric_before,
                     round_.metric_after, gain, round_.model_version, round_.created_at, round_.finished_at))
    return pd.DataFrame(rows, columns=ROUND_COLUMNS)


def _shown_state(catalog: Catalog, round_: Round) -> str:
    """The state as `radloop round status` shows it: ``exported`` for a round whose batch was only written to a
    Label Studio import file (stored as ``pushed``, which read as if Label Studio had it)."""
    if round_.state != "pushed":
        return round_.state
    from radloop.app.round_record import report_of, shown_state

    return shown_state(report_of(round_, catalog))


def learning_curve(rounds: pd.DataFrame, baseline: pd.DataFrame | None = None) -> pd.DataFrame:
    """Metric against the cumulative number of expert labels, one line per metric name (``auroc.<task>``:
    one line per task; a round's ``metric_before`` is empty when the previous round of its task measured
    otherwise, e.g. with another encoder, and then gives no point).

    Each finished round gives the point (labels before it, metric before) and (labels after it, metric
    after); duplicate x positions keep the latest value.

    Args:
        rounds: output of :func:`rounds_frame`.
        baseline: optional extra line with the same columns (e.g. :func:`demo_baseline`).

    Returns:
        DataFrame with columns ``labels, metric, metric_name`` sorted by labels (empty without metrics).
    """
    points: dict[tuple[str, int], float] = {}
    for row in rounds.itertuples(index=False):
        name = row.metric_name if isinstance(row.metric_name, str) and row.metric_name else "metric"
        before = row.labels_total - row.labels_spent
        if pd.notna(row.metric_before):
            points[(name, int(before))] = float(row.metric_before)
        if pd.notna(row.metric_after):
            points[(name, int(row.labels_total))] = float(row.metric_after)
    frame = pd.DataFrame([(labels, metric, name) for (name, labels), metric in points.items()],
                         columns=["labels", "metric", "metric_name"])
    if baseline is not None and not baseline.empty:
        frame = pd.concat([frame, baseline[["labels", "metric", "metric_name"]]], ignore_index=True)
    return frame.sort_values(["metric_name", "labels"], ignore_index=True)


#: Where ``radloop demo`` writes its summary (inside the workspace's rounds/ folder).
DEMO_SUMMARY = "demo_summary.json"


def demo_baseline(workspace: Workspace) -> pd.DataFrame:
    """The random-selection baseline that ``radloop demo`` measured at the rounds' label counts.

    Returns:
        DataFrame with columns ``labels, metric, metric_name`` (empty without a readable demo summary).
    """
    path = workspace.rounds_dir / DEMO_SUMMARY
    columns = ["labels", "metric", "metric_name"]
    try:
        entries = json.loads(path.read_text()).get("random_baseline") or []
    except (OSError, ValueError, AttributeError):
        return pd.DataFrame(columns=columns)
    rows = [(int(entry["labels"]), float(entry["auroc_mean"]), "random selection (demo baseline)")
            for entry in entries if isinstance(entry, dict) and entry.get("auroc_mean") is not None
            and entry.get("labels") is not None]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class RoundInfo:
    """One active-learning round as the app shows it.

    ``notes`` are what the round scripts recorded (e.g. a cold-start fallback); ``tasks_file`` is the Label
    Studio import file written for the batch (relative to the workspace) and ``label_studio_url`` the
    server the batch was pushed to, when it was.  ``task`` and ``simulate`` are how the round was started (an
    open round resumes with them).
    """

    round_id: int
    number: int
    state: str
    strategy: str
    budget: int
    labels_spent: int
    metric_name: str | None
    metric_before: float | None
    metric_after: float | None
    model_version: str | None
    notes: tuple[str, ...] = ()
    tasks_file: str | None = None
    label_studio_url: str | None = None
    task: str | None = None
    simulate: bool = False
    #: the state to show (``exported`` for a batch only written to an import file, as `radloop round status`)
    shown_state: str = ""


def _round_info(round_: Round, catalog: Catalog | None = None) -> RoundInfo:
    meta = round_.meta or {}
    pushed = meta.get("label_studio") if isinstance(meta.get("label_studio"), dict) else {}
    return RoundInfo(round_id=round_.id, number=round_.number, state=round_.state, strategy=round_.strategy,
                     budget=round_.budget, labels_spent=round_.labels_spent or 0, metric_name=round_.metric_name,
                     metric_before=round_.metric_before, metric_after=round_.metric_after,
                     model_version=round_.model_version, notes=tuple(str(note) for note in meta.get("notes") or ()),
                     tasks_file=meta.get("tasks_file"), label_studio_url=pushed.get("url"), task=round_.task,
                     simulate=bool((round_.config or {}).get("simulate", meta.get("simulate", False))),
                     shown_state=_shown_state(catalog, round_) if catalog is not None else round_.state)


def latest_round(catalog: Catalog) -> RoundInfo | None:
    """The most recent round (highest number), or None before the first one."""
    with catalog.session() as session:
        round_ = session.scalars(select(Round).order_by(Round.number.desc(), Round.id.desc())).first()
        return _round_info(round_, catalog) if round_ is not None else None


@dataclass(frozen=True)
class PredictedBoxes:
    """The model's boxes a selected image was sent to Label Studio with (original-image pixels, with scores)."""

    model_version: str | None
    boxes: tuple[Box, ...]


#: ``Selection.meta`` key the task builder keeps the model's boxes under (``radloop.labeling.ls_tasks.PREDICTED_META``)
_PREDICTED_META = "predicted"


def predicted_boxes(meta: dict | None) -> PredictedBoxes | None:
    """The model boxes stored in a selection's ``meta``; None when none were stored (a round built before they
    were kept, or without a model).  Damaged entries are left out."""
    stored = (meta or {}).get(_PREDICTED_META)
    if not isinstance(stored, dict):
        return None
    boxes = []
    for entry in stored.get("boxes") or ():
        try:
            score = entry.get("score")
            boxes.append(Box(str(entry["label"]), float(entry["x"]), float(entry["y"]), float(entry["w"]),
                             float(entry["h"]), None if score is None else float(score)))
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    version = stored.get("model_version")
    return PredictedBoxes(model_version=str(version) if version else None, boxes=tuple(boxes))


@dataclass(frozen=True)
class SelectionQueue:
    """The images a round picked for annotation.

    ``items`` has columns ``rank, image_id, score, strategy, reason, body_region, annotated, ls_task_id``
    (``body_region`` is ``unknown`` for an image without one, as the tiles and the overview name it);
    ``annotated`` says whether the round already received an expert answer (any annotation kind, skips
    included) for the image.  ``predicted`` maps an image to the model boxes its task was sent with (images
    without stored ones are absent).
    """

    round: RoundInfo | None
    items: pd.DataFrame
    predicted: dict[str, PredictedBoxes] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        """Selected images the round has no expert answer for yet."""
        return int((~self.items["annotated"]).sum()) if len(self.items) else 0


def selection_queue(catalog: Catalog, round_id: int | None = None) -> SelectionQueue:
    """Selections of ``round_id`` (default: the latest round), by rank."""
    columns = ["rank", "image_id", "score", "strategy", "reason", "body_region", "annotated", "ls_task_id"]
    with catalog.session() as session:
        if round_id is None:
            round_ = session.scalars(select(Round).order_by(Round.number.desc(), Round.id.desc())).first()
        else:
            round_ = session.get(Round, round_id)
        if round_ is None:
            return SelectionQueue(round=None, items=pd.DataFrame(columns=columns))
        rows = session.execute(
            select(Selection, Image.body_region).join(Image, Image.id == Selection.image_id)
            .where(Selection.round_id == round_.id).order_by(Selection.rank)).all()
        selected = [selection.image_id for selection, _ in rows]
        annotated = set(session.scalars(
            select(Annotation.image_id).distinct().where(Annotation.image_id.in_(selected),
                                                        Annotation.round_id == round_.id)))
        info = _round_info(round_, catalog)
        predicted = {selection.image_id: found for selection, _ in rows
                     if (found := predicted_boxes(selection.meta)) is not None}
    items = pd.DataFrame(
        [(selection.rank, selection.image_id, selection.score, selection.strategy, selection.reason,
          region or UNKNOWN_REGION,
          selection.image_id in annotated, selection.ls_task_id) for selection, region in rows],
        columns=columns)
    return SelectionQueue(round=info, items=items, predicted=predicted)
