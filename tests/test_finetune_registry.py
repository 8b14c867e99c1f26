"""Model registry round-trip: register, list, current per task, set-current, rollback, errors."""

from __future__ import annotations

import pytest

from radloop.core.registry import (
    RegistryError, get_model, list_models, register_model, rollback, set_current,
)


def _register(catalog, version, task="findings", kind="probe", **kwargs):
    folder = catalog.workspace.models_dir / version
    folder.mkdir(parents=True, exist_ok=True)
    return register_model(catalog, version, kind=kind, task=task, path=folder, **kwargs)


def test_round_trip_keeps_lineage_config_metrics_and_annotations(catalog):
    _register(catalog, "enc-1", task="encoder", kind="encoder")
    record = _register(catalog, "probe-1", parent_version="enc-1", config={"probe": {"C": 0.5}},
                       metrics={"auroc.fracture": 0.81, "ece": 0.04}, annotation_ids=[5, 3, 4])
    loaded = get_model(catalog, "probe-1")
    assert loaded == record
    assert loaded.parent_version == "enc-1" and loaded.config == {"probe": {"C": 0.5}}
    assert loaded.metrics["auroc.fracture"] == 0.81 and loaded.annotation_ids == [3, 4, 5]
    assert loaded.path == "models/probe-1"  # stored relative to the workspace
    assert loaded.folder(catalog) == catalog.workspace.models_dir / "probe-1"
    assert not loaded.is_current and catalog.current_model("findings") is None


def test_one_current_per_task_and_rollback_walks_back(catalog):
    for index in range(1, 4):
        _register(catalog, f"probe-{index}", make_current=True)
    _register(catalog, "det-1", task="detection", kind="detector", make_current=True)
    assert catalog.current_model("findings").version == "probe-3"
    assert [m.version for m in list_models(catalog, task="findings") if m.is_current] == ["probe-3"]
    assert rollback(catalog, "findings").version == "probe-2"
    assert catalog.current_model("findings").version == "probe-2"
    assert rollback(catalog, "findings").version == "probe-1"
    with pytest.raises(RegistryError, match="oldest"):
        rollback(catalog, "findings")
    assert catalog.current_model("detection").version == "det-1"  # other tasks untouched
    set_current(catalog, "probe-3")
    assert [m.version for m in list_models(catalog, task="findings") if m.is_current] == ["probe-3"]
    assert [m.version for m in list_models(catalog)][:1] == ["det-1"]  # newest first


def test_errors_are_clear(catalog):
    _register(catalog, "probe-1")
    with pytest.raises(RegistryError, match="already registered"):
        _register(catalog, "probe-1")
    with pytest.raises(RegistryError, match="parent version 'enc-x'"):
        _register(catalog, "probe-2", parent_version="enc-x")
    with pytest.raises(RegistryError, match="no model version 'nope'.*probe-1"):
        set_current(catalog, "nope")
    with pytest.raises(RegistryError, match="no current model"):
        rollback(catalog, "findings")
    with pytest.raises(RegistryError, match="no models registered"):
        rollback(catalog, "detection")
    with pytest.raises(ValueError, match="unknown model kind"):
        _register(catalog, "x", kind="pickle")
