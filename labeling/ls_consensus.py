"""Consensus over Label Studio annotations and the state of a round's selections (see :mod:`.ls_sync` for
the disagreement rule: newest per annotator and task, majority over the image's tasks and rounds, tie ->
uncertain; withdrawn annotations do not vote)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone

from sqlalchemy import select

from radloop.core.catalog import Catalog
from radloop.core.schema import Annotation, Selection
from radloop.core.targets import LABEL_STUDIO_SOURCE
from radloop.labeling.ls_adapter import AnnotationVersion

__all__ = ["CONSENSUS_SOURCE", "RULE", "SELECTION_STATES", "SOURCE", "consensus", "round_progress",
           "selection_states"]

SOURCE = LABEL_STUDIO_SOURCE  # one name for the rows a pull writes (the targets read them by it)
CONSENSUS_SOURCE = "labelstudio:consensus"
RULE = "newest per annotator and task, then majority over the image's tasks and rounds, tie -> uncertain"
#: What a round's selection waits for, as the catalog knows it (what was pulled), first match wins.
SELECTION_STATES = ("answered", "skipped", "pending", "deleted", "not_in_label_studio")


def consensus(versions: list[AnnotationVersion]) -> dict[str, dict]:
    """The documented disagreement rule over one task's annotations.

    Returns:
        finding -> ``{"value": 1|0|None, "status": "agreed"|"majority"|"uncertain", "votes": {annotator: v}}``
        for findings with at least one vote.
    """
    newest: dict[str, AnnotationVersion] = {}
    for version in versions:
        if version.cancelled:
            continue
        who = str(version.annotator_id)
        if who not in newest or version.updated_at > newest[who].updated_at:
            newest[who] = version
    outcome: dict[str, dict] = {}
    findings = sorted({name for version in newest.values() for name in version.choices})
    for finding in findings:
        votes = {who: version.choices[finding] for who, version in newest.items() if finding in version.choices}
        value, status = _decide(votes)
        outcome[finding] = {"value": value, "status": status, "votes": votes}
    return outcome


def _decide(votes: dict[str, int | None]) -> tuple[int | None, str]:
    """(value, status) of one finding's votes: agreed, majority, a tie uncertain, no vote withdrawn.

    A "cannot tell" vote (None) decides nothing: the definite votes do (all of them alike and no None:
    agreed; else majority), and only "cannot tell" votes leave the finding uncertain.
    """
    if not votes:
        return None, "withdrawn"
    counts = Counter(value for value in votes.values() if value is not None)
    if not counts:
        return None, "uncertain"
    if len(counts) == 1:
        return next(iter(counts)), "agreed" if sum(counts.values()) == len(votes) else "majority"
    if counts[1] != counts[0]:
        return int(counts[1] > counts[0]), "majority"
    return None, "uncertain"


def _ballots(rows: list[Annotation]) -> dict[tuple[int, str], dict[str, int]]:
    """(task, annotator) -> finding -> 0/1: each annotator's newest live annotation per task of one image.

    ``rows``: the image's raw Label Studio rows (choices and skips; withdrawn rows excluded).
    """
    newest: dict[str | None, int] = {}
    for row in rows:
        newest[row.external_id] = max(newest.get(row.external_id, 0), row.version)
    current: dict[str | None, list[Annotation]] = defaultdict(list)
    for row in rows:
        if row.version == newest[row.external_id]:
            current[row.external_id].append(row)
    ballots: dict[tuple[int, str], tuple[str, dict[str, int]]] = {}
    for version_rows in current.values():
        if any(row.kind == "skip" for row in version_rows):
            continue  # cancelled: no vote
        meta = version_rows[0].meta or {}
        voter = (int(meta.get("ls_task_id") or 0), version_rows[0].annotator or "unknown annotator")
        stamp = str(meta.get("annotated_at") or "")
        if voter not in ballots or stamp > ballots[voter][0]:
            ballots[voter] = (stamp, {row.label: (row.meta or {}).get("value") for row in version_rows})
    return {voter: choices for voter, (_, choices) in ballots.items()}


def _settled(last: Annotation, value: int | None, status: str, votes: dict[str, int]) -> bool:
    """Whether the newest choice row of (image, finding) already says what the votes say."""
    meta = last.meta or {}
    if last.source == SOURCE:  # a raw answer: enough when it is the only vote and agrees with it
        return len(votes) == 1 and meta.get("value") == value
    return (meta.get("value"), meta.get("status"), meta.get("votes")) == (value, status, votes)


def _reconcile(session, image_ids: set[str], round_id: int, counts: Counter) -> None:
    """Apply the disagreement rule to each image over all its tasks; append consensus rows where needed."""
    if not image_ids:
        return
    session.flush()  # the rows this pull added take part, and the consensus rows come after them
    rows = session.scalars(select(Annotation).where(
        Annotation.image_id.in_(sorted(image_ids)), Annotation.source.in_((SOURCE, CONSENSUS_SOURCE)),
        Annotation.kind.in_(("choice", "skip"))).order_by(Annotation.created_at, Annotation.id)).all()
    by_image: dict[str, list[Annotation]] = defaultdict(list)
    for row in rows:
        by_image[row.image_id].append(row)
    for image_id, image_rows in sorted(by_image.items()):
        ballots = _ballots([row for row in image_rows if row.source == SOURCE])
        newest = {row.label: row for row in image_rows if row.kind == "choice"}
        for finding, last in sorted(newest.items()):
            voters = sorted(voter for voter, choices in ballots.items() if finding in choices)
            votes = {f"task {task}: {who}": ballots[(task, who)][finding] for task, who in voters}
            value, status = _decide(votes)
            if _settled(last, value, status, votes):
                continue
            session.add(Annotation(
                image_id=image_id, source=CONSENSUS_SOURCE, kind="choice", label=finding, round_id=round_id,
                external_id=f"ls:consensus:{image_id}", annotator=None,
                meta={"value": value, "status": status, "votes": votes, "rule": RULE,
                      "ls_task_ids": sorted({task for task, _ in voters})}))
            counts["consensus"] += 1
            if status in ("majority", "uncertain"):
                counts["disagreements"] += 1


def _withdraw_deleted(raw: dict, rows: list[Annotation], counts: Counter) -> None:
    """Withdraw the catalog rows of ``raw``'s annotations that Label Studio no longer has (deleted there)."""
    live = {annotation.get("id") for annotation in raw.get("annotations") or [] if isinstance(annotation, dict)}
    withdrawn = set()
    now = datetime.now(timezone.utc).isoformat()
    for row in rows:
        annotation_id = (row.meta or {}).get("ls_annotation_id")
        if row.kind == "withdrawn" or annotation_id in live:
            continue
        row.meta = {**(row.meta or {}), "withdrawn": {"kind": row.kind, "at": now,
                                                      "reason": "annotation deleted in Label Studio"}}
        row.kind = "withdrawn"  # every reader takes only choice/box/skip rows: none trains on it any more
        withdrawn.add(annotation_id)
    counts["withdrawn"] += len(withdrawn)


