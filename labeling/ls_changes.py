"""Which earlier rounds of a Label Studio project changed since they were last read: what ``radloop round start``
asks before pulling them, so that a start after hundreds of rounds reads what changed, not every round.

One probe per project (:func:`probe_project`): the project itself (its task count) and the project's tasks
updated since the rounds' mark (the data manager's ``filter:tasks:updated_at`` "greater" than the mark less
:data:`~radloop.labeling.ls_sync.CURSOR_MARGIN`, without annotations).  A round is to be pulled when

- it has no mark for that project yet (never pulled or checked there);
- one of its tasks came back with an ``updated_at`` newer than the one its last pull stored
  (``Selection.meta["ls"]["task_updated_at"]``): an answer given, edited or skipped (Label Studio bumps the
  task's ``updated_at`` on each annotation save), a prediction added; or
- one of its tasks is no longer in the project.  That is looked for (one listing of the project's task ids)
  only when the project's task count moved relative to the tasks the catalog knows there (the difference is
  kept as ``offset``, so that tasks imported by hand do not cost a listing at every start); or
- one of its tasks has fewer annotations in Label Studio than the catalog holds live for it: an annotation was
  deleted there.  Looked for in the same listing (each task's ``total_annotations`` + ``cancelled_annotations``),
  made only when the project's annotation count (``total_annotations_number`` + ``skipped_annotations_number``)
  differs from the catalog's live annotations of its tasks, the tasks updated since the mark counted as Label
  Studio counts them (the difference is kept as ``annotation_offset``).

:func:`record_probe` then moves the mark (``Round.meta["ls_seen"]``) of the rounds found unchanged and of those
pulled without error to the newest ``updated_at`` the probe saw.  A deleted annotation is found by the counts
above whether or not Label Studio bumped its task's ``updated_at`` (1.23.2 does, measured; the tests' fake
does not), and the round's pull (:func:`radloop.labeling.ls_sync.pull_round`) re-reads the tasks whose count
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from radloop.core.catalog import Catalog, get_for_update
from radloop.core.schema import Round, Selection
from radloop.labeling.ls_client import LabelStudioClient
from radloop.labeling.ls_project import ProjectBinding
from radloop.labeling.ls_pull_store import ls_annotation_count, ls_meta, stored_annotation_counts

__all__ = ["SEEN_KEY", "ProjectProbe", "label_studio_time", "probe_project", "record_probe"]

#: the round meta key of a round's mark: {"url", "project_id", "through" (ISO), "offset", "annotation_offset"}
SEEN_KEY = "ls_seen"
#: tasks updated this long before the mark are read again (same margin as incremental pulls)
MARGIN = timedelta(seconds=5)


@dataclass
class ProjectProbe:
    """What one probe of a project found: the rounds to pull, the newest ``updated_at`` seen, the task count."""

    url: str
    project_id: int
    round_ids: list[int]
    to_pull: set[int] = field(default_factory=set)
    newest: datetime | None = None
    task_number: int | None = None
    annotation_number: int | None = None  # the project's annotations, skipped ones included
    tasks_read: int = 0
    listed: bool = False  # the project's task ids were listed (its task or annotation count moved)


def label_studio_time(moment: datetime) -> str:
    """``moment`` in the format Label Studio's ``updated_at`` filter wants (UTC, microseconds, "Z")."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _mark(meta: dict | None, url: str, project_id: int) -> datetime | None:
    """The round's mark in that project: the probe's, else its last pull's cursor (a pull reads every task
    updated after its cursor less the margin), else None."""
    meta = meta or {}
    seen = meta.get(SEEN_KEY) or {}
    marks = []
    if seen.get("project_id") == project_id and str(seen.get("url", "")).rstrip("/") == url.rstrip("/"):
        marks.append(_time(seen.get("through")))
    pulled = meta.get("ls_pull") or {}
    if pulled.get("project_id") == project_id:
        marks.append(_time(pulled.get("cursor")))
    marks = [mark for mark in marks if mark is not None]
    return max(marks) if marks else None


def _in_project(selection: Selection, url: str, project_id: int) -> bool:
    meta = ls_meta(selection)
    return (selection.ls_task_id is not None and str(meta.get("project_id")) == str(project_id)
            and str(meta.get("url") or url).rstrip("/") == url.rstrip("/"))


def _known_tasks(catalog: Catalog, url: str, project_id: int) -> dict[int, tuple[int, str | None]]:
    """Task id -> (round id, stored ``task_updated_at``) of the selections the catalog has in the project and
    does not know as deleted there."""
    with catalog.session() as session:
        return {selection.ls_task_id: (selection.round_id, ls_meta(selection).get("task_updated_at"))
                for selection in session.scalars(select(Selection).where(Selection.ls_task_id.is_not(None)))
                if _in_project(selection, url, project_id) and not ls_meta(selection).get("deleted_at")}


