"""What a round buys and still waits for: simulated answers, the Label Studio tasks answered or pending,
the probe trained on every label so far (except labels of the evaluation split's images), and its held-out
metric.

Split from :mod:`radloop.app.rounds` (the state machine); these functions do one step each and are
idempotent, so the state machine can rerun them after a crash.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from sqlalchemy import select

from radloop.core.catalog import IN_CHUNK, Catalog, chunked
from radloop.core.config import save_resolved_config
from radloop.core.schema import Annotation, Image, Round, Selection, Study
from radloop.core.targets import image_labels, image_targets

logger = logging.getLogger(__name__)

__all__ = ["SIMULATE_SOURCE", "labelled_image_ids", "late_answers_hint", "open_task_notes", "pending_images",
           "labels_before_round", "remeasure_before", "round_probe", "round_progress", "simulate_answers",
           "train_round_probe", "training_labels", "without_pending"]

SIMULATE_SOURCE = "simulate"
Progress = Any


def labelled_image_ids(catalog: Catalog, task: str, *, simulate: bool) -> dict[str, int]:
    """Image id -> 0/1 for every label bought so far for ``task`` (newest answer wins).

    In simulation only labels revealed by rounds count; otherwise every expert choice for the task
    (Label Studio pulls, ingested image-level labels) counts.  Annotations withdrawn in Label Studio are no
    longer choices (``kind="withdrawn"``); an image whose tasks disagree has a consensus row without a value
    (uncertain), so it has no label.
    """
    with catalog.session() as session:
        query = select(Annotation.image_id, Annotation.meta).where(
            Annotation.kind == "choice", Annotation.label == task)
        if simulate:
            query = query.where(Annotation.source == SIMULATE_SOURCE)
        rows = session.execute(query.order_by(Annotation.created_at, Annotation.id)).all()
    labels: dict[str, int] = {}
    for image_id, meta in rows:
        value = (meta or {}).get("value", 1)
        if value is None:  # annotators (or tasks) disagreed, or every vote was withdrawn: no label
            labels.pop(image_id, None)
        else:
            labels[image_id] = int(bool(value))
    return labels


def training_labels(catalog: Catalog, config: Any) -> tuple[dict[str, int], int]:
    """The labels a round's probe trains on: :func:`labelled_image_ids` without the images of
    ``config.eval_split``, and how many labelled images were left out for that reason.

    The evaluation split's images are the held-out truth the round's metric is measured on; an expert label
    of one of them (bought in Label Studio, or ingested) must not train the probe that is scored on it.
    """
    labelled = labelled_image_ids(catalog, config.task, simulate=config.simulate)
    held_out = images_in_split(catalog, list(labelled), config.eval_split)
    return {image_id: value for image_id, value in labelled.items() if image_id not in held_out}, len(held_out)


def images_in_split(catalog: Catalog, image_ids: list[str], split: str) -> set[str]:
    """The ids among ``image_ids`` whose study is in ``split`` (queried in chunks: bind-parameter limits)."""
    found: set[str] = set()
    with catalog.session() as session:
        for chunk in chunked(image_ids, IN_CHUNK):
            found.update(session.scalars(select(Image.id).join(Study, Study.id == Image.study_id).where(
                Image.id.in_(chunk), Study.split == split)))
    return found


def round_probe(config: Any, random_state: int | None = None):
    """The linear probe a round fits, with the round config's settings (``probe_C``); the demo's random
    baseline fits the same one, so that the two are compared on selection alone.

    Args:
        config: the round's :class:`~radloop.app.round_record.RoundConfig`.
        random_state: seed of the probe's calibration folds (default: ``config.random_state``).
    """
    from radloop.ssl.probe import LinearProbe

    return LinearProbe(C=config.probe_C,
                       random_state=config.random_state if random_state is None else random_state)


def round_progress(catalog: Catalog, round_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """Round id -> answered / skipped / pending / deleted / not_in_label_studio selections (from the catalog)."""
    from radloop.labeling.ls_sync import round_progress as progress

    return progress(catalog, round_ids)


def pending_images(catalog: Catalog) -> dict[str, list[int]]:
    """Image id -> ids of the rounds whose Label Studio task of it is still unanswered (not skipped, not deleted).

    A new round leaves these images out: an answer may still come (``radloop round pull --round N``), and
    selecting them again would put the same image in two tasks.
    """
    from radloop.labeling.ls_sync import selection_states

    waiting: dict[str, list[int]] = {}
    for (round_id, image_id), state in sorted(selection_states(catalog).items()):
        if state == "pending":
            waiting.setdefault(image_id, []).append(round_id)
    return waiting


def without_pending(catalog: Catalog, pool_ids: list[str], regions: list[str | None]
                    ) -> tuple[list[str], list[str | None], str | None]:
    """The pool without images whose Label Studio task in an earlier round is unanswered, and a note saying so."""
    waiting = pending_images(catalog)
    keep = [i for i, image_id in enumerate(pool_ids) if image_id not in waiting]
    if len(keep) == len(pool_ids):
        return pool_ids, regions, None
    rounds = sorted({round_id for i, image_id in enumerate(pool_ids) if image_id in waiting
                     for round_id in waiting[image_id]})
    with catalog.session() as session:
        numbers = dict(session.execute(select(Round.id, Round.number).where(Round.id.in_(rounds))).all())
    where = ", ".join(f"round {numbers[round_id]} (`radloop round pull --round {numbers[round_id]}`)"
                      for round_id in rounds)
    note = (f"{len(pool_ids) - len(keep)} image(s) left out of the pool: their Label Studio tasks are still "
            f"unanswered in {where}; a pull collects late answers")
    return [pool_ids[i] for i in keep], [regions[i] for i in keep], note


def open_task_notes(row: Round, tasks: dict[str, int]) -> list[str]:
    """Notes on the round's tasks that are not answered when it finishes."""
    notes = []
    if tasks.get("pending"):
        notes.append(f"finished with {tasks['pending']} of {sum(tasks.values())} Label Studio task(s) still "
                     f"unanswered: `radloop round pull --round {row.number}` collects late answers (labels spent is "
                     "updated; the next round's model trains on them); until then their images stay out of "
                     "new rounds")
    if tasks.get("skipped"):
        notes.append(f"{tasks['skipped']} task(s) skipped in Label Studio: no label bought")
    if tasks.get("deleted"):
        notes.append(f"{tasks['deleted']} task(s) deleted in Label Studio: `radloop round push --round {row.number} "
                     "--recreate-deleted` imports them again")
    return notes


