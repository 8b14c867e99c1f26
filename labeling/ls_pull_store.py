"""Storing what a pull read from Label Studio: annotation versions, quarantined results, withdrawals, consensus;
and releasing a finished round's unanswered tasks whose project was deleted.

:func:`radloop.labeling.ls_sync.pull_round` reads Label Studio (:class:`LabelStudioRead`) and calls
:func:`store_pull` under the round's lock; the rules (append-only versions, withdrawal of deleted annotations,
the disagreement rule) are described in ``ls_sync``'s docstring.  Also the helpers for a selection's
``meta["ls"]`` that push and pull share.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select

from radloop.core.catalog import Catalog, get_for_update
from radloop.core.schema import Annotation, QuarantinedAnnotation, Round, Selection
from radloop.labeling.ls_adapter import ImageGeometry, LSTask, parse_task
from radloop.labeling.ls_client import LabelStudioClient, LabelStudioError
from radloop.labeling.ls_consensus import SOURCE, _reconcile, _selection_states, _withdraw_deleted
from radloop.labeling.ls_project import ProjectBinding

__all__ = ["LabelStudioRead", "ls_annotation_count", "ls_meta", "now_iso", "release_deleted_project_tasks",
           "released_note", "set_ls_meta", "store_pull", "stored_annotation_counts"]

logger = logging.getLogger(__name__)


def ls_meta(selection: Selection) -> dict:
    """A copy of the selection's Label Studio state (``meta["ls"]``: project, task, push/pull times, status)."""
    return dict((selection.meta or {}).get("ls") or {})


def set_ls_meta(selection: Selection, **values) -> None:
    """Update ``meta["ls"]`` with ``values``."""
    meta = dict(selection.meta or {})
    ls = dict(meta.get("ls") or {})
    ls.update(values)
    meta["ls"] = ls
    selection.meta = meta  # reassign: JSON columns do not track in-place changes


def now_iso() -> str:
    """Now, UTC, ISO 8601."""
    return datetime.now(timezone.utc).isoformat()


@dataclass
class LabelStudioRead:
    """What a pull read from Label Studio for one round."""

    pull_state: dict  # the round's ``meta["ls_pull"]`` the read started from
    cursor: str | None  # the ``updated_after`` filter sent, None for a full read
    raw_tasks: list[dict]
    all_task_ids: set[int]
    annotators: dict[int, str]
    geometries: dict[str, ImageGeometry]
    #: tasks read although unchanged, because Label Studio counts fewer annotations on them than the catalog
    rechecked: int = 0


def ls_annotation_count(task: dict) -> int | None:
    """How many annotations Label Studio counts on a listed task (``total_annotations`` + ``cancelled_annotations``,
    also in a listing without annotations); None when the listing does not say."""
    total, cancelled = task.get("total_annotations"), task.get("cancelled_annotations")
    if not isinstance(total, int):
        return None
    return total + (cancelled if isinstance(cancelled, int) else 0)


def stored_annotation_counts(session, project_id: int, task_ids, round_ids=None) -> Counter:
    """Task id -> how many Label Studio annotations of ``project_id`` the catalog holds live (not withdrawn) for
    each of ``task_ids`` (optionally only rows of ``round_ids``)."""
    task = Annotation.meta["ls_task_id"].as_integer()  # one row per annotation and task, read by the database
    query = select(Annotation.external_id, task).distinct().where(
        Annotation.source == SOURCE, Annotation.kind.in_(("choice", "box", "skip")),
        Annotation.external_id.like(f"ls:{int(project_id)}:%"))
    if round_ids is not None:
        query = query.where(Annotation.round_id.in_(list(round_ids)))
    wanted, found = set(task_ids), defaultdict(set)
    for external_id, task_id in session.execute(query):
        if task_id in wanted:
            found[task_id].add(external_id)
    return Counter({task_id: len(ids) for task_id, ids in found.items()})