def probe_project(catalog: Catalog, client: LabelStudioClient, binding: ProjectBinding,
                  round_ids: list[int]) -> ProjectProbe:
    """Which of ``round_ids`` (rounds with tasks in ``binding``'s project) changed since their mark.

    Raises:
        radloop.labeling.ls_client.LabelStudioError: as the client's calls (ProjectNotFoundError: the
            project is gone; each round's own pull then says what that means for it).
    """
    url, project_id = binding.url, binding.project_id
    probe = ProjectProbe(url, project_id, list(round_ids))
    project = client.get_project(project_id)
    probe.task_number, probe.annotation_number = project.get("task_number"), project.get("annotation_number")
    with catalog.session() as session:
        metas = dict(session.execute(select(Round.id, Round.meta).where(Round.id.in_(round_ids))).all())
    marks = {round_id: _mark(metas.get(round_id), url, project_id) for round_id in round_ids}
    probe.to_pull = {round_id for round_id, mark in marks.items() if mark is None}
    known = _known_tasks(catalog, url, project_id)
    with catalog.session() as session:
        live = stored_annotation_counts(session, project_id, known)  # task id -> live annotations in the catalog
    updated_counts: dict[int, int] = {}  # task id -> annotations, of the tasks updated since the mark
    checked = [mark for round_id, mark in marks.items() if mark is not None]
    if checked:
        since = label_studio_time(min(checked) - MARGIN)
        tasks = client.iter_tasks(project_id, updated_after=since, with_annotations=False)
        probe.tasks_read = len(tasks)
        for task in tasks:
            updated = _time(task.get("updated_at"))
            data = task.get("data") if isinstance(task.get("data"), dict) else {}
            round_id = data.get("round_id")
            if task.get("id") in known:  # the others' annotations are in the kept offset
                updated_counts[task.get("id")] = ls_annotation_count(task) or 0
            if updated is not None:
                probe.newest = updated if probe.newest is None else max(probe.newest, updated)
            if round_id not in marks or round_id in probe.to_pull:
                continue  # a task of another round, or one not made by radloop
            stored = known.get(task.get("id"), (None, None))[1]
            if updated is None or _time(stored) is None or updated > _time(stored):
                probe.to_pull.add(round_id)
    # rounds checked before (a round pushed since has none: its tasks count in `known` and in the project alike)
    offsets = {seen.get("offset") for seen in ((metas.get(round_id) or {}).get(SEEN_KEY) or {}
                                               for round_id in round_ids) if seen.get("project_id") == project_id}
    annotation_offsets = {seen.get("annotation_offset") for seen in ((metas.get(round_id) or {}).get(SEEN_KEY) or {}
                                                                     for round_id in round_ids)
                          if seen.get("project_id") == project_id}
    expected = (sum(count for task_id, count in live.items() if task_id not in updated_counts)
                + sum(updated_counts.values()))
    annotations_moved = (probe.annotation_number is not None
                         and annotation_offsets != {probe.annotation_number - expected})
    if probe.task_number is None or offsets != {probe.task_number - len(known)} or annotations_moved:
        probe.listed = True  # tasks or annotations deleted (or imported) since: which rounds lost one?
        listed = {task["id"]: ls_annotation_count(task) for task in client.iter_tasks(project_id,
                                                                                      with_annotations=False)}
        probe.to_pull |= {round_id for task_id, (round_id, _) in known.items() if round_id in marks and (
            task_id not in listed or (listed[task_id] is not None and listed[task_id] < live[task_id]))}
    return probe


def record_probe(catalog: Catalog, probe: ProjectProbe, round_ids: list[int], *, complete: bool = True) -> None:
    """Move the mark of ``round_ids`` (found unchanged, or pulled without error) to what ``probe`` saw, with
    the project's task-count offset as the catalog knows it now (after the pulls).  ``complete=False`` (a pull
    of the project failed): no offset is kept, so that the next probe lists the project's tasks again."""
    if not round_ids:
        return
    known = _known_tasks(catalog, probe.url, probe.project_id)
    offset = None if probe.task_number is None or not complete else probe.task_number - len(known)
    annotation_offset = None
    if probe.annotation_number is not None and complete:
        with catalog.session() as session:
            stored = stored_annotation_counts(session, probe.project_id, known)
        annotation_offset = probe.annotation_number - sum(stored.values())
    for round_id in sorted(round_ids):
        with catalog.session() as session:
            row = get_for_update(session, Round, round_id)
            if row is None:
                continue
            meta = dict(row.meta or {})
            marks = [mark for mark in (_mark(meta, probe.url, probe.project_id), probe.newest) if mark is not None]
            seen = {"url": probe.url, "project_id": probe.project_id,
                    "through": max(marks).isoformat() if marks else None, "offset": offset,
                    "annotation_offset": annotation_offset}
            if meta.get(SEEN_KEY) != seen:
                meta[SEEN_KEY] = seen
                row.meta = meta  # reassign: JSON columns do not track in-place changes
