"""A round's record in the catalog: its settings, its report, the locked update of its row, its lookup by
number and the Label Studio server it talks to.

Split from :mod:`radloop.app.rounds` (the state machine), which re-exports the public names.  The ``Round``
row has other writers: a pull of the round (``radloop round pull``, the ML backend's pull before training)
stores its cursor in ``meta["ls_pull"]`` and the answered count in ``labels_spent`` under the row's lock
(:func:`radloop.core.catalog.get_for_update`); :func:`update_round` takes the same lock, so that neither
writer loses the other's keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError, model_validator
from sqlalchemy import select

from radloop.app.round_labels import round_progress
from radloop.core.catalog import Catalog, get_for_update
from radloop.core.config import StrictModel, load_config
from radloop.core.schema import Round

logger = logging.getLogger(__name__)

__all__ = ["Progress", "RoundConfig", "RoundError", "RoundReport", "STATES", "TOKEN_VARIABLES_HINT",
           "label_studio_server", "load_round_config", "no_progress", "open_round", "report_of", "round_id_for_number",
           "round_server", "shown_state", "started_with", "update_round"]

Progress = Callable[[str, float], None]
STATES = ("created", "selected", "pushed", "answered", "trained", "finished")
#: What fixes a refused token for the `radloop round ...` commands that talk to Label Studio without a --token
#: option (start, finish): they read the token from the environment only.
TOKEN_VARIABLES_HINT = ("set LABEL_STUDIO_API_KEY (or RADLOOP_LS_TOKEN) to a valid token of that server (this "
                        "command has no --token option)")


def no_progress(_message: str, _fraction: float) -> None:
    """The :data:`Progress` callback of a caller that shows none."""
    return None


class RoundError(RuntimeError):
    """A round cannot proceed; the message says what to do next."""


class RoundConfig(StrictModel):
    """Settings of a round (``configs/rounds/default.yaml``; every field can be overridden).

    ``pool_split`` (where the round selects images to label) and ``eval_split`` (the held-out split its
    metric is measured on) must differ: a probe trained on images of the split it is scored on reports a
    leaked metric.  The probe never trains on images of ``eval_split`` either, wherever their labels came
    from (:func:`radloop.app.round_labels.training_labels`).
    """

    task: str = "fracture"
    strategy: str = "badge"
    #: keyword parameters of ``strategy`` (e.g. stratified: {base: margin, quotas: {wrist: 0.5, elbow: 0.5}})
    strategy_params: dict[str, Any] = {}
    budget: int = 50
    cold_start_strategy: str = "typiclust"
    encoder: str | None = None  # registry version; default: the current encoder
    dataset: str | None = None  # restrict the pool to one dataset
    pool_split: Literal["train", "val", "test"] = "train"
    eval_split: Literal["train", "val", "test"] = "test"
    simulate: bool = False
    random_state: int = 0
    probe_C: float = 1.0
    #: None: the server `radloop ls init` bound this workspace to, else ``$LABEL_STUDIO_URL``, else no server
    label_studio_url: str | None = None
    label_studio_project: str | None = None  # None: the project `radloop ls init` bound, else "radloop findings"
    push: bool = True  # False: only write the Label Studio import file, even with a server configured
    #: False: images an expert answered "cannot tell" for ``task``, or whose task was skipped, in an earlier
    #: round stay out of new rounds' pools (the round's notes count them); True: they may be selected again
    reselect_unclear: bool = False

    @model_validator(mode="after")
    def _pool_is_not_the_eval_split(self) -> "RoundConfig":
        if self.pool_split == self.eval_split:
            raise ValueError(f"pool_split and eval_split are both {self.pool_split!r}: a round would select (and "
                             f"train on) images of the split its metric is measured on; set pool_split (e.g. "
                             f"'train') and eval_split (e.g. 'test') to different splits")
        return self


def load_round_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RoundConfig:
    return load_config(path, RoundConfig, overrides)


@dataclass
class RoundReport:
    """What one round did and bought."""

    round_id: int
    number: int
    state: str
    strategy: str
    task: str
    budget: int
    selected: int = 0
    #: selections answered / skipped / still waiting / deleted in Label Studio, as far as pulls brought them
    answered: int = 0
    skipped: int = 0
    pending: int = 0
    deleted: int = 0
    labels_spent: int = 0
    #: labels the round's model was trained on: known when the round finishes (None while it is open)
    labels_total: int | None = None
    #: expert labels of evaluation-split images left out of that training (they stay the held-out truth);
    #: None while the round is open and for rounds finished before this was recorded
    labels_left_out: int | None = None
    metric_name: str | None = None
    metric_before: float | None = None
    metric_after: float | None = None
    model_version: str | None = None
    tasks_file: str | None = None
    notes: list[str] = field(default_factory=list)
    #: selections in no Label Studio project: written to the import file only (or not handed out yet)
    not_in_label_studio: int = 0
    #: where the batch went: "Label Studio", "import file" (``--no-push`` or no server: ``state`` still
    #: reads "pushed", see :func:`shown_state`), "simulation", or None before it was handed out
    handed_out: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _handed_out(row: Round, selected: int, outside: int) -> str | None:
    """Where a round's batch went (see :attr:`RoundReport.handed_out`)."""
    if row.state in ("created", "selected"):
        return None
    if (row.config or {}).get("simulate"):
        return "simulation"
    return "import file" if selected and outside >= selected else "Label Studio"


def shown_state(report: RoundReport) -> str:
    """The state to show a user: ``exported`` for a round whose batch was only written to an import file (stored
    as ``pushed``, which read as if Label Studio had it), else the stored state."""
    return "exported" if report.state == "pushed" and report.handed_out == "import file" else report.state


