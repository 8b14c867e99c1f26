"""Push a round's selected batch to Label Studio and pull the annotations back into the catalog.

Push (:func:`push_round`) is idempotent, keyed by (case, round) (``data.radloop_key``): it first lists the
round's tasks already in the project, records those it finds in ``Selection.ls_task_id`` /
``Selection.meta["ls"]`` and imports only the rest, in chunks, committing after each one.  When the server
goes away mid-push the error says how far it got; a re-run reconciles (a chunk whose response was lost is
found by its keys, never imported twice) and completes.  A task deleted in Label Studio is reported and
marked in the selection's meta; it is re-created only with ``recreate_deleted=True``.

Pull (:func:`pull_round`) is incremental (tasks updated since the round's cursor, with a safety margin)
and append-only: every new version (``updated_at``) of a Label Studio annotation becomes new catalog rows
with ``version`` + 1, the annotator and the time — choices as ``Annotation(kind="choice",
meta={"value": 1|0})``, rectangles as ``Annotation(kind="box")`` in original pixels, a skipped/cancelled
task as ``Annotation(kind="skip")``.  Unconvertible results go to ``QuarantinedAnnotation`` with a reason.
An annotation deleted in Label Studio is withdrawn: its rows get ``kind="withdrawn"`` (the former kind in
``meta["withdrawn"]``), so that no reader trains on them; the pull notices it for every task it reads, and
only ``full=True`` reads tasks that did not change otherwise (Label Studio does not bump a task's
``updated_at`` when one of its annotations is deleted).

Disagreement rule (documented, applied per image and finding over all the image's tasks, in every round):
1. each annotator's newest non-cancelled, non-withdrawn annotation of a task is one vote (an image in two
   tasks, e.g. re-selected by a later round, gets one vote per task and annotator);
2. the majority value wins;
3. a tie is "uncertain"; no vote left (every annotation withdrawn) is "withdrawn", also without a value.
When two or more votes count, or when the newest choice row no longer says what the votes say, the outcome
is appended as ``Annotation(kind="choice", source="labelstudio:consensus", meta={"value": 1|0|None,
"status": "agreed"|"majority"|"uncertain"|"withdrawn", "votes": {...}})`` after the raw rows, so that
readers taking the newest choice per (image, finding) get the consensus (None: unknown, not trained on)
instead of the last pulled answer.

A round's selections are answered, skipped, pending (a task waits in Label Studio), deleted (the task was
deleted there) or not_in_label_studio, as the catalog knows them (:func:`selection_states`); a pull
records the round's answered count as its ``labels_spent``, late answers of a finished round included.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from radloop.core.catalog import Catalog, get_for_update
from radloop.core.schema import Image, Round, Selection
from radloop.labeling.ls_adapter import ImageGeometry, task_key
from radloop.labeling.ls_client import (
    AuthenticationError, LabelStudioClient, LabelStudioError, ProjectNotFoundError, iter_chunks,
)
from radloop.labeling.ls_config import parse_label_config
from radloop.labeling.ls_consensus import (
    CONSENSUS_SOURCE, SELECTION_STATES, SOURCE, consensus, round_progress, selection_states,
)
from radloop.labeling.ls_project import DEFAULT_PROJECT_TITLE, ProjectBinding, image_url, init_project, load_binding
from radloop.labeling.ls_pull_store import (
    LabelStudioRead, ls_meta, now_iso, release_deleted_project_tasks, released_note, set_ls_meta, store_pull,
)
from radloop.labeling.ls_tasks import build_task_payloads, export_tasks_json, load_current_predictor

__all__ = ["BATCH_NOTE", "CONSENSUS_SOURCE", "PushIncompleteError", "SELECTION_STATES", "SOURCE", "SyncSummary",
           "client_from_env", "consensus", "ensure_project", "export_tasks_json", "pull_round", "push_round",
           "round_progress", "selection_states", "with_batch_note"]

logger = logging.getLogger(__name__)
#: Incremental pulls re-read tasks updated this long before the cursor (clock skew, same-second writes).
CURSOR_MARGIN = timedelta(seconds=5)
#: Tries of a pull that finds another pull of the round committed while it read Label Studio; the last one
#: reads Label Studio while holding the round's lock.
PULL_ATTEMPTS = 3


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


def client_from_env(url: str, token: str | None = None, **options) -> LabelStudioClient:
    """A client for ``url`` with ``token`` or the token from ``LABEL_STUDIO_API_KEY`` / ``RADLOOP_LS_TOKEN``
    (``options``: :class:`LabelStudioClient`'s, e.g. ``timeout``, ``retries``).

    Raises:
        AuthenticationError: no token given nor in the environment.
    """
    from radloop.labeling.ls_client import token_from_env

    return LabelStudioClient(url, token or token_from_env() or "", **options)


def ensure_project(client: LabelStudioClient, title: str | None = None, *, catalog: Catalog | None = None,
                   **options) -> str:
    """Check the server and token; with ``catalog``, also create/update the project and bind the workspace.

    Returns the project title, which :func:`push_round` accepts as ``project`` (it binds the workspace to it
    idempotently when needed).  ``options`` go to :func:`radloop.labeling.ls_project.init_project`.
    """
    title = title or DEFAULT_PROJECT_TITLE
    if catalog is not None:
        init_project(client, catalog.workspace, title=title, **options)
    else:
        client.whoami()
    return title


def _resolve_binding(catalog: Catalog, client: LabelStudioClient, binding: ProjectBinding | None,
                     project: str | None) -> ProjectBinding:
    """The workspace's project on ``client``'s server: the binding ``radloop ls init`` saved when it is for this
    server (and ``project``, when a title is asked for), else the project is created or re-bound with the
    binding's own settings (document root, media URL) kept.

    A ``project`` title (a round config's ``label_studio_project``) equal to the bound project's title or to the
    title last asked for (``asked_title``) keeps the binding: a project renamed in Label Studio's UI stays renamed
    while the config names it as before; a new name in the config renames the bound project once."""
    if binding is not None:
        return binding
    try:
        current = load_binding(catalog.workspace)
    except FileNotFoundError:
        current = None
    if current is not None and current.url == client.url and project in (None, current.title, current.asked_title):
        return current
    from radloop.labeling.ls_project import DEFAULT_PROJECT_TITLE

    init_project(client, catalog.workspace, title=project or (current.title if current else DEFAULT_PROJECT_TITLE),
                 document_root=current.document_root if current else None,
                 media_url=current.media_url if current else None)
    return load_binding(catalog.workspace)


def pushed_binding(catalog: Catalog, round_id: int) -> ProjectBinding | None:
    """The Label Studio server and project a round's tasks were pushed to (recorded per task at push), as a
    binding for :func:`pull_round`; None when none of its tasks is in Label Studio.

    Pulling through it never creates or re-binds a project (the workspace may be bound elsewhere by now); the
    workspace's binding is returned when it is that project.  Tasks in several projects (a round re-pushed
    after ``ls init`` moved): the project most of them are in.
    """
    with catalog.session() as session:
        places = Counter((ls_meta(selection).get("url"), ls_meta(selection).get("project_id"))
                         for selection in session.scalars(select(Selection).where(
                             Selection.round_id == round_id, Selection.ls_task_id.is_not(None))))
    places.pop((None, None), None)
    known = [(place, count) for place, count in places.most_common() if place[0] and place[1] is not None]
    if not known:
        return None
    url, project_id = known[0][0]
    try:
        current = load_binding(catalog.workspace)
    except (FileNotFoundError, ValueError, TypeError):  # none, or unreadable: the recorded place is enough
        current = None
    if current is not None and current.url.rstrip("/") == url.rstrip("/") and current.project_id == project_id:
        return current
    return ProjectBinding(url=url, project_id=int(project_id), title="", config_digest="")


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
    binding = _resolve_binding(catalog, client, binding, project)
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


def _moved_project_error(catalog: Catalog, binding: ProjectBinding, number: int, finished: bool,
                         released: int = 0) -> ProjectNotFoundError | None:
    """The error for a round whose project is gone while the workspace is bound to another one (``ls init`` was
    rerun after the project was deleted): "rerun ls init" would not help, pushing the round there does.
    ``released``: the finished round's unanswered tasks :func:`_release_tasks_of_deleted_project` released."""
    try:
        current = load_binding(catalog.workspace)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if current.project_id == binding.project_id and current.url.rstrip("/") == binding.url.rstrip("/"):
        return None
    where = f"project {current.project_id}" + ("" if current.url.rstrip("/") == binding.url.rstrip("/")
                                                else f" at {current.url}")
    gone = (f"round {number}'s tasks were in Label Studio project {binding.project_id} at {binding.url}, which was "
            f"not found (deleted?); the workspace is now bound to {where}")
    if finished:
        return ProjectNotFoundError(f"{gone}: round {number} is finished and its answers already pulled stay in the "
                                    "catalog; its unanswered tasks cannot be pulled any more"
                                    + (f"; {released_note(number, binding, released)}" if released else ""))
    return ProjectNotFoundError(f"{gone}: `radloop round push --round {number}` hands the round's tasks to it "
                                "(answers already pulled stay in the catalog)")


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


def _geometries(catalog: Catalog, case_ids: set[str]) -> dict[str, ImageGeometry]:
    with catalog.session() as session:
        rows = session.scalars(select(Image).where(Image.id.in_(sorted(case_ids)))).all()
        return {image.id: ImageGeometry(image.width, image.height, image.render_width, image.render_height)
                for image in rows}


def _read_label_studio(catalog: Catalog, client: LabelStudioClient, binding: ProjectBinding, round_id: int,
                       pull_state: dict | None, full: bool) -> LabelStudioRead:
    state = dict(pull_state or {})
    if state.get("project_id") != binding.project_id:
        state = {}
    cursor = None
    if not full and state.get("cursor"):  # Label Studio's filter wants exactly this format (UTC, "Z")
        since = datetime.fromisoformat(state["cursor"]).astimezone(timezone.utc) - CURSOR_MARGIN
        cursor = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    raw_tasks = client.iter_tasks(binding.project_id, round_id=round_id, updated_after=cursor)
    all_ids = {task["id"] for task in client.iter_tasks(binding.project_id, round_id=round_id,
                                                        with_annotations=False)}
    annotators = client.user_emails() if raw_tasks else {}
    case_ids = {task["data"].get("case_id") for task in raw_tasks if isinstance(task.get("data"), dict)}
    geometries = _geometries(catalog, {case for case in case_ids if isinstance(case, str)})
    return LabelStudioRead(state, cursor, raw_tasks, all_ids, annotators, geometries)


def pull_round(catalog: Catalog, client: LabelStudioClient, round_id: int, *, binding: ProjectBinding | None = None,
               project: str | None = None, full: bool = False) -> SyncSummary:
    """Fetch new/changed annotations of the round's tasks into the catalog (append-only); returns a summary.

    Args:
        full: ignore the incremental cursor and re-read every task (still no duplicate rows); only a full
            pull sees annotations deleted in Label Studio on tasks that did not change otherwise.

    Raises:
        LookupError: no such round.  ProjectNotFoundError / AuthenticationError / ServerUnavailableError.
            A finished round whose project Label Studio no longer has gets its unanswered tasks released first
            (:func:`radloop.labeling.ls_pull_store.release_deleted_project_tasks`); the error says how many (its
            ``released``).

    The summary's ``annotations_added`` counts new non-skipped annotation versions; ``answered`` /
    ``pending`` count the round's selections with an answer / with a task still waiting (``answered`` is
    also recorded as the round's ``labels_spent``).

    Pulls of one round may run at once (the ML backend pulls before training while ``radloop round finish``
    pulls): each reads Label Studio, then stores under the round's lock (:func:`get_for_update`), reading what
    is stored only once it holds the lock.  A pull that finds that another one committed since it read Label
    Studio reads it again, since what it read may be older than what the other stored (an annotation the
    other stored and this read lacks would be taken for deleted); its last try reads under the lock.
    """
    binding = _resolve_binding(catalog, client, binding, project)
    with catalog.session() as session:
        round_row = session.get(Round, round_id)
        if round_row is None:
            raise LookupError(f"no round with id {round_id}")
        number, finished = round_row.number, round_row.state == "finished"
        pull_state = (round_row.meta or {}).get("ls_pull")
    try:
        config = parse_label_config(client.get_project(binding.project_id)["label_config"])
    except ProjectNotFoundError as error:
        released = release_deleted_project_tasks(catalog, client, round_id, binding) if finished else 0
        raised = _moved_project_error(catalog, binding, number, finished, released) or error
        if released and raised is error:
            raised = ProjectNotFoundError(f"{error}; {released_note(number, binding, released)}")
        raised.released = released
        raise raised from None
    for attempt in range(1, PULL_ATTEMPTS + 1):
        last_try = attempt == PULL_ATTEMPTS
        read = None if last_try else _read_label_studio(catalog, client, binding, round_id, pull_state, full)
        with catalog.session() as session:
            round_row = get_for_update(session, Round, round_id)
            if round_row is None:
                raise LookupError(f"no round with id {round_id}")
            latest = (round_row.meta or {}).get("ls_pull")
            if latest != pull_state and not last_try:
                pull_state = latest
                continue
            read = read or _read_label_studio(catalog, client, binding, round_id, latest, full)
            counts, missing, progress = store_pull(session, round_row, read, config, binding)
            break
    return SyncSummary({
        "round_id": round_id, "project_id": binding.project_id, "incremental": read.cursor is not None,
        "annotations_added": counts["versions"] - counts["skipped"],
        "tasks_read": counts["tasks"], "new_versions": counts["versions"], "choices": counts["choices"],
        "boxes": counts["boxes"], "skipped": counts["skipped"], "quarantined": counts["quarantined"],
        "withdrawn": counts["withdrawn"], "consensus_rows": counts["consensus"],
        "disagreements": counts["disagreements"], "deleted_tasks": sorted(missing),
        "answered": progress["answered"], "pending": progress["pending"]})
