"""Training jobs behind ``radloop train``: data from the catalog, a head, held-out metrics, registration.

A job trains on ``data.train_splits`` (expert labels first, report weak labels optionally), evaluates on
``data.eval_split`` (study-level, checked not to overlap), saves the artefacts (safetensors + JSON + the
resolved YAML config) under ``<workspace>/models/<version>/`` and registers the model with its parent
encoder, config, metrics and the expert annotation ids it used.  Fine-tuning and detection keep Lightning
checkpoints in ``<workspace>/models/runs/<version>/checkpoints/`` while they train: the same command, rerun after
a Ctrl-C, resumes there, and the same job in a second process is refused (:mod:`radloop.ssl.finetune_checkpoints`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radloop.core.catalog import Catalog
from radloop.core.config import save_resolved_config
from radloop.core.registry import ModelRecord, RegistryError, current_model, get_model, register_model
from radloop.ssl.finetune_checkpoints import job_lock, remove_checkpoints
from radloop.ssl.finetune_data import (DataError, LabeledSet, build_labeled_set, cap_images, check_no_leak,
                                      drop_missing_renders, drop_unlabelled, subsample)
from radloop.ssl.finetune_config import EncoderConfigRef, TrainConfig

log = logging.getLogger(__name__)

__all__ = ["JobResult", "VersionExistsError", "checkpoint_folder", "embeddings_for", "resolve_encoder", "run_training",
           "train_head"]


class VersionExistsError(RegistryError):
    """The job's version is registered already: same config, encoder and labelled images, nothing new to learn.

    Raised before anything is trained or written, so the registered model's artefacts stay untouched.
    """

    def __init__(self, version: str) -> None:
        super().__init__(f"model version {version!r} is already registered (same config, encoder and labelled "
                         "images): nothing new to train")
        self.version = version


@dataclass
class JobResult:
    """What a training job produced."""

    version: str
    metrics: dict[str, Any]
    train_summary: dict[str, Any]
    eval_summary: dict[str, Any]
    messages: list[str] = field(default_factory=list)
    record: ModelRecord | None = None
    predictor: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "registered": self.record is not None,
                "current": bool(self.record and self.record.is_current), "metrics": self.metrics,
                "train": self.train_summary, "eval": self.eval_summary, "messages": self.messages[:20],
                "n_messages": len(self.messages)}


def _referenced_encoder(catalog: Catalog, reference: EncoderConfigRef) -> tuple[Any, str] | None:
    """The encoder named by ``path`` (registered on first use) or ``version``/``current``; None if neither."""
    from radloop.ssl.encoder_adapter import encoder_from_registry, ensure_encoder_registered, load_encoder

    if reference.path:
        bundle = load_encoder(reference.path)
        ensure_encoder_registered(catalog, reference.path, bundle)
        return bundle, bundle.version
    version = reference.version
    if version in (None, "current"):
        record = current_model(catalog, "encoder")
        if record is None:
            return None
        version = record.version
    return encoder_from_registry(catalog, version), version


def resolve_encoder(catalog: Catalog, reference: EncoderConfigRef) -> tuple[Any, str | None]:
    """The encoder bundle a head starts from and its registry version (None for random init).

    Raises:
        DataError: a pretrained encoder is asked for but none is given or current.
    """
    from radloop.ssl.encoder_adapter import random_encoder

    found = _referenced_encoder(catalog, reference) if (reference.path or reference.version) else None
    if reference.init == "random":
        if found is not None:
            config = found[0].config
            return random_encoder(config.timm_name, config.image_size, patch_size=config.patch_size,
                                  mean=config.mean, std=config.std, pooling=config.pooling,
                                  flip_average=config.flip_average, **config.model_kwargs), None
        return random_encoder(reference.timm_name, reference.image_size), None
    if found is None:
        raise DataError("no current encoder in the registry: pretrain one (`radloop pretrain ...`), set "
                        "encoder.path=FOLDER or encoder.version=VERSION, or use encoder.init=random")
    return found


def embeddings_for(catalog: Catalog, bundle: Any, version: str | None, labeled: LabeledSet, *,
                   batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(N, D) L2-normalised embeddings of ``labeled``'s images: stored ones reused, missing ones computed.

    Newly computed embeddings of a registered encoder are written to the shared store in the setting its stored
    vectors have (raw where ``radloop embed --no-normalize`` stored them raw, else L2-normalized): a version's
    vectors stay one set (:func:`radloop.ssl.embed.embed_catalog` refuses a mix too).
    """
    from radloop.core.embeddings import embedded_image_ids, embedding_write_lock, load_embeddings, write_shard
    from radloop.ssl.encoder_adapter import embed_images

    known: dict[str, np.ndarray] = {}
    if version is not None:
        try:
            stored = load_embeddings(catalog, version, labeled.image_ids)
            known = dict(zip(stored.image_ids, stored.vectors))
        except LookupError:
            known = {}
    missing = [i for i, image_id in enumerate(labeled.image_ids) if image_id not in known]
    if missing:
        raw = embed_images(bundle, [labeled.paths[i] for i in missing], batch_size=batch_size, normalize=False,
                           progress=progress)
        vectors = _unit_rows(raw)
        if version is not None:  # under the store's write lock, leaving out what another run stored meanwhile
            ids = [labeled.image_ids[i] for i in missing]
            with embedding_write_lock(catalog):
                done = embedded_image_ids(catalog, version, ids)
                keep = [j for j, image_id in enumerate(ids) if image_id not in done]
                if keep:
                    normalized = _stored_normalization(catalog, version)
                    write_shard(catalog, version, [ids[j] for j in keep], (vectors if normalized else raw)[keep],
                                normalized=normalized)
        known.update({labeled.image_ids[i]: vector for i, vector in zip(missing, vectors)})
    return _unit_rows(np.stack([known[image_id] for image_id in labeled.image_ids]).astype(np.float32))


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (N, D) with each row L2-normalized (float32)."""
    matrix = matrix.astype(np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _stored_normalization(catalog: Catalog, version: str) -> bool:
    """Whether new vectors of ``version`` are stored L2-normalized: False only where every stored one is raw
    (``radloop embed --no-normalize``); True for a version with none stored yet (``radloop embed``'s default)."""
    from radloop.core.embeddings import stored_settings

    return stored_settings(catalog, version)[0] != {False}


def _version(config: TrainConfig, parent: str | None, labeled: LabeledSet,
             calibration: LabeledSet | None = None) -> str:
    """``<kind>-<name>-<8 hex>`` (``<kind>-<8 hex>`` when the name only repeats the head) of what the model learns
    from: config, encoder, images and their labels (targets, weights, regions, boxes), and for a fine-tuned classifier
    the labelled images that calibrate it or choose its epoch, so a corrected label is a new version, while the same
    labelled sets are the same one."""
    labels = [np.asarray(labeled.targets).tolist(), [round(float(w), 6) for w in labeled.weights],
              list(labeled.regions), [[repr(box) for box in boxes] for boxes in labeled.boxes]]
    settings = config.model_dump(mode="json")
    settings["trainer"].pop("checkpoint_every_n_steps", None)  # when it saves does not change what it learns
    learned_from = [settings, parent, labeled.image_ids, labels]
    if calibration is not None:  # absent otherwise: probe and detector versions stay what they were
        learned_from.append([calibration.image_ids, np.asarray(calibration.targets).tolist()])
    digest = hashlib.sha256(json.dumps(learned_from, sort_keys=True, default=str).encode()).hexdigest()[:8]
    kind = {"probe": "probe", "finetune": "clf", "detect": "det"}[config.head]
    # the config's name without the head it repeats: probe.yaml -> probe-<hex> (was probe-probe-<hex>),
    # detect-gpu.yaml -> det-gpu-<hex>
    name = config.name
    for repeated in {kind, config.head}:
        if name == repeated or name[len(repeated):len(repeated) + 1] in ("-", "_") and name.startswith(repeated):
            name = name[len(repeated) + 1:]
            break
    return f"{kind}-{name}-{digest}" if name else f"{kind}-{digest}"


def train_head(catalog: Catalog, config: TrainConfig, train: LabeledSet, bundle: Any, encoder_version: str | None,
               *, calibration: LabeledSet | None = None, progress: bool = True,
               checkpoints: Path | None = None) -> tuple[Any, dict[str, Any], list[str]]:
    """Train the configured head on ``train``; returns (predictor, train summary, messages).

    ``calibration``: labelled held-out images on which a fine-tuned classifier is Platt-scaled.
    ``checkpoints``: the job's checkpoint folder (fine-tuning and detection resume from it and save there)."""
    messages: list[str] = []
    summary = train.summary()
    findings = train.findings
    regions = train.regions if config.data.body_region else [None] * len(train)
    if config.head == "probe":
        from radloop.ssl.predict import ProbePredictor
        from radloop.ssl.probe import LinearProbe

        vectors = embeddings_for(catalog, bundle, encoder_version, train, batch_size=config.probe.batch_size,
                                 progress=progress)
        probe = LinearProbe(C=config.probe.C, class_weight=config.probe.class_weight,
                            calibration_folds=config.probe.calibration_folds, random_state=config.data.seed)
        probe.fit(vectors, train.targets, findings, regions=regions, sample_weight=train.weights)
        messages.extend(f"{name} not trained: {why}" for name, why in probe.skipped_.items())
        predictor = ProbePredictor(bundle, probe, "", encoder_version=encoder_version)
    elif config.head == "finetune":
        from radloop.ssl.finetune import train_classifier

        if not any(len(np.unique(column[column >= 0])) == 2 for column in train.targets.T):
            counts = "; ".join(f"{name}: {summary['positives'][name]} present of {summary['labelled'][name]} labelled"
                               for name in findings)
            raise DataError(f"one class only: no finding has both present and absent training images ({counts}): "
                            "label images of the missing class")
        validation = None
        if config.finetune.select_epoch:
            if calibration is not None and len(calibration):
                validation = (calibration.paths, calibration.targets)
            elif config.data.calibration_split is None:  # other reasons come from _calibration_set
                messages.append("epoch not selected: data.calibration_split is null; the last epoch is kept")
        predictor = train_classifier(bundle, train.paths, train.targets, train.weights, regions, findings,
                                     config.finetune, config.trainer, validation=validation, progress=progress,
                                     checkpoints=checkpoints)
        messages.extend(predictor.checkpoint_messages)
        if "epoch_selection" in predictor.meta:
            summary["epoch_selection"] = {"split": config.data.calibration_split, **predictor.meta["epoch_selection"]}
        if config.finetune.calibrate and calibration is not None and len(calibration):
            messages.extend(predictor.calibrate(calibration.paths, calibration.targets, progress=progress))
            summary["calibration"] = {"split": config.data.calibration_split, **predictor.meta["calibration"]}
    else:
        from radloop.ssl.detection import known_negatives, train_detector

        negatives = known_negatives(train.targets, findings, config.detect.labels)
        predictor, messages = train_detector(bundle, train.paths, train.sizes, train.boxes, negatives,
                                             config.detect, config.trainer, progress=progress,
                                             checkpoints=checkpoints)
        summary["detector"] = predictor.train_summary
    return predictor, summary, messages


def run_training(catalog: Catalog, config: TrainConfig, *, register: bool = True, progress: bool = True) -> JobResult:
    """Run one training job end to end (see the module docstring).

    Raises:
        DataError: no labelled training images, one class only, or a train/eval study overlap.
        VersionExistsError: ``register`` and this very job (config, encoder, labelled images) was registered
            before; checked before training.
        KeyboardInterrupt: Ctrl-C while a fine-tuned classifier or detector trained; the message says which
            checkpoint the same command resumes from (:func:`checkpoint_folder`).
        JobLockedError: another process is training this very job (fine-tuning, detection): it is not waited for.
    """
    import lightning as L

    from radloop.ssl.finetune_evaluate import evaluate_predictor

    data = config.data
    if config.head != "probe":  # the probe embeds wherever it can; the other heads train with Lightning
        _check_accelerator(config.trainer.accelerator)
    findings = list(data.findings)
    if config.head == "detect":
        findings = list(dict.fromkeys(findings + config.detect.labels))
    train = build_labeled_set(catalog, findings, splits=data.train_splits, dataset=data.dataset,
                              weak_labels=data.weak_labels.use, weak_weight=data.weak_labels.weight)
    train, render_messages = drop_missing_renders(train, "training")
    if config.head != "detect":  # the detector picks its own images: boxed ones and known negatives
        train, unlabelled = drop_unlabelled(train, regions=data.body_region)
        render_messages += unlabelled
    train = subsample(train, data.label_fraction, seed=data.seed)
    if data.max_train_images:  # exact (the label fraction keeps one image of each class, the cap does not add)
        train = cap_images(train, data.max_train_images, seed=data.seed)
    try:
        held_out = build_labeled_set(catalog, findings, splits=[data.eval_split], dataset=data.dataset,
                                     require_labels=False)
        held_out, missing = drop_missing_renders(held_out, f"{data.eval_split}-split (evaluation)")
        render_messages += missing
        if data.max_eval_images and len(held_out) > data.max_eval_images:
            held_out = held_out.take(np.random.default_rng(data.seed).choice(
                len(held_out), data.max_eval_images, replace=False).tolist())
        check_no_leak(train, held_out)
    except DataError as error:
        if "both the training" in str(error):
            raise
        held_out, no_evaluation = None, str(error)
        log.warning("no held-out evaluation: %s", error)
    calibration, calibration_messages = _calibration_set(catalog, config, findings, train, held_out)
    bundle, encoder_version = resolve_encoder(catalog, config.encoder)
    version = _version(config, encoder_version, train, calibration)
    checkpoints = None if config.head == "probe" else checkpoint_folder(catalog, version)
    with job_lock(checkpoints):  # one process per job: a second would write the same checkpoint
        if register and _is_registered(catalog, version):  # checked under the lock: not while another registers it
            raise VersionExistsError(version)
        # one seed for head initialisation, augmentation, shuffling and sampling: the same job trains the same model
        L.seed_everything(data.seed, workers=True, verbose=False)
        predictor, train_summary, messages = train_head(catalog, config, train, bundle, encoder_version,
                                                        calibration=calibration, progress=progress,
                                                        checkpoints=checkpoints)
        messages = render_messages + calibration_messages + messages
        metrics: dict[str, Any] = {}
        eval_summary: dict[str, Any] = {"split": data.eval_split, "images": 0}
        if held_out is not None:
            metrics = evaluate_predictor(predictor, held_out, catalog=catalog, encoder_version=encoder_version,
                                         progress=progress)
            eval_summary = {"split": data.eval_split, **held_out.summary()}
        else:
            messages.append(f"metrics not measured on eval split {data.eval_split!r}: {no_evaluation}")
        predictor.model_version = version
        result = JobResult(version=version, metrics=metrics, train_summary=train_summary, eval_summary=eval_summary,
                           messages=messages, predictor=predictor)
        if register:
            # expert labels the model used: its training images', plus the calibration images' when they scaled it
            # or chose its epoch
            used = "calibration" in train_summary or "epoch_selection" in train_summary
            annotation_ids = sorted(set(train.annotation_ids) | set(
                calibration.annotation_ids if calibration is not None and used else []))
            folder = catalog.workspace.models_dir / version
            if config.head == "probe":
                predictor.probe.save(folder)
            else:
                predictor.save(folder)
            save_resolved_config(config, folder / "config.yaml")
            kind = {"probe": "probe", "finetune": "classifier", "detect": "detector"}[config.head]
            stored_config = {**config.model_dump(mode="json"), "embeddings": {"normalize": True},
                             "train_summary": train_summary, "eval_summary": eval_summary,
                             "encoder_init": config.encoder.init}
            result.record = register_model(catalog, version, kind=kind, task=config.resolved_task, path=folder,
                                           parent_version=encoder_version, config=stored_config,
                                           metrics=_json_safe(metrics), annotation_ids=annotation_ids,
                                           make_current=config.make_current)
        remove_checkpoints(checkpoints)  # the job is done: nothing left to resume
    return result


def checkpoint_folder(catalog: Catalog, version: str) -> Path:
    """Where the job of ``version`` keeps its training checkpoints: ``<workspace>/models/runs/<version>/checkpoints``
    (the same job, rerun, resumes from them)."""
    return catalog.workspace.models_dir / "runs" / version / "checkpoints"


def _check_accelerator(accelerator: str) -> None:
    """Refuse, before any image is read, a GPU accelerator on a machine without one (Lightning's own error is a
    traceback raised only once the images are loaded).

    Raises:
        DataError: ``gpu`` / ``cuda`` without a CUDA device, ``mps`` without Apple's MPS.
    """
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        missing = "no CUDA GPU is visible"
    elif accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        missing = "Apple's MPS is not available"
    else:
        return
    raise DataError(f"trainer.accelerator={accelerator} but {missing} on this machine: use a CPU config "
                    "(configs/finetune/*_cpu.yaml) or --set trainer.accelerator=cpu")


def _calibration_set(catalog: Catalog, config: TrainConfig, findings: list[str], train: LabeledSet,
                     held_out: LabeledSet | None) -> tuple[LabeledSet | None, list[str]]:
    """The labelled images a fine-tuned classifier is calibrated (and its epoch selected) on: never training or
    evaluation images."""
    data = config.data
    split = data.calibration_split
    if config.head != "finetune" or not (config.finetune.calibrate or config.finetune.select_epoch) or split is None:
        return None, []
    what = " and ".join(name for name, wanted in (("not calibrated", config.finetune.calibrate),
                                                  ("epoch not selected", config.finetune.select_epoch)) if wanted)
    if split in data.train_splits or split == data.eval_split:
        role = "a training split" if split in data.train_splits else "the eval split"
        return None, [f"{what}: calibration_split {split!r} is {role} (set data.calibration_split)"]
    try:
        calibration = build_labeled_set(catalog, findings, splits=[split], dataset=data.dataset)
        calibration, messages = drop_missing_renders(calibration, f"{split}-split (calibration)")
        check_no_leak(train, calibration)
        if held_out is not None:
            check_no_leak(calibration, held_out)
    except DataError as error:
        if "both the training" in str(error):
            raise
        return None, [f"{what}: {error}"]
    return calibration, messages


def _is_registered(catalog: Catalog, version: str) -> bool:
    try:
        get_model(catalog, version)
    except RegistryError:
        return False
    return True


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(metrics, default=float, allow_nan=True).replace("NaN", "null"))
