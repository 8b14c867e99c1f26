"""Push a round's selected batch to Label Studio (:func:`push_round`; idempotent, see
:mod:`radloop.labeling.ls_sync`, which re-exports it), and the round's note saying where its batch went."""

from __future__ import annotations

from sqlalchemy import select

from radloop.core.catalog import Catalog, get_for_update
from radloop.core.schema import Round, Selection
from radloop.labeling.ls_adapter import task_key
from radloop.labeling.ls_client import (
    AuthenticationError, LabelStudioClient, LabelStudioError, ProjectNotFoundError, iter_chunks,
)
from radloop.labeling.ls_consensus import selection_states
from radloop.labeling.ls_project import ProjectBinding, image_url
from radloop.labeling.ls_pull_store import ls_meta, now_iso, set_ls_meta
from radloop.labeling.ls_tasks import build_task_payloads, load_current_predictor

__all__ = ["BATCH_NOTE", "PushIncompleteError", "SyncSummary", "push_round", "with_batch_note"]


class PushIncompleteError(LabelStudioError):
    """A push stopped part-way; ``summary`` says what was pushed.  Re-running completes it."""

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


class SyncSummary(dict):
    """A push/pull summary: a JSON-ready dict whose keys also read as attributes (``summary.imported``)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _record_existing(catalog: Catalog, round_id: int, binding: ProjectBinding, existing: dict[str, int]) -> int:
    """Write task ids found in Label Studio into the selections; returns how many were newly recorded."""
    recorded = 0
    with catalog.session() as session:
        for selection in session.scalars(select(Selection).where(Selection.round_id == round_id)):
            task_id = existing.get(task_key(selection.image_id, round_id))
            if task_id is None:
                continue
            meta = ls_meta(selection)
            if selection.ls_task_id != task_id or meta.get("project_id") != binding.project_id:
                selection.ls_task_id = task_id
                set_ls_meta(selection, project_id=binding.project_id, url=binding.url, task_id=task_id,
                             key=task_key(selection.image_id, round_id), pushed_at=meta.get("pushed_at") or now_iso(),
                             deleted_at=None)
                recorded += 1
    return recorded


def _existing_keys(client: LabelStudioClient, binding: ProjectBinding, round_id: int) -> dict[str, int]:
    tasks = client.iter_tasks(binding.project_id, round_id=round_id, with_annotations=False)
    return {task["data"]["radloop_key"]: task["id"] for task in tasks
            if isinstance(task.get("data"), dict) and isinstance(task["data"].get("radloop_key"), str)}


def push_round(catalog: Catalog, client: LabelStudioClient, round_id: int, *, binding: ProjectBinding | None = None,
               project: str | None = None, chunk_size: int = 50, recreate_deleted: bool = False,
               with_model: bool = True, predictor=None, progress=None) -> SyncSummary:
    """Import the round's selected batch as tasks with pre-annotations (idempotent); returns a summary.

    Args:
        binding: the project to push to (default: the workspace's, from ``radloop ls init``).
        project: a project title instead: the workspace is bound to it (created if needed) first.
        predictor: image model for pre-annotations (default: the registry's current one, if ``with_model``).
        progress: called with the number of tasks imported after each chunk.

    Raises:
        LookupError: no such round.  ProjectNotFoundError / AuthenticationError: see the message.
        ValueError: the round is finished (its images are labelled); with ``recreate_deleted`` a finished
            round's tasks deleted in Label Studio are imported again, and only those.
        PushIncompleteError: the server failed part-way (what was imported is recorded; re-run to finish).

    A completed push replaces the round's "batch ..." note (e.g. an import file's) by one naming the server.
    """
    with catalog.session() as session:
        round_row = session.get(Round, round_id)
        if round_row is None:
            raise LookupError(f"no round with id {round_id}")
        number, finished = round_row.number, round_row.state == "finished"
        selections = session.scalars(select(Selection).where(Selection.round_id == round_id)
                                     .order_by(Selection.rank, Selection.id)).all()
    if finished and not recreate_deleted:  # importing its tasks again would have labelled images labelled twice
        raise ValueError(f"round {number} is finished: its images are labelled; start a new round with "
                         "`radloop round start`")
    from radloop.labeling import ls_sync  # the workspace's project is resolved as a pull resolves it

    binding = ls_sync._resolve_binding(catalog, client, binding, project)
    existing = _existing_keys(client, binding, round_id)
    already = _record_existing(catalog, round_id, binding, existing)
    states = selection_states(catalog, [round_id])
    to_push, deleted, answered_elsewhere = [], [], 0
    with catalog.session() as session:
        for selection in session.scalars(select(Selection).where(Selection.round_id == round_id)):
            if task_key(selection.image_id, round_id) in existing:
                continue
            meta = ls_meta(selection)
            if states.get((round_id, selection.image_id)) == "answered" and meta.get("project_id") not in (
                    None, binding.project_id):
                # answered in the project it was pushed to before (the workspace is bound to another one since):
                # the answer is in the catalog, so the experts are not asked again
                answered_elsewhere += 1
                continue
            if selection.ls_task_id is not None and meta.get("project_id") == binding.project_id:
                deleted.append(selection.id)
                if not meta.get("deleted_at"):
                    set_ls_meta(selection, deleted_at=now_iso())
                if not recreate_deleted:
                    continue
            elif finished:  # only a deleted task of a finished round is imported again
                continue
            to_push.append(selection.id)
    summary = SyncSummary({"round_id": round_id, "project_id": binding.project_id, "selected": len(selections),
               "already_in_label_studio": len(existing), "recorded_from_label_studio": already,
               "deleted_in_label_studio": len(deleted), "answered_in_another_project": answered_elsewhere,
               "imported": 0, "predictions": 0,
               "model_version": None})
    if not to_push:
        if not finished:
            _note_pushed(catalog, round_id, binding.url)
        return summary
    predictor = predictor if predictor is not None else (load_current_predictor(catalog) if with_model else None)
    summary["model_version"] = getattr(predictor, "model_version", None)
    payloads = build_task_payloads(catalog, round_id, selection_ids=to_push, predictor=predictor,
                                   url_for=lambda staged: image_url(binding, staged))
    for chunk in iter_chunks(payloads, chunk_size):
        try:
            task_ids = client.import_tasks(binding.project_id, [payload.task for payload in chunk])
        except (AuthenticationError, ProjectNotFoundError):
            raise
        except LabelStudioError as error:
            try:  # the import may have succeeded with its response lost: record what is there
                _record_existing(catalog, round_id, binding, _existing_keys(client, binding, round_id))
            except LabelStudioError:
                pass
            raise PushIncompleteError(
                f"push of round {number} stopped after {summary['imported']} of {len(payloads)} new task(s): "
                f"{error}\nRe-run `radloop round push --round {number}` to finish; tasks already imported are not "
                "duplicated.",
                summary) from error
        if len(task_ids) == len(chunk):
            _record_existing(catalog, round_id, binding, {p.key: t for p, t in zip(chunk, task_ids)})
        else:  # the server did not return ids in order: look them up by key
            _record_existing(catalog, round_id, binding, _existing_keys(client, binding, round_id))
        summary["imported"] += len(chunk)
        summary["predictions"] += sum(len(payload.task["predictions"]) for payload in chunk)
        if progress is not None:
            progress(len(chunk))
    if not finished:
        _note_pushed(catalog, round_id, binding.url)
    return summary


def _note_pushed(catalog: Catalog, round_id: int, url: str) -> None:
    """Replace the round's "batch ..." note (where ``radloop round start`` handed its batch, e.g. an import
    file) by one saying it is in Label Studio at ``url``, under the round's lock (as
    ``radloop.app.round_record.update_round`` writes notes); a round without such a note keeps its notes."""
    with catalog.session() as session:
        round_row = get_for_update(session, Round, round_id)
        meta = dict(round_row.meta or {})
        notes = list(meta.get("notes", []))
        replaced = with_batch_note(notes, f"batch pushed to Label Studio at {url}")
        if not any(note.startswith(BATCH_NOTE) for note in notes) or replaced == notes:
            return
        meta["notes"] = replaced
        round_row.meta = meta  # reassign: JSON columns do not track in-place changes


#: the prefix of a round's one note saying where its batch went (an import file, a Label Studio server)
BATCH_NOTE = "batch "


def with_batch_note(notes: list[str], note: str | None) -> list[str]:
    """A round's ``notes`` with its :data:`BATCH_NOTE` note replaced by ``note`` (dropped when ``None``): a round
    has one such note, the latest hand-out's (``radloop round start``, a rerun, ``radloop round push``)."""
    if note is not None and not note.startswith(BATCH_NOTE):
        raise ValueError(f"a batch note starts with {BATCH_NOTE!r}: {note!r}")
    return [kept for kept in notes if not kept.startswith(BATCH_NOTE)] + ([note] if note is not None else [])
