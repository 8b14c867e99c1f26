"""Model registry over the catalog ``models`` table: versions, lineage, data used, metrics, current model.

Every trained artefact (encoder, probe, classifier, detector) is one row: its ``version`` (unique), ``kind``,
``task`` (what it is used for: ``encoder``, ``findings``, ``detection``), ``parent_version`` (the encoder it
was trained on), ``path`` (folder holding ``*.safetensors`` + a JSON/YAML config, never pickle), the resolved
``config``, ``metrics`` on the held-out split and the expert ``annotation_ids`` it was trained with.

Exactly one model per task is *current*: the Label Studio ML backend and the selection strategies use it
(``catalog.current_model(task)``).  :func:`rollback` makes the version registered before the current one
current again; nothing is ever deleted.

Usage::

    record = register_model(catalog, "probe-findings-1a2b3c4d", kind="probe", task="findings",
                            path=folder, parent_version=encoder_version, config=config.model_dump(),
                            metrics={"auroc.fracture": 0.81}, annotation_ids=[1, 2, 3], make_current=True)
    rollback(catalog, "findings")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radloop.core.catalog import Catalog
from radloop.core.schema import Model

#: Kinds of registered models.
MODEL_KINDS = ("encoder", "probe", "classifier", "detector")
#: Conventional task names (free strings are allowed; these are the ones radloop's parts use).
TASK_ENCODER = "encoder"
TASK_FINDINGS = "findings"
TASK_DETECTION = "detection"
#: The two files of an exported encoder folder (written by :mod:`radloop.ssl.encoders`, which imports torch;
#: named here so that the catalog side can find an encoder without importing it).
ENCODER_WEIGHTS_FILE = "encoder.safetensors"
ENCODER_CONFIG_FILE = "encoder.json"

__all__ = [
    "ENCODER_CONFIG_FILE", "ENCODER_WEIGHTS_FILE", "MODEL_KINDS", "TASK_DETECTION", "TASK_ENCODER", "TASK_FINDINGS",
    "EncoderLocation", "ModelRecord", "RegistryError", "get_model", "list_models", "locate_encoder",
    "move_model_folder", "register_model", "rollback", "set_current",
]


class RegistryError(LookupError):
    """An unknown version, a duplicate version, or a rollback with nothing to roll back to."""


@dataclass(frozen=True)
class ModelRecord:
    """One registered model (a detached, immutable copy of its catalog row)."""

    version: str
    kind: str
    task: str
    parent_version: str | None
    path: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    annotation_ids: list[int] = field(default_factory=list)
    is_current: bool = False
    created_at: datetime | None = None

    def folder(self, catalog: Catalog) -> Path:
        """Absolute path of the model's artefact folder (the catalog stores it workspace-relative)."""
        path = Path(self.path)
        return path if path.is_absolute() else catalog.workspace.absolute(self.path)

    def to_json(self) -> dict[str, Any]:
        """Summary for ``--json`` output (annotation ids are counted, not listed)."""
        return {"version": self.version, "kind": self.kind, "task": self.task,
                "parent_version": self.parent_version, "path": self.path, "is_current": self.is_current,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "n_annotations": len(self.annotation_ids), "metrics": dict(self.metrics)}


def _record(row: Model) -> ModelRecord:
    created = row.created_at
    if created is not None and created.tzinfo is None:  # SQLite drops the zone; values are UTC
        created = created.replace(tzinfo=timezone.utc)
    return ModelRecord(version=row.version, kind=row.kind, task=row.task, parent_version=row.parent_version,
                       path=row.path, config=dict(row.config or {}), metrics=dict(row.metrics or {}),
                       annotation_ids=list(row.annotation_ids or []), is_current=bool(row.is_current),
                       created_at=created)


def move_model_folder(catalog: Catalog, version: str, folder: str | Path) -> None:
    """Record that ``version``'s artefacts now lie in ``folder`` (the caller moved them there).

    Raises:
        RegistryError: no such version.
    """
    with catalog.session() as session:
        row = session.get(Model, version)
        if row is None:
            raise RegistryError(f"no model with version {version!r}")
        row.path = _stored_path(catalog, Path(folder).resolve())


def _stored_path(catalog: Catalog, path: str | Path) -> str:
    """Workspace-relative when the folder lies inside the workspace, else absolute."""
    candidate = Path(path)
    if not candidate.is_absolute():
        return str(candidate)
    try:
        return catalog.workspace.relative(candidate)
    except ValueError:
        return str(candidate.resolve())


def _row(session: Session, version: str) -> Model:
    row = session.get(Model, version)
    if row is None:
        known = session.scalars(select(Model.version).order_by(Model.created_at.desc()).limit(10)).all()
        hint = f"; recent versions: {', '.join(known)}" if known else "; the registry is empty"
        raise RegistryError(f"no model version {version!r} in the registry{hint}")
    return row


def _task_history(session: Session, task: str) -> list[Model]:
    """Models of a task, oldest first (ties broken by version so that the order is deterministic)."""
    return list(session.scalars(select(Model).where(Model.task == task)
                                .order_by(Model.created_at, Model.version)))


def _make_current(session: Session, row: Model) -> None:
    for other in session.scalars(select(Model).where(Model.task == row.task, Model.is_current.is_(True))):
        if other.version != row.version:
            other.is_current = False
    row.is_current = True