def _store_task(session, task: LSTask, round_id: int, project_id: int, annotators: dict[int, str],
                stored: dict[str, tuple[set[str], int]], counts: Counter) -> None:
    image_id = task.case_id
    for problem in task.problems:
        session.add(QuarantinedAnnotation(image_id=image_id, source=SOURCE, reason=problem.reason,
                                          raw={"task_id": task.task_id, "item": problem.raw}))
        counts["quarantined"] += 1
    for version in task.annotations:
        external_id = f"ls:{project_id}:{version.annotation_id}"
        stamps, last_version = stored.get(external_id, (set(), 0))
        if version.version_stamp in stamps:
            continue
        number = last_version + 1
        stored[external_id] = (stamps | {version.version_stamp}, number)
        who = annotators.get(version.annotator_id or -1) or (
            f"ls-user-{version.annotator_id}" if version.annotator_id is not None else None)
        meta = {"ls_task_id": task.task_id, "ls_project_id": project_id, "ls_annotation_id": version.annotation_id,
                "ls_version_stamp": version.version_stamp, "annotated_at": version.updated_at.isoformat(),
                "lead_time": version.lead_time, "ground_truth": version.ground_truth}
        if version.comment:
            meta["comment"] = version.comment
        if version.notes:
            meta["notes"] = list(version.notes)
        common = dict(image_id=image_id, source=SOURCE, annotator=who, external_id=external_id, version=number,
                      round_id=round_id)
        for problem in version.problems:
            session.add(QuarantinedAnnotation(image_id=image_id, source=SOURCE, reason=problem.reason, raw={
                "task_id": task.task_id, "annotation_id": version.annotation_id, "version": number,
                "annotator": who, "result": problem.raw}))
            counts["quarantined"] += 1
        counts["versions"] += 1
        if version.cancelled:
            session.add(Annotation(kind="skip", label="skip", meta=meta, **common))
            counts["skipped"] += 1
            continue
        for finding, value in sorted(version.choices.items()):
            session.add(Annotation(kind="choice", label=finding, meta={**meta, "value": value}, **common))
            counts["choices"] += 1
        for box in version.boxes:
            session.add(Annotation(kind="box", label=box.label, source_label=box.label, x=box.x, y=box.y, w=box.w,
                                   h=box.h, meta=meta, **common))
            counts["boxes"] += 1




def store_pull(session, round_row: Round, read: LabelStudioRead, config, binding: ProjectBinding
                ) -> tuple[Counter, list[int], Counter]:
    """Store what ``read`` brought that the catalog lacks; returns (counts, deleted task ids, selection states).

    Runs under the round's lock: what is stored is read here, not before.
    """
    round_id = round_row.id
    counts: Counter = Counter()
    newest_update = read.pull_state.get("cursor")
    selections = {s.image_id: s for s in session.scalars(select(Selection).where(Selection.round_id == round_id))}
    images = sorted(read.geometries)
    stored: dict[str, tuple[set[str], int]] = defaultdict(lambda: (set(), 0))
    by_task: dict[tuple[object, object], list[Annotation]] = defaultdict(list)
    for annotation in session.scalars(select(Annotation).where(Annotation.source == SOURCE,
                                                               Annotation.image_id.in_(images))):
        stamps, number = stored[annotation.external_id]
        stored[annotation.external_id] = (stamps | {(annotation.meta or {}).get("ls_version_stamp")},
                                          max(number, annotation.version))
        meta = annotation.meta or {}
        by_task[(meta.get("ls_project_id"), meta.get("ls_task_id"))].append(annotation)
    touched: set[str] = set()
    for raw in read.raw_tasks:
        task = parse_task(raw, config, read.geometries.get)
        if task.case_id not in selections or task.case_id not in read.geometries:
            session.add(QuarantinedAnnotation(image_id=task.case_id, source=SOURCE, raw={"task_id": task.task_id},
                                              reason="task does not belong to a selection of this round"))
            counts["quarantined"] += 1
            continue
        _withdraw_deleted(raw, by_task.get((binding.project_id, task.task_id), []), counts)
        _store_task(session, task, round_id, binding.project_id, read.annotators, stored, counts)
        touched.add(task.case_id)
        selection = selections[task.case_id]
        live = [v for v in task.annotations if not v.cancelled]
        status = "annotated" if live else ("skipped" if task.annotations else "pending")
        set_ls_meta(selection, status=status, annotations=len(task.annotations), pulled_at=now_iso(),
                    task_updated_at=task.updated_at.isoformat() if task.updated_at else None)
        if task.updated_at and (newest_update is None or task.updated_at.isoformat() > newest_update):
            newest_update = task.updated_at.isoformat()
        counts["tasks"] += 1
    _reconcile(session, touched, round_id, counts)
    missing = []
    for selection in selections.values():
        meta = ls_meta(selection)
        if (selection.ls_task_id is not None and meta.get("project_id") == binding.project_id
                and selection.ls_task_id not in read.all_task_ids):
            missing.append(selection.ls_task_id)
            if not meta.get("deleted_at"):
                set_ls_meta(selection, deleted_at=now_iso(), status="deleted_in_label_studio")
    session.flush()
    progress = Counter(_selection_states(session, [round_id]).values())
    meta = dict(round_row.meta or {})
    meta["ls_pull"] = {"project_id": binding.project_id, "cursor": newest_update, "pulled_at": now_iso()}
    round_row.meta = meta
    round_row.labels_spent = progress["answered"]  # late answers of a finished round count too
    return counts, missing, progress