def late_answers_hint(catalog: Catalog) -> str:
    """Where finished rounds still wait for Label Studio answers, as a hint for a message ('' when nowhere)."""
    waiting = {round_id: tasks["pending"] for round_id, tasks in round_progress(catalog).items() if tasks["pending"]}
    if not waiting:
        return ""
    with catalog.session() as session:
        rows = session.execute(select(Round.id, Round.number).where(Round.id.in_(sorted(waiting)))
                               .order_by(Round.number)).all()
    return "; " + "; ".join(f"round {number} has {waiting[round_id]} task(s) still unanswered in Label Studio: "
                            f"`radloop round pull --round {number}` collects late answers"
                            for round_id, number in rows)


def simulate_answers(catalog: Catalog, round_id: int, task: str) -> int:
    """Reveal the dataset's ground truth for the round's selections (the simulated annotator)."""
    with catalog.session() as session:
        selected = list(session.scalars(select(Selection.image_id).where(Selection.round_id == round_id)))
        answered = set(session.scalars(select(Annotation.image_id).where(
            Annotation.round_id == round_id, Annotation.source == SIMULATE_SOURCE)))
    truth = {t.image_id: t.labels.get(task) for t in image_targets(catalog, image_ids=selected)}
    added = 0
    with catalog.session() as session:
        for image_id in selected:
            if image_id in answered:
                continue
            value = truth.get(image_id)
            if value is None:
                continue  # no ground truth for this image: the annotator "skips" it
            session.add(Annotation(image_id=image_id, source=SIMULATE_SOURCE, kind="choice", label=task,
                                   annotator="simulated", round_id=round_id, meta={"value": int(value)}))
            added += 1
    return added


def train_round_probe(catalog: Catalog, row: Round, config: Any, progress: Progress) -> dict[str, Any]:
    """Fit the probe on every label bought so far, evaluate on the held-out split, register it.

    Labels of images in the evaluation split are left out of training (:func:`training_labels`); the
    result's note and ``labels_left_out`` count them.  ``labels_total`` is the number of labels the probe was
    trained on.
    """
    from radloop.core.registry import register_model
    from radloop.ssl.probe import ProbeError

    encoder_version = row.model_version
    labelled, left_out = training_labels(catalog, config)
    held_out_note = (f"{left_out} labelled image(s) of the '{config.eval_split}' split (the evaluation split) "
                     "left out of training: they stay the held-out truth" if left_out else None)
    if not labelled:  # nothing bought for the task yet (e.g. no selected image has ground truth for it)
        return {"labels_total": 0, "labels_left_out": left_out,
                "note": _joined(f"no labels for '{config.task}' yet: no model trained", held_out_note)}
    progress(f"training a probe on {len(labelled)} labels", 0.5)
    try:
        probe = _fitted_probe(catalog, config, encoder_version, labelled)
    except ProbeError as error:
        return {"labels_total": len(labelled), "labels_left_out": left_out,
                "note": _joined(f"no model trained yet: {error}", held_out_note)}
    metric, truth = _held_out_auroc(catalog, config, encoder_version, probe)
    evaluation = sorted(truth)
    note = held_out_note
    if metric is None:
        positives = sum(bool(value) for value in truth.values())
        note = _joined(note, f"no metric: AUROC needs both classes among the '{config.eval_split}' split's "
                             f"labelled images ({len(evaluation)} labelled, {positives} with {config.task})")
    version = f"probe-{config.task}-r{row.number:03d}-{encoder_version[-8:]}"
    folder = catalog.workspace.models_dir / version
    probe.save(folder)
    save_resolved_config(config, folder / "round_config.yaml")
    with catalog.session() as session:  # the choices behind the training labels: `radloop evaluate` checks them
        annotation_ids = [annotation_id for annotation_id, image_id in session.execute(
            select(Annotation.id, Annotation.image_id).where(Annotation.kind == "choice",
                                                             Annotation.label == config.task))
                          if image_id in labelled]
    metrics = {f"auroc.{config.task}": metric, "labels": len(labelled), "eval_images": len(evaluation)}
    from radloop.core.registry import RegistryError

    make_current, kept = _becomes_current(catalog, f"auroc.{config.task}", metric)
    try:
        register_model(catalog, version, "probe", "findings", folder, parent_version=encoder_version,
                       config={"round": row.number, **json.loads(config.model_dump_json()),
                               "embeddings": {"normalize": True}},
                       metrics=metrics, annotation_ids=annotation_ids, make_current=make_current)
    except RegistryError:
        logger.info("model %s registered already (resumed round)", version)
    if kept:
        note = _joined(note, f"{version} registered, not current: {kept} (`radloop models set-current {version}` "
                             "to use it)")
    result = {"labels_total": len(labelled), "labels_left_out": left_out, "metric": metric,
              "model_version": version, "eval_images": len(evaluation)}
    return {**result, "note": note} if note else result


