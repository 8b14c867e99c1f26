"""The pool a new round selects from, and what the strategies score it with.

Before a round selects, the earlier Label Studio rounds that changed there since they were last read are
pulled (:func:`pull_late_answers`), so that an answer given or corrected since the last pull counts: its image
joins the pool labelled instead of waiting.  The pool is the split's images, less those flagged at ingest (text burned into
the pixels), those whose task in an earlier round is still unanswered
(:func:`radloop.app.round_labels.without_pending`) and, unless ``reselect_unclear``, those the experts could
not label (:func:`without_unclear`).

Split from :mod:`radloop.app.rounds` (the state machine).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import select

from radloop.app.round_labels import SIMULATE_SOURCE, round_progress
from radloop.app.round_record import Progress, RoundConfig
from radloop.core.catalog import IN_CHUNK, Catalog
from radloop.core.schema import Annotation, Image, Round, Study

logger = logging.getLogger(__name__)

#: per-request timeout of the pull before a round selects (one retry): a server that does not answer costs
#: about a minute at most, not the several minutes of the default client's retries
LATE_PULL_TIMEOUT_S = 15.0

__all__ = ["pool_images", "pool_probabilities", "pool_weak_labels", "pull_late_answers", "unclear_images",
           "without_truth", "without_unclear"]


def pool_images(catalog: Catalog, config: RoundConfig) -> tuple[list[str], list[str | None]]:
    """Unlabelled-or-labelled pool image ids (and body regions) the round may select from.

    Images flagged ``burned_in_annotation`` at ingest (text in the pixels, possibly identifying) are left out:
    a round would show them to annotators.
    """
    flag = Image.meta["burned_in_annotation"]
    with catalog.session() as session:
        query = (select(Image.id, Image.body_region).join(Study, Study.id == Image.study_id)
                 .where(Study.split == config.pool_split))
        if config.dataset:
            query = query.where(Image.dataset == config.dataset)
        # the database finds the few rows that carry the flag (a JSON path), instead of each image's metadata
        # coming here to be parsed; the flag's value is then read as before (any true value leaves the pool)
        flagged = {image_id for image_id, value in session.execute(
            query.with_only_columns(Image.id, flag).where(flag.as_string().is_not(None))) if value}
        rows = [row for row in session.execute(query.order_by(Image.id)) if row[0] not in flagged]
    return [row[0] for row in rows], [row[1] for row in rows]


def pool_probabilities(catalog: Catalog, encoder_version: str, vectors: np.ndarray, task: str) -> np.ndarray | None:
    """(N, 2) probabilities [absent, present] of ``task`` from the current findings model, when usable."""
    from radloop.ssl.predict import load_predictor

    predictor = load_predictor(catalog, "findings")
    if predictor is None or task not in predictor.findings or predictor.encoder_version != encoder_version:
        return None
    present = predictor.predict_proba_embeddings(vectors)[:, predictor.findings.index(task)]
    return np.stack([1.0 - present, present], axis=1)


def pool_weak_labels(catalog: Catalog, image_ids: list[str], task: str) -> np.ndarray | None:
    """Report weak label per image (1 positive, 0 negative, -1 unknown) via the report of its study."""
    from radloop.core.schema import Report, WeakLabel

    query = (select(Image.id, WeakLabel.status).join(Report, Report.study_id == Image.study_id)
             .join(WeakLabel, WeakLabel.report_id == Report.id).where(WeakLabel.finding == task))
    with catalog.session() as session:
        if len(image_ids) <= IN_CHUNK:
            rows = session.execute(query.where(Image.id.in_(image_ids))).all()
        else:  # the task's weak labels over the archive, kept for the pool here (no 65535-parameter IN list)
            wanted = set(image_ids)
            rows = [row for row in session.execute(query) if row[0] in wanted]
    if not rows:
        return None
    status = {}
    for image_id, value in rows:
        status[image_id] = max(status.get(image_id, -1), 1 if value == "positive" else 0)
    return np.array([status.get(image_id, -1) for image_id in image_ids], dtype=np.int64)


def pull_late_answers(catalog: Catalog, config: RoundConfig, progress: Progress) -> list[str]:
    """Pull the earlier Label Studio rounds that changed there since they were last read, unanswered or
    answered; returns notes for the new round.

    A round whose tasks are all answered is pulled too: an answer corrected in Label Studio after its round
    finished (a new version) must reach this round's pool and probe, not only late answers.  Each project is
    asked once which of its rounds changed since they were last read
    (:func:`radloop.labeling.ls_changes.probe_project`: tasks updated since the rounds' mark, the project's task
    count); only those are pulled, so that a start after hundreds of rounds costs a few requests per project.

    Each round is pulled from the server and project its tasks were pushed to (recorded per task), whatever
    the workspace is bound to now; the pull never creates or re-binds a project.  A server that cannot be
    reached (quick timeouts: :data:`LATE_PULL_TIMEOUT_S`, one retry), refuses the token or fails otherwise is
    noted (and logged), not fatal: the round goes on with what the catalog has; the other rounds on that
    server are not tried again.  A finished round whose project was deleted in Label Studio has its unanswered
    tasks released by the pull (:func:`radloop.labeling.ls_sync.pull_round`): noted, and their images join
    the pool.  A simulated round talks to no server.
    """
    if config.simulate:
        return []
    states = round_progress(catalog)
    pending = {round_id for round_id, tasks in states.items() if tasks.get("pending")}
    # rounds whose tasks are all answered too: an expert may have corrected (or deleted) an answer since
    answered = {round_id for round_id, tasks in states.items() if tasks.get("answered") or tasks.get("skipped")}
    waiting = sorted(pending | answered)
    if not waiting:
        return []
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_changes import probe_project, record_probe
    from radloop.labeling.ls_client import LabelStudioError, ProjectNotFoundError

    progress("collecting late answers from Label Studio", 0.3)
    with catalog.session() as session:
        rows = list(session.scalars(select(Round).where(Round.id.in_(waiting)).order_by(Round.number)))
    notes: list[str] = []
    projects: dict[tuple[str, int], tuple[Any, list[Round]]] = {}  # (server, project) -> (binding, rounds)
    for row in rows:
        binding = ls_sync.pushed_binding(catalog, row.id)
        if binding is None and row.id not in pending:  # answered outside Label Studio (simulated): nothing to read
            continue
        if binding is None:
            notes.append(f"round {row.number} waits for Label Studio answers but records no server its tasks went "
                         f"to: `radloop round pull --round {row.number}` pulls it from the workspace's project")
            continue
        projects.setdefault((binding.url, binding.project_id), (binding, []))[1].append(row)
    added: dict[int, int] = {}
    failed: dict[str, list[int]] = {}  # server -> rounds not pulled
    reasons: dict[str, str] = {}
    clients: dict[str, Any] = {}

    def fail(url: str, numbers: list[int], error: Exception) -> None:
        failed.setdefault(url, []).extend(numbers)
        reasons.setdefault(url, str(error).splitlines()[0] if str(error) else type(error).__name__)

    for (url, _project_id), (binding, group) in projects.items():
        if url in failed:
            failed[url].extend(row.number for row in group)
            continue
        try:  # a quick client: an unreachable server delays the start by seconds, not minutes
            client = clients.get(url) or clients.setdefault(url, ls_sync.client_from_env(
                url, timeout=LATE_PULL_TIMEOUT_S, retries=1, max_retry_after=5.0))
            probe = probe_project(catalog, client, binding, [row.id for row in group])
        except ProjectNotFoundError:
            probe = None  # the project is gone: each round's pull says what that means for it
        except (LabelStudioError, ValueError, LookupError) as error:
            logger.warning("late answers not pulled from Label Studio at %s: %s", url, error)
            fail(url, [row.number for row in group], error)
            continue
        done = [row.id for row in group if probe is not None and row.id not in probe.to_pull]  # nothing changed
        for row in group:
            if row.id in done:
                continue
            if url in failed:
                failed[url].append(row.number)
                continue
            try:
                summary = ls_sync.pull_round(catalog, client, row.id, binding=binding)
            except (LabelStudioError, ValueError, LookupError) as error:  # e.g. a label config edited in the UI
                if getattr(error, "released", 0):  # a finished round's project was deleted: its tasks are released
                    notes.append(f"round {row.number}'s Label Studio project {binding.project_id} at {url} was "
                                 f"deleted: its {error.released} unanswered task(s) were released, so their images "
                                 "are in this round's pool again (answers already pulled stay in the catalog)")
                    continue
                if isinstance(error, ProjectNotFoundError) and row.id not in pending:
                    # every task answered and pulled, the project gone since: nothing more can come from it
                    logger.info("round %s: its Label Studio project is gone (%s); nothing left to pull",
                                row.number, error)
                    continue
                logger.warning("round %s: late answers not pulled from Label Studio at %s: %s", row.number, url, error)
                fail(url, [row.number], error)
                continue
            done.append(row.id)
            if summary["annotations_added"]:
                added[row.number] = summary["annotations_added"]
        if probe is not None:
            record_probe(catalog, probe, done, complete=len(done) == len(group))
    for url, numbers in failed.items():
        commands = ", ".join(f"`radloop round pull --round {number}`" for number in numbers)
        notes.append(f"late answers not pulled from Label Studio at {url} before selecting ({reasons[url]}): "
                     "answers given there since the last pull are not counted in this round's pool; "
                     f"{commands} later collects them")
    if added:
        notes.insert(0, f"pulled {sum(added.values())} late answer(s) from Label Studio before selecting ("
                     + ", ".join(f"round {number}: {count}" for number, count in added.items()) + ")")
    return notes


def unclear_images(catalog: Catalog, task: str, *, simulate: bool) -> dict[str, str]:
    """Image id -> ``"cannot tell"`` or ``"skipped"``: images the experts looked at and could not label.

    "cannot tell": the image's newest answer for ``task`` has no value because a reader ticked it under
    "Cannot tell" (alone, or in a consensus that a "cannot tell" vote left without a majority).  A tie between
    definite answers (one present, one absent) is a disagreement, not "cannot tell": another read settles it,
    so such an image stays selectable.  "skipped": a Label Studio task of the image was skipped in a round and
    the image has no label for ``task`` since.  In simulation only simulated answers count (as in
    :func:`radloop.app.round_labels.labelled_image_ids`), which never say "cannot tell".
    """
    with catalog.session() as session:
        query = select(Annotation.image_id, Annotation.meta).where(
            Annotation.kind == "choice", Annotation.label == task)
        if simulate:
            query = query.where(Annotation.source == SIMULATE_SOURCE)
        newest = {image_id: meta or {} for image_id, meta in
                  session.execute(query.order_by(Annotation.created_at, Annotation.id)).all()}
    unclear = {image_id: "cannot tell" for image_id, meta in newest.items() if _cannot_tell(meta)}
    if not simulate:
        from radloop.labeling.ls_sync import selection_states

        for (_round_id, image_id), state in sorted(selection_states(catalog).items()):
            if state == "skipped" and newest.get(image_id, {}).get("value") is None:
                unclear.setdefault(image_id, "skipped")
    return unclear


def _cannot_tell(meta: dict[str, Any]) -> bool:
    if meta.get("value") is not None:
        return False
    votes = meta.get("votes")
    if votes is None:  # one reader's answer: a choice without a value is "cannot tell"
        return True
    return any(vote is None for vote in votes.values())  # a consensus that a "cannot tell" vote left open


def without_unclear(catalog: Catalog, config: RoundConfig, pool_ids: list[str], regions: list[str | None],
                    labelled: dict[str, int]) -> tuple[list[str], list[str | None], str | None]:
    """The pool without the images experts could not label (:func:`unclear_images`), and a note saying so.

    Nothing is left out with ``config.reselect_unclear``; labelled images always stay.
    """
    if config.reselect_unclear:
        return pool_ids, regions, None
    unclear = unclear_images(catalog, config.task, simulate=config.simulate)
    dropped = [image_id for image_id in pool_ids if image_id in unclear and image_id not in labelled]
    if not dropped:
        return pool_ids, regions, None
    gone = set(dropped)
    keep = [i for i, image_id in enumerate(pool_ids) if image_id not in gone]
    why = [unclear[image_id] for image_id in dropped]
    counts = ", ".join(f"{why.count(reason)} {reason}" for reason in ("cannot tell", "skipped") if reason in why)
    note = (f"{len(dropped)} image(s) left out of the pool: experts could not label them for '{config.task}' in "
            f"earlier rounds ({counts}); `--set reselect_unclear=true` offers them again")
    return [pool_ids[i] for i in keep], [regions[i] for i in keep], note


def without_truth(catalog: Catalog, config: RoundConfig, pool_ids: list[str], regions: list[str | None]
                  ) -> tuple[list[str], list[str | None], str | None]:
    """In simulation, the pool without images that have no ground truth for the task, and a note saying so.

    The simulated annotator answers from the dataset's ground truth
    (:func:`radloop.app.round_labels.simulate_answers`) and skips an image without one: selecting it would
    spend budget on no label.  Outside simulation the pool is returned as it is.
    """
    if not config.simulate:
        return pool_ids, regions, None
    from radloop.core.targets import image_labels

    known = {image_id for image_id, labels in image_labels(catalog, pool_ids).items()
             if labels.get(config.task) is not None}
    keep = [i for i, image_id in enumerate(pool_ids) if image_id in known]
    if len(keep) == len(pool_ids):
        return pool_ids, regions, None
    note = (f"{len(pool_ids) - len(keep)} image(s) left out of the pool: no ground truth for '{config.task}', "
            "so the simulated annotator could not answer them")
    return [pool_ids[i] for i in keep], [regions[i] for i in keep], note