def register_model(catalog: Catalog, version: str, kind: str, task: str, path: str | Path,
                   parent_version: str | None = None, config: dict[str, Any] | None = None,
                   metrics: dict[str, Any] | None = None, annotation_ids: list[int] | None = None,
                   make_current: bool = False) -> ModelRecord:
    """Add a model to the registry.

    Args:
        catalog: the workspace catalog.
        version: unique version string (e.g. ``probe-findings-1a2b3c4d``).
        kind: one of :data:`MODEL_KINDS`.
        task: what the model is used for (``findings``, ``detection``, ``encoder``, ...).
        path: artefact folder (safetensors + JSON config); stored relative to the workspace when inside it.
        parent_version: the encoder (or model) it was trained from; must be registered when given.
        config: the resolved training config.
        metrics: held-out metrics (``auroc.<finding>``, ``ap.<finding>``, ``ece``, ``map50``, ...).
        annotation_ids: ids of the expert annotations used for training.
        make_current: make it the task's current model (the previous current one stays, not current).

    Returns:
        The registered record.

    Raises:
        RegistryError: the version exists already, or the parent version is unknown.
        ValueError: an unknown kind or an empty version/task.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(MODEL_KINDS)}")
    if not version or not task:
        raise ValueError("a model needs a non-empty version and task")
    with catalog.session() as session:
        if session.get(Model, version) is not None:
            raise RegistryError(f"model version {version!r} is already registered; versions are immutable")
        if parent_version is not None and session.get(Model, parent_version) is None:
            raise RegistryError(f"parent version {parent_version!r} of {version!r} is not in the registry; "
                                "register the encoder first")
        row = Model(version=version, kind=kind, task=task, parent_version=parent_version,
                    path=_stored_path(catalog, path), config=dict(config or {}), metrics=dict(metrics or {}),
                    annotation_ids=sorted(int(i) for i in (annotation_ids or [])), is_current=False)
        session.add(row)
        session.flush()
        if make_current:
            _make_current(session, row)
        session.flush()
        return _record(row)


def get_model(catalog: Catalog, version: str) -> ModelRecord:
    """The record of ``version``.

    Raises:
        RegistryError: unknown version (the message lists recent ones).
    """
    with catalog.session() as session:
        return _record(_row(session, version))


def list_models(catalog: Catalog, task: str | None = None, kind: str | None = None) -> list[ModelRecord]:
    """Registered models (optionally of one task/kind), newest first."""
    with catalog.session() as session:
        query = select(Model)
        if task:
            query = query.where(Model.task == task)
        if kind:
            query = query.where(Model.kind == kind)
        rows = session.scalars(query.order_by(Model.created_at.desc(), Model.version.desc())).all()
        return [_record(row) for row in rows]


def current_model(catalog: Catalog, task: str) -> ModelRecord | None:
    """The current model of ``task`` as a record, or None."""
    row = catalog.current_model(task)
    return _record(row) if row is not None else None


def set_current(catalog: Catalog, version: str) -> ModelRecord:
    """Make ``version`` the current model of its task (all others of that task stop being current).

    Raises:
        RegistryError: unknown version.
    """
    with catalog.session() as session:
        row = _row(session, version)
        _make_current(session, row)
        session.flush()
        return _record(row)


def rollback(catalog: Catalog, task: str) -> ModelRecord:
    """Make the version registered just before the current one of ``task`` current; returns it.

    Repeated rollbacks walk further back.  When no model is current, the newest one is not assumed:
    the caller must :func:`set_current` explicitly.

    Raises:
        RegistryError: the task has no models, no current model, or the current one is the oldest.
    """
    with catalog.session() as session:
        history = _task_history(session, task)
        if not history:
            raise RegistryError(f"no models registered for task {task!r}")
        current = [index for index, row in enumerate(history) if row.is_current]
        if not current:
            raise RegistryError(f"task {task!r} has no current model; use set-current VERSION")
        position = current[-1]
        if position == 0:
            raise RegistryError(f"{history[0].version!r} is the oldest model of task {task!r}; "
                                "nothing to roll back to")
        previous = history[position - 1]
        _make_current(session, previous)
        session.flush()
        return _record(previous)


@dataclass(frozen=True)
class EncoderLocation:
    """Where an encoder named on the command line lives: its ``folder``, and ``registered``, the version the
    registry recorded for that folder when the name was a registered version or ``current`` (None for a path)."""

    folder: Path
    registered: str | None = None


def locate_encoder(catalog: Catalog, name: str | Path) -> EncoderLocation:
    """The folder of an encoder given as a folder (or file) path, a registered encoder version, or ``current`` (the
    workspace's current encoder) -- the one lookup behind :func:`radloop.ssl.embed.resolve_encoder` and the
    torch-free checks of ``radloop embed``.  Nothing is read from the folder.

    Raises:
        LookupError: neither an existing path nor a registered version (or no current encoder); the message lists
            the registered encoders.
    """
    path = Path(name)
    if path.exists():
        return EncoderLocation(path.parent if path.is_file() else path)
    with catalog.session() as session:
        known = session.scalars(select(Model.version).where(Model.kind == "encoder")).all()
        if str(name) == "current":
            row = session.scalars(select(Model).where(Model.task == TASK_ENCODER, Model.kind == "encoder",
                                                      Model.is_current.is_(True))
                                  .order_by(Model.created_at.desc())).first()
            if row is None:
                raise LookupError("the workspace has no current encoder: run `radloop pretrain` or pass --encoder "
                                  f"FOLDER (encoders: {', '.join(known) if known else 'none registered'})")
        else:
            row = session.get(Model, str(name))
        listed = ", ".join(known) if known else "none registered"
        if row is None:
            raise LookupError(f"encoder {name!r} is neither a folder nor a registered version (encoders: {listed})")
        if row.kind != "encoder":
            raise LookupError(f"{name!r} is a registered {row.kind}, not an encoder (encoders: {listed})")
        version, stored = row.version, Path(row.path)
    return EncoderLocation(stored if stored.is_absolute() else catalog.workspace.absolute(str(stored)), version)
