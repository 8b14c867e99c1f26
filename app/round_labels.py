"""What a round buys: simulated answers, the probe trained on every label so far, and its held-out metric.

Split from :mod:`radloop.app.rounds` (the state machine); these functions do one step each and are
idempotent, so the state machine can rerun them after a crash.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from sqlalchemy import select

from radloop.core.catalog import Catalog
from radloop.core.config import save_resolved_config
from radloop.core.schema import Annotation, Round, Selection
from radloop.core.targets import image_targets

logger = logging.getLogger(__name__)

__all__ = ["SIMULATE_SOURCE", "labelled_image_ids", "simulate_answers", "train_round_probe"]

SIMULATE_SOURCE = "simulate"
Progress = Any


def labelled_image_ids(catalog: Catalog, task: str, *, simulate: bool) -> dict[str, int]:
    """Image id -> 0/1 for every label bought so far for ``task`` (newest answer wins).

    In simulation only labels revealed by rounds count; otherwise every expert choice for the task
    (Label Studio pulls, ingested image-level labels) counts.
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
        if value is None:  # annotators disagreed: the consensus is "uncertain", not a label
            labels.pop(image_id, None)
        else:
            labels[image_id] = int(bool(value))
    return labels


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
    """Fit the probe on every label bought so far, evaluate on the held-out split, register it."""
    from sklearn.metrics import roc_auc_score

    from radloop.core.embeddings import load_embeddings
    from radloop.core.registry import register_model
    from radloop.ssl.probe import LinearProbe, ProbeError

    encoder_version = row.model_version
    labelled = labelled_image_ids(catalog, config.task, simulate=config.simulate)
    train = load_embeddings(catalog, encoder_version, sorted(labelled))
    targets = np.array([[labelled[image_id]] for image_id in train.image_ids], dtype=np.int64)
    progress(f"training a probe on {len(train.image_ids)} labels", 0.5)
    try:
        probe = LinearProbe(C=config.probe_C, random_state=config.random_state).fit(
            _normalize(train.vectors), targets, [config.task])
    except ProbeError as error:
        return {"labels_total": len(labelled), "note": f"no model trained yet: {error}"}
    evaluation = [t for t in image_targets(catalog, split=config.eval_split, dataset=config.dataset)
                  if t.labels.get(config.task) is not None]
    metric = None
    if evaluation:
        held_out = load_embeddings(catalog, encoder_version, [t.image_id for t in evaluation])
        truth = {t.image_id: t.labels[config.task] for t in evaluation}
        labels = np.array([truth[image_id] for image_id in held_out.image_ids])
        scores = probe.predict_proba(_normalize(held_out.vectors))[:, 0]
        if labels.min() != labels.max():
            metric = float(roc_auc_score(labels, scores))
    note = None
    if metric is None:
        positives = sum(bool(t.labels[config.task]) for t in evaluation)
        note = (f"no metric: AUROC needs both classes among the '{config.eval_split}' split's labelled images "
                f"({len(evaluation)} labelled, {positives} with {config.task})")
    version = f"probe-{config.task}-r{row.number:03d}-{encoder_version[-8:]}"
    folder = catalog.workspace.models_dir / version
    probe.save(folder)
    save_resolved_config(config, folder / "round_config.yaml")
    with catalog.session() as session:
        annotation_ids = list(session.scalars(select(Annotation.id).where(
            Annotation.kind == "choice", Annotation.label == config.task)))
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
        note = "; ".join(filter(None, [note, f"{version} registered, not current: {kept} (`radloop models "
                                               f"set-current {version}` to use it)"]))
    result = {"labels_total": len(labelled), "metric": metric, "model_version": version}
    return {**result, "note": note} if note else result


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


def _normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