def labels_before_round(catalog: Catalog, row: Round, config: Any) -> dict[str, int]:
    """The training labels (:func:`training_labels`) the task had besides those of ``row``'s own selections."""
    labelled, _ = training_labels(catalog, config)
    with catalog.session() as session:
        own = set(session.scalars(select(Selection.image_id).where(Selection.round_id == row.id)))
    return {image_id: value for image_id, value in labelled.items() if image_id not in own}


def remeasure_before(catalog: Catalog, row: Round, config: Any) -> tuple[float | None, int, str | None]:
    """What the task scored before ``row``'s labels, measured the way ``row`` measures: the round's probe
    fitted on :func:`labels_before_round` with the round's encoder, scored on the round's evaluation images
    (nothing registered).  Returns the AUROC (``None`` when it cannot be measured), the labels it was fitted
    on and, when it is ``None``, why."""
    from radloop.ssl.probe import ProbeError

    before = labels_before_round(catalog, row, config)
    if not before:
        return None, 0, f"no '{config.task}' labels before round {row.number}"
    try:
        probe = _fitted_probe(catalog, config, row.model_version, before)
    except ProbeError as error:
        return None, len(before), str(error)
    metric, truth = _held_out_auroc(catalog, config, row.model_version, probe)
    return metric, len(before), (None if metric is not None else
                                 f"AUROC needs both classes among the {len(truth)} labelled evaluation images")


def _fitted_probe(catalog: Catalog, config: Any, encoder_version: str, labelled: dict[str, int]):
    """The round's probe fitted on ``labelled`` (image id -> 0/1) with the encoder's embeddings.

    Raises:
        ProbeError: labels the probe cannot fit (e.g. one class only).
    """
    from radloop.core.embeddings import load_embeddings

    train = load_embeddings(catalog, encoder_version, sorted(labelled))
    targets = np.array([[labelled[image_id]] for image_id in train.image_ids], dtype=np.int64)
    return round_probe(config).fit(_normalize(train.vectors), targets, [config.task])


def _held_out_auroc(catalog: Catalog, config: Any, encoder_version: str, probe) -> tuple[float | None, dict]:
    """The probe's AUROC on the evaluation split's images labelled for the task (``None`` without both
    classes), and those images' labels."""
    from sklearn.metrics import roc_auc_score

    from radloop.core.embeddings import load_embeddings

    # the held-out split's labels only (not a target per image of the split)
    truth = {image_id: labels[config.task] for image_id, labels in image_labels(
        catalog, split=config.eval_split, dataset=config.dataset).items() if labels.get(config.task) is not None}
    if not truth:
        return None, truth
    held_out = load_embeddings(catalog, encoder_version, sorted(truth))
    labels = np.array([truth[image_id] for image_id in held_out.image_ids])
    if labels.min() == labels.max():
        return None, truth
    scores = probe.predict_proba(_normalize(held_out.vectors))[:, 0]
    return float(roc_auc_score(labels, scores)), truth


def _becomes_current(catalog: Catalog, metric_name: str, metric: float | None) -> tuple[bool, str | None]:
    """Whether a round's probe replaces the current findings model (what the ML backend serves), and if not,
    why.  It does when there is none, when the current one is an earlier round's probe, or when it scores at
    least as well on the same metric; a model trained otherwise (``radloop train``) is not displaced by a probe
    that scores worse or has no score."""
    current = catalog.current_model("findings")
    if current is None or "round" in (current.config or {}):
        return True, None
    theirs = (current.metrics or {}).get(metric_name)
    if metric is not None and (theirs is None or metric >= theirs):
        return True, None
    score = f"{metric_name} {theirs:.3f}" if isinstance(theirs, (int, float)) else "trained outside the rounds"
    return False, f"the current findings model {current.version} ({score}) stays current"


def _joined(*notes: str | None) -> str:
    return "; ".join(note for note in notes if note)


def _normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
