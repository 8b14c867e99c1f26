"""Finishing an active-learning round: collect the answers, train the round's probe, record what it bought.

Split from :mod:`radloop.app.rounds` (the round's state machine and its start), which re-exports
:func:`finish_round`.  The states a finish walks through, each step idempotent::

    selected / pushed -> answered -> trained -> finished

Answers come from Label Studio (a pull, :mod:`radloop.labeling.ls_sync`) or, in simulation, from the
dataset's own expert annotations; the probe trains on every label bought so far except the evaluation
split's (:func:`radloop.app.round_labels.train_round_probe`), and ``metric_before`` is the previous finished
round's metric when it was measured the same way (:func:`_previous_metric`), else the same probe fitted on
the labels held before this round, measured the way this round measures (:func:`_metric_before`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import select

from radloop.app.round_labels import (
    late_answers_hint, open_task_notes, remeasure_before, round_progress, simulate_answers, train_round_probe,
)
from radloop.app.round_record import (
    TOKEN_VARIABLES_HINT, Progress, RoundConfig, RoundError, RoundReport, no_progress, open_round, report_of,
    round_server, started_with, update_round,
)
from radloop.core.catalog import Catalog
from radloop.core.schema import Round

logger = logging.getLogger(__name__)

__all__ = ["finish_round"]


def finish_round(catalog: Catalog, *, progress: Progress | None = None, simulate: bool | None = None,
                 number: int | None = None) -> RoundReport:
    """Collect the answers of the open round, fine-tune, evaluate and record what the round bought.

    The round's answered selections in the catalog count, whether this call or an earlier ``radloop round
    pull`` brought them; ``labels_spent`` is their number (a pull records it under the round's lock).  Tasks
    still unanswered are reported in the round's notes (a later pull collects them).  ``number``: the round the
    caller means (the app's button named it); another open round, or none, is refused instead of finished.

    Raises:
        RoundError: no open round (or not round ``number``), no answers yet (Label Studio still labelling), or
            Label Studio unreachable (nothing is lost: rerunning resumes).
    """
    progress = progress or no_progress
    row = open_round(catalog)
    if number is not None and (row is None or row.number != number):
        raise RoundError(f"round {number} is not open any more" + (f" (round {row.number} is)" if row is not None
                                                                    else "") + ": nothing was done")
    if row is None:
        raise RoundError("no open round: start one with `radloop round start --budget 50`" + late_answers_hint(catalog))
    config = started_with(row)
    if simulate is not None:
        config = config.model_copy(update={"simulate": simulate})
    elif config.simulate and row.state in ("selected", "pushed") and _in_label_studio(catalog, row.id):
        # a simulated round whose batch was pushed to Label Studio since (`radloop round push`): its answers are
        # the experts'; only an explicit --simulate answers it from the ground truth
        config = config.model_copy(update={"simulate": False})
    if row.state == "created":
        raise RoundError(f"round {row.number} has no selection yet: run `radloop round start` again to resume it")
    if row.state in ("selected", "pushed"):
        progress("collecting answers", 0.1)
        if config.simulate:
            simulate_answers(catalog, row.id, config.task)
        else:
            _pull_answers(catalog, row, config)
        tasks = round_progress(catalog, [row.id]).get(row.id, {})
        answered = tasks.get("answered", 0)
        if answered == 0 and not config.simulate and tasks.get("not_in_label_studio"):
            outside, total = tasks["not_in_label_studio"], sum(tasks.values())
            raise RoundError(f"round {row.number}: " + (f"its {outside}" if outside == total else
                                                        f"{outside} of its {total}") +
                             f" task(s) are not in Label Studio yet: push them with `radloop round push --round "
                             f"{row.number}` (or finish with --simulate)")
        if answered == 0 and not config.simulate:
            raise RoundError(f"round {row.number}: no annotations yet in Label Studio ({tasks.get('pending', 0)} "
                             "task(s) waiting); label the tasks, then rerun `radloop round finish`")
        open_tasks = [] if config.simulate else open_task_notes(row, tasks)
        # a Label Studio round's labels_spent is the pull's, stored under the lock: not this older count
        spent = {"labels_spent": answered} if config.simulate else {}
        row = update_round(catalog, row.id, state="answered", notes=lambda notes: notes + open_tasks, **spent)
    if row.state == "answered":
        result = train_round_probe(catalog, row, config, progress)
        previous, previous_note = _metric_before(catalog, row, config, result.get("eval_images"))
        added = [note for note in (previous_note, result.get("note")) if note]
        row = update_round(catalog, row.id, state="trained", metric_name=f"auroc.{config.task}",
                           metric_before=previous, metric_after=result.get("metric"),
                           meta={"labels_total": result["labels_total"], "probe_version": result.get("model_version"),
                                 "eval_images": result.get("eval_images"),
                                 "labels_left_out": result.get("labels_left_out")},
                           notes=lambda notes: notes + added)
    if row.state == "trained":
        row = update_round(catalog, row.id, state="finished", finished_at=datetime.now(timezone.utc))
    progress("round finished", 1.0)
    return report_of(row, catalog)


def _in_label_studio(catalog: Catalog, round_id: int) -> bool:
    """Whether any of the round's tasks was pushed to a Label Studio project."""
    from radloop.labeling import ls_sync

    return ls_sync.pushed_binding(catalog, round_id) is not None


def _pull_answers(catalog: Catalog, row: Round, config: RoundConfig) -> None:
    """Pull the round's new annotations from Label Studio into the catalog."""
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_client import AuthenticationError, LabelStudioError

    binding = ls_sync.pushed_binding(catalog, row.id)  # where its tasks went, even if the workspace moved since
    url = binding.url if binding is not None else round_server(catalog, row, config)
    if not url:
        raise RoundError(f"round {row.number} went to an import file ({(row.meta or {}).get('tasks_file')}); "
                         "import it into Label Studio, then connect the workspace with `radloop ls init --url "
                         "URL` (or set LABEL_STUDIO_URL) and rerun, or finish with --simulate")
    try:
        ls_sync.pull_round(catalog, ls_sync.client_from_env(url), row.id, binding=binding,
                           project=None if binding is not None else config.label_studio_project)
    except LabelStudioError as error:
        rerun = "rerun `radloop round finish` to resume"
        if isinstance(error, AuthenticationError):  # `round finish` has no --token option: only the variables help
            rerun = f"{TOKEN_VARIABLES_HINT}, then rerun `radloop round finish` to resume"
        never_pushed = ""
        if binding is None and (row.meta or {}).get("tasks_file"):  # handed out as a file, never pushed
            never_pushed = (f"\nRound {row.number}'s batch went to an import file and was never pushed: push it with "
                            f"`radloop round push --round {row.number}` (or import the file into the project), or "
                            "finish with --simulate")
        raise RoundError(f"round {row.number}: the answers could not be pulled from Label Studio at {url}: "
                         f"{error}\nNothing was lost: round {row.number} stays open with what earlier pulls "
                         f"brought; {rerun}{never_pushed}") from error


def _previous_metric(catalog: Catalog, row: Round, config: RoundConfig,
                     eval_images: int | None = None) -> tuple[float | None, str | None]:
    """``metric_before`` of a round: the ``metric_after`` of the latest finished round of the same task and
    metric, and a note when there is one but it is not comparable.

    An earlier round measured with another encoder (other features), on another evaluation split, or on
    another number of evaluation images (``eval_images``: images ingested since, another ``dataset``) scored
    on something else: no metric then, and a note saying what changed (:func:`_metric_before` measures again).
    Rounds of other tasks never count.
    """
    name = f"auroc.{config.task}"
    with catalog.session() as session:
        previous = session.scalars(select(Round).where(
            Round.number < row.number, Round.state == "finished", Round.task == config.task,
            Round.metric_name == name).order_by(Round.number.desc())).first()
        if previous is None:
            return None, None
        changed = _measured_otherwise(previous, row.model_version, config.eval_split, eval_images)
        if not changed:
            return previous.metric_after, None
        return None, (f"round {previous.number}'s {name} was measured otherwise ({'; '.join(changed)}), so it "
                      "is not this round's starting point")


def _metric_before(catalog: Catalog, row: Round, config: RoundConfig,
                   eval_images: int | None) -> tuple[float | None, str | None]:
    """``metric_before`` and its note: the previous round's metric when it was measured the same way
    (:func:`_previous_metric`), else measured again the way this round measures
    (:func:`radloop.app.round_labels.remeasure_before`: this round's encoder and evaluation images, the
    labels held before this round), so that every round says what its labels bought.  A task's first round
    is measured so too when labels were held before it (expert labels ingested or bought outside rounds)."""
    previous, note = _previous_metric(catalog, row, config, eval_images)
    if previous is not None:
        return previous, None
    metric, labels, why = remeasure_before(catalog, row, config)
    if note is None:  # the task's first round: labels held before it (e.g. ingested expert labels) count too
        return metric, (None if metric is None else f"metric before: the probe on the {labels} label(s) held "
                        "before this round (no earlier round of the task)")
    if metric is None:
        return None, f"{note}; no metric before: {why}"
    return metric, (f"{note}; metric before measured again: the probe on the {labels} label(s) held before "
                    f"this round, with this round's encoder and evaluation images")


def _measured_otherwise(previous: Round, encoder: str | None, eval_split: str, eval_images: int | None) -> list[str]:
    """What differs between how ``previous`` measured its metric and how this round does (what each recorded)."""
    theirs = {"encoder": previous.model_version, "eval_split": (previous.config or {}).get("eval_split"),
              "eval_images": (previous.meta or {}).get("eval_images")}
    mine = {"encoder": encoder, "eval_split": eval_split, "eval_images": eval_images}
    return [f"{name} {theirs[name]!r} -> {mine[name]!r}" for name in theirs
            if theirs[name] is not None and mine[name] is not None and theirs[name] != mine[name]]