def report_of(row: Round, catalog: Catalog, progress: dict[int, dict[str, int]] | None = None) -> RoundReport:
    """The report of a round's row (``progress``: :func:`round_progress` of several rounds, read once)."""
    meta = row.meta or {}
    tasks = (progress if progress is not None else round_progress(catalog, [row.id])).get(row.id, {})
    selected, outside = int(meta.get("selected", 0)), tasks.get("not_in_label_studio", 0)
    return RoundReport(round_id=row.id, number=row.number, state=row.state, strategy=row.strategy,
                       task=row.task, budget=row.budget, selected=selected,
                       answered=tasks.get("answered", 0), skipped=tasks.get("skipped", 0),
                       pending=tasks.get("pending", 0), deleted=tasks.get("deleted", 0),
                       labels_spent=row.labels_spent,
                       labels_total=(int(meta["labels_total"]) if meta.get("labels_total") is not None else None),
                       labels_left_out=(int(meta["labels_left_out"]) if meta.get("labels_left_out") is not None
                                        else None),
                       metric_name=row.metric_name, metric_before=row.metric_before,
                       metric_after=row.metric_after, model_version=row.model_version,
                       tasks_file=meta.get("tasks_file"), notes=list(meta.get("notes", [])),
                       not_in_label_studio=outside, handed_out=_handed_out(row, selected, outside))


def update_round(catalog: Catalog, round_id: int, *, meta: dict[str, Any] | None = None,
                 notes: Callable[[list[str]], list[str]] | None = None, **values: Any) -> Round:
    """Set columns of the round's row and merge keys into its ``meta``, under the row's lock.

    The meta is read once the lock is held, so that a pull storing its cursor at the same time either
    finishes first (its keys are kept) or waits for this update (and keeps this update's keys).

    Args:
        meta: keys to set in ``Round.meta``; the others stay.
        notes: the round's new notes as a function of its current ones (called under the lock).
        values: columns to set (``state``, ``labels_spent``, ...).

    Raises:
        LookupError: no round with this id.
    """
    with catalog.session() as session:
        row = get_for_update(session, Round, round_id)
        if row is None:
            raise LookupError(f"no round with id {round_id}")
        merged = dict(row.meta or {})
        merged.update(meta or {})
        if notes is not None:
            merged["notes"] = list(notes(list(merged.get("notes", []))))
        row.meta = merged  # reassign: JSON columns do not track in-place changes
        for key, value in values.items():
            setattr(row, key, value)
        session.flush()
        return row


def started_with(row: Round) -> RoundConfig:
    """The settings an open round was started with.

    A round started before ``pool_split == eval_split`` was refused still resumes and finishes: its probe
    never trains on the evaluation split's images (:func:`radloop.app.round_labels.training_labels`), so its metric is a
    held-out one; new rounds with such settings are refused by :class:`RoundConfig`.
    """
    saved = row.config or {}
    try:
        return RoundConfig.model_validate(saved)
    except ValidationError:
        if saved.get("pool_split") is None or saved.get("pool_split") != saved.get("eval_split"):
            raise
    # every other setting validated as usual (with a stand-in eval split), then the saved split put back unchecked
    stand_in = next(split for split in ("test", "val", "train") if split != saved["pool_split"])
    config = RoundConfig.model_validate({**saved, "eval_split": stand_in})
    logger.warning("round %s was started with pool_split = eval_split = %r; it finishes without training "
                   "on that split", row.number, saved["eval_split"])
    return config.model_copy(update={"eval_split": saved["eval_split"]})


def open_round(catalog: Catalog) -> Round | None:
    """The newest round not finished yet, if any."""
    with catalog.session() as session:
        return session.scalars(select(Round).where(Round.state != "finished").order_by(Round.id.desc())).first()


def round_id_for_number(catalog: Catalog, number: int) -> int:
    """The catalog id of round ``number`` (the number `radloop round status` shows; ids are internal).

    Raises:
        RoundError: no round has that number; the message lists the numbers there are.
    """
    with catalog.session() as session:
        found = session.scalars(select(Round.id).where(Round.number == number).order_by(Round.id.desc())).first()
        if found is not None:
            return int(found)
        numbers = list(session.scalars(select(Round.number).distinct().order_by(Round.number)))
    there = (f"existing rounds: {', '.join(str(n) for n in numbers)}" if numbers
             else "the catalog has no rounds yet (start one with `radloop round start`)")
    raise RoundError(f"no round number {number}; {there} (see `radloop round status`)")


def label_studio_server(catalog: Catalog, config: RoundConfig) -> tuple[str | None, str]:
    """The Label Studio server a round talks to, and where that choice came from.

    In order: ``config.label_studio_url``, the server ``radloop ls init`` bound the workspace to, then
    ``$LABEL_STUDIO_URL``; ``(None, reason)`` when there is none or ``config.push`` is off.

    Raises:
        RoundError: the workspace's binding file is unreadable.
    """
    if not config.push:
        return None, "push: false"
    from radloop.labeling.ls_project import label_studio_url

    try:
        return label_studio_url(catalog.workspace, config.label_studio_url)
    except ValueError as error:  # a damaged binding file: say so instead of silently not pushing
        raise RoundError(f"the workspace's Label Studio binding is unreadable ({error}): "
                         "rerun `radloop ls init`") from error


def round_server(catalog: Catalog, row: Round, config: RoundConfig) -> str | None:
    """The server to pull a round's answers from: the one its batch was pushed to, else
    :func:`label_studio_server` of ``config``."""
    return (row.meta or {}).get("label_studio", {}).get("url") or label_studio_server(catalog, config)[0]