def release_deleted_project_tasks(catalog: Catalog, client: LabelStudioClient, round_id: int,
                                  binding: ProjectBinding) -> int:
    """Release a finished round's unanswered tasks in ``binding``'s project, which Label Studio no longer has;
    returns how many.

    A finished round is not handed out again, so such tasks would wait for ever: "pending", their images stay
    out of every new round's pool and each start tries to pull them.  Released, they count as deleted in Label
    Studio (``meta["ls"]["deleted_at"]``, ``released``), their images may be selected again, and the round
    gets a note saying so.  Answered and skipped selections keep their state: their annotations are in the
    catalog, untouched.  Runs under the round's lock, as a pull stores.

    Only a Label Studio server that accepts the token and says "no such project" releases anything: a 404 from
    something else at that address (a proxy, another web server on a reused port) leaves the tasks waiting.
    """
    try:
        client.whoami()
    except LabelStudioError:
        return 0
    with catalog.session() as session:
        round_row = get_for_update(session, Round, round_id)
        if round_row is None or round_row.state != "finished":
            return 0
        number = round_row.number
        states = _selection_states(session, [round_id])
        released = 0
        for selection in session.scalars(select(Selection).where(Selection.round_id == round_id,
                                                                 Selection.ls_task_id.is_not(None))):
            meta = ls_meta(selection)
            if (states.get((round_id, selection.image_id)) != "pending"
                    or str(meta.get("project_id")) != str(binding.project_id)
                    or (meta.get("url") or binding.url).rstrip("/") != binding.url.rstrip("/")):
                continue
            set_ls_meta(selection, deleted_at=now_iso(), status="project_deleted", released=True)
            released += 1
        if released:
            meta = dict(round_row.meta or {})
            meta["notes"] = list(meta.get("notes", [])) + [released_note(number, binding, released)]
            round_row.meta = meta  # reassign: JSON columns do not track in-place changes
    if released:
        logger.warning("%s", released_note(number, binding, released))
    return released


def released_note(number: int, binding: ProjectBinding, released: int) -> str:
    """The round note (and error text) saying that ``released`` tasks of round ``number`` were released."""
    return (f"{released} unanswered task(s) of round {number} were released: their Label Studio project "
            f"{binding.project_id} at {binding.url} was deleted, so new rounds may select their images again "
            "(answers already pulled stay in the catalog)")