def _selection_states(session, round_ids: list[int] | None) -> dict[tuple[int, str], str]:
    query = select(Selection.round_id, Selection.image_id, Selection.ls_task_id, Selection.meta)
    answers = select(Annotation.round_id, Annotation.image_id, Annotation.kind).distinct().where(
        Annotation.round_id.is_not(None), Annotation.source != CONSENSUS_SOURCE,
        Annotation.kind.in_(("choice", "box", "skip")))
    if round_ids is not None:
        query = query.where(Selection.round_id.in_(round_ids))
        answers = answers.where(Annotation.round_id.in_(round_ids))
    kinds: dict[tuple[int, str], set[str]] = defaultdict(set)
    for round_id, image_id, kind in session.execute(answers):
        kinds[(round_id, image_id)].add(kind)
    states = {}
    for round_id, image_id, task_id, meta in session.execute(query):
        found = kinds.get((round_id, image_id), set())
        if found & {"choice", "box"}:
            states[(round_id, image_id)] = "answered"
        elif "skip" in found:
            states[(round_id, image_id)] = "skipped"
        elif ((meta or {}).get("ls") or {}).get("deleted_at"):
            states[(round_id, image_id)] = "deleted"
        else:
            states[(round_id, image_id)] = "pending" if task_id is not None else "not_in_label_studio"
    return states


def selection_states(catalog: Catalog, round_ids: list[int] | None = None) -> dict[tuple[int, str], str]:
    """(round id, image id) -> one of :data:`SELECTION_STATES`, for the rounds' selections (default: all).

    From the catalog only: an answer still in Label Studio counts once a pull brought it.
    """
    with catalog.session() as session:
        return _selection_states(session, round_ids)


def round_progress(catalog: Catalog, round_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """Round id -> state -> number of its selections (every state of :data:`SELECTION_STATES` present)."""
    progress: dict[int, dict[str, int]] = {}
    for (round_id, _), state in selection_states(catalog, round_ids).items():
        progress.setdefault(round_id, dict.fromkeys(SELECTION_STATES, 0))[state] += 1
    return progress
