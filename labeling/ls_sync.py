"""Push a round's selected batch to Label Studio and pull the annotations back into the catalog.

Push (:func:`push_round`, in :mod:`radloop.labeling.ls_push`) is idempotent, keyed by (case, round) (``data.radloop_key``): it first lists the
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
``meta["withdrawn"]``), so that no reader trains on them; the pull notices it for every task it reads, and an
incremental pull also reads the tasks that Label Studio counts fewer annotations on (``total_annotations`` +
``cancelled_annotations``) than the catalog holds live, in case a deletion left the task's ``updated_at`` as it
was (summary: ``tasks_with_deleted_annotations``).

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
from radloop.labeling.ls_adapter import ImageGeometry
from radloop.labeling.ls_client import LabelStudioClient, ProjectNotFoundError
from radloop.labeling.ls_config import parse_label_config
from radloop.labeling.ls_consensus import (
    CONSENSUS_SOURCE, SELECTION_STATES, SOURCE, consensus, round_progress, selection_states,
)
from radloop.labeling.ls_project import DEFAULT_PROJECT_TITLE, ProjectBinding, init_project, load_binding
from radloop.labeling.ls_pull_store import (
    LabelStudioRead, ls_annotation_count, ls_meta, release_deleted_project_tasks, released_note, store_pull,
    stored_annotation_counts,
)
from radloop.labeling.ls_push import (  # noqa: F401  (re-exported: the push's home was this module)
    BATCH_NOTE, PushIncompleteError, SyncSummary, _existing_keys, _note_pushed, _record_existing, push_round,
    with_batch_note,
)
from radloop.labeling.ls_tasks import export_tasks_json

__all__ = ["BATCH_NOTE", "CONSENSUS_SOURCE", "PushIncompleteError", "SELECTION_STATES", "SOURCE", "SyncSummary",
           "client_from_env", "consensus", "ensure_project", "export_tasks_json", "pull_round", "push_round",
           "round_progress", "selection_states", "with_batch_note"]

logger = logging.getLogger(__name__)
#: Incremental pulls re-read tasks updated this long before the cursor (clock skew, same-second writes).
CURSOR_MARGIN = timedelta(seconds=5)
#: Tries of a pull that finds another pull of the round committed while it read Label Studio; the last one
#: reads Label Studio while holding the round's lock.
PULL_ATTEMPTS = 3


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
    listed = client.iter_tasks(binding.project_id, round_id=round_id, with_annotations=False)
    all_ids = {task["id"] for task in listed}
    shrunk: set[int] = set()
    if cursor is not None:  # an annotation deleted leaves its task unchanged: its annotation count says so
        read_ids = {task["id"] for task in raw_tasks}
        counts = {task["id"]: ls_annotation_count(task) for task in listed if task["id"] not in read_ids}
        with catalog.session() as session:
            stored = stored_annotation_counts(session, binding.project_id, counts, round_ids=[round_id])
        shrunk = {task_id for task_id, count in counts.items() if count is not None and count < stored[task_id]}
        if shrunk:  # one listing of the round's tasks with their annotations; the store withdraws the missing
            raw_tasks += [task for task in client.iter_tasks(binding.project_id, round_id=round_id)
                          if task["id"] in shrunk]
    annotators = client.user_emails() if raw_tasks else {}
    case_ids = {task["data"].get("case_id") for task in raw_tasks if isinstance(task.get("data"), dict)}
    geometries = _geometries(catalog, {case for case in case_ids if isinstance(case, str)})
    return LabelStudioRead(state, cursor, raw_tasks, all_ids, annotators, geometries, rechecked=len(shrunk))


def pull_round(catalog: Catalog, client: LabelStudioClient, round_id: int, *, binding: ProjectBinding | None = None,
               project: str | None = None, full: bool = False) -> SyncSummary:
    """Fetch new/changed annotations of the round's tasks into the catalog (append-only); returns a summary.

    Args:
        full: ignore the incremental cursor and re-read every task (still no duplicate rows).  An incremental
            pull sees deleted annotations too: it re-reads the tasks whose annotation count dropped.

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
        "tasks_with_deleted_annotations": read.rechecked,
        "answered": progress["answered"], "pending": progress["pending"]})
