"""Upgrade path (walk 23b): a workspace catalogued by radloop of schema version 1 (before migrations 2-4), opened
by this radloop; and a catalog of a newer radloop, refused.  The old catalog is written here by the SQL of its
schema (the tables as migration 1 of that release created them), never by running old code from git; SQLite
and PostgreSQL (``RADLOOP_TEST_DATABASE=postgres``) alike."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from radloop.core.catalog import SCHEMA_VERSION, Catalog, CatalogVersionError
from radloop.core.catalog_info import catalog_info
from radloop.core.registry import list_models
from radloop.core.schema import ReportImageName, SchemaVersion

#: the catalog of radloop at schema version 1 (release of 2026-11-27), with one row or two in every table
SCHEMA_1 = """
CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL,
  description VARCHAR(200) NOT NULL);
CREATE TABLE studies (id VARCHAR(40) PRIMARY KEY, dataset VARCHAR(100) NOT NULL, body_region VARCHAR(50),
  modality VARCHAR(16), split VARCHAR(8) NOT NULL, meta JSON NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE TABLE images (id VARCHAR(40) PRIMARY KEY, study_id VARCHAR(40) NOT NULL REFERENCES studies (id),
  content_hash VARCHAR(64) NOT NULL UNIQUE, dataset VARCHAR(100) NOT NULL, external_id VARCHAR(200),
  source_path TEXT NOT NULL, source_format VARCHAR(16) NOT NULL, render_path TEXT NOT NULL, thumb_path TEXT NOT NULL,
  width INTEGER NOT NULL, height INTEGER NOT NULL, render_width INTEGER NOT NULL, render_height INTEGER NOT NULL,
  body_region VARCHAR(50), modality VARCHAR(16), "view" VARCHAR(32), laterality VARCHAR(8),
  pixel_spacing_row FLOAT, pixel_spacing_col FLOAT, pixel_spacing_source VARCHAR(32), bits_stored INTEGER,
  photometric VARCHAR(16), meta JSON NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE INDEX ix_images_body_region ON images (body_region);
CREATE TABLE reports (id VARCHAR(60) PRIMARY KEY, study_id VARCHAR(40) REFERENCES studies (id),
  content_hash VARCHAR(64) NOT NULL, dataset VARCHAR(100) NOT NULL, text TEXT NOT NULL, sections JSON NOT NULL,
  expert_codes JSON NOT NULL, image_external_ids JSON NOT NULL, meta JSON NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE TABLE weak_labels (id INTEGER PRIMARY KEY, report_id VARCHAR(60) NOT NULL REFERENCES reports (id),
  finding VARCHAR(50) NOT NULL, status VARCHAR(16) NOT NULL, temporality VARCHAR(16) NOT NULL, site VARCHAR(50),
  laterality VARCHAR(16), device_type VARCHAR(50), evidence TEXT NOT NULL, start INTEGER, "end" INTEGER,
  section VARCHAR(50), rules_version VARCHAR(64) NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE TABLE rounds (id INTEGER PRIMARY KEY, number INTEGER NOT NULL, state VARCHAR(32) NOT NULL,
  strategy VARCHAR(50) NOT NULL, budget INTEGER NOT NULL, task VARCHAR(64) NOT NULL, model_version VARCHAR(100),
  metric_name VARCHAR(50), metric_before FLOAT, metric_after FLOAT, labels_spent INTEGER NOT NULL,
  config JSON NOT NULL, meta JSON NOT NULL, created_at TIMESTAMP NOT NULL, finished_at TIMESTAMP);
CREATE TABLE annotations (id INTEGER PRIMARY KEY, image_id VARCHAR(40) NOT NULL REFERENCES images (id),
  source VARCHAR(200) NOT NULL, kind VARCHAR(16) NOT NULL, label VARCHAR(100) NOT NULL, source_label VARCHAR(200),
  x FLOAT, y FLOAT, w FLOAT, h FLOAT, annotator VARCHAR(200), external_id VARCHAR(100), version INTEGER NOT NULL,
  round_id INTEGER REFERENCES rounds (id), meta JSON NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE TABLE quarantined_annotations (id INTEGER PRIMARY KEY, image_id VARCHAR(40), source VARCHAR(200) NOT NULL,
  reason TEXT NOT NULL, raw JSON NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE TABLE embeddings (id INTEGER PRIMARY KEY, image_id VARCHAR(40) NOT NULL REFERENCES images (id),
  model_version VARCHAR(100) NOT NULL, shard_path TEXT NOT NULL, "row" INTEGER NOT NULL, dim INTEGER NOT NULL,
  dtype VARCHAR(16) NOT NULL, normalized BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL,
  CONSTRAINT uq_embedding_image_model UNIQUE (image_id, model_version));
CREATE TABLE models (version VARCHAR(100) PRIMARY KEY, kind VARCHAR(32) NOT NULL, task VARCHAR(64) NOT NULL,
  parent_version VARCHAR(100), path TEXT NOT NULL, config JSON NOT NULL, metrics JSON NOT NULL,
  annotation_ids JSON NOT NULL, is_current BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE TABLE selections (id INTEGER PRIMARY KEY, round_id INTEGER NOT NULL REFERENCES rounds (id),
  image_id VARCHAR(40) NOT NULL REFERENCES images (id), rank INTEGER NOT NULL, score FLOAT,
  strategy VARCHAR(50) NOT NULL, reason TEXT NOT NULL, ls_task_id INTEGER, meta JSON NOT NULL,
  created_at TIMESTAMP NOT NULL, CONSTRAINT uq_selection_round_image UNIQUE (round_id, image_id));
CREATE TABLE ingest_errors (id INTEGER PRIMARY KEY, run_id VARCHAR(40) NOT NULL, path TEXT NOT NULL,
  stage VARCHAR(32) NOT NULL, reason TEXT NOT NULL, created_at TIMESTAMP NOT NULL);
INSERT INTO schema_version VALUES (1, '2026-11-27 04:00:00', 'initial schema');
INSERT INTO studies VALUES ('S-1', 'site', 'chest', 'DX', 'train', '{}', '2026-11-27 04:00:00');
INSERT INTO images VALUES ('I-1', 'S-1', 'h1', 'site', 'CXR1_IM-1', '/archive/a.dcm', 'dicom', 'renders/a.png',
  'thumbs/a.png', 2000, 2500, 512, 640, 'chest', 'DX', 'PA', NULL, 0.14, 0.14, 'PixelSpacing', 12, 'MONOCHROME2',
  '{}', '2026-11-27 04:00:01');
INSERT INTO images VALUES ('I-2', 'S-1', 'h2', 'site', 'CXR1_IM-2', '/archive/b.png', 'png', 'renders/b.png',
  'thumbs/b.png', 400, 500, 400, 500, 'chest', NULL, NULL, NULL, NULL, NULL, NULL, 8, NULL, '{}',
  '2026-11-27 04:00:02');
INSERT INTO reports VALUES ('CXR1', 'S-1', 'r1', 'site', 'FINDINGS: Small left effusion.', '{}', '["Effusion"]',
  '["CXR1_IM-1", "CXR1_IM-2", "CXR1_IM-1"]', '{}', '2026-11-27 04:00:03');
INSERT INTO reports VALUES ('CXR2', NULL, 'r2', 'site', 'FINDINGS: Normal.', '{}', '[]', '[]', '{}',
  '2026-11-27 04:00:04');
INSERT INTO weak_labels VALUES (1, 'CXR1', 'effusion', 'positive', 'unspecified', NULL, 'left', NULL,
  'effusion', 20, 28, 'findings', 'rules-old', '2026-11-27 04:00:05');
INSERT INTO rounds VALUES (1, 1, 'exported', 'random', 2, 'effusion', 'enc-1', NULL, NULL, NULL, 0, '{}', '{}',
  '2026-11-27 04:00:06', NULL);
INSERT INTO annotations VALUES (1, 'I-1', 'labelstudio', 'choice', 'effusion', NULL, NULL, NULL, NULL, NULL,
  'dr a', '17', 1, 1, '{}', '2026-11-27 04:00:07');
INSERT INTO embeddings VALUES (1, 'I-1', 'enc-1', 'embeddings/enc-1/shard-00000.npy', 0, 8, 'float32', TRUE,
  '2026-11-27 04:00:08');
INSERT INTO embeddings VALUES (2, 'I-2', 'enc-1', 'embeddings/enc-1/shard-00000.npy', 1, 8, 'float32', TRUE,
  '2026-11-27 04:00:08');
INSERT INTO models VALUES ('enc-1', 'encoder', 'encoder', NULL, 'models/enc-1', '{}', '{"loss": 0.5}', '[]', TRUE,
  '2026-11-27 04:00:09');
INSERT INTO selections VALUES (1, 1, 'I-2', 1, 0.5, 'random', 'random pick', NULL, '{}', '2026-11-27 04:00:10');
INSERT INTO ingest_errors VALUES (1, 'run-1', '/archive/c.dcm', 'decode', 'truncated pixel data',
  '2026-11-27 04:00:11');
"""
ROWS = {"studies": 1, "images": 2, "reports": 2, "weak_labels": 1, "annotations": 1, "embeddings": 2, "models": 1,
        "rounds": 1, "selections": 1, "ingest_errors": 1, "duplicate_sources": 0}


def _write_schema_1(workspace) -> None:
    engine = create_engine(workspace.database_url)
    try:
        with engine.begin() as connection:
            for statement in SCHEMA_1.split(";"):
                if statement.strip():
                    connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _versions(catalog: Catalog) -> list[int]:
    with catalog.session() as session:
        return session.scalars(select(SchemaVersion.version).order_by(SchemaVersion.version)).all()


def test_schema_1_catalog_upgrades_once_with_a_note_and_keeps_every_row(workspace, caplog):
    _write_schema_1(workspace)
    with caplog.at_level(logging.WARNING, logger="radloop.core.catalog"):
        catalog = Catalog.open(workspace, create=False)
    try:
        notes = [record.getMessage() for record in caplog.records if "upgraded" in record.getMessage()]
        assert len(notes) == 1, notes
        assert f"from schema version 1 to {SCHEMA_VERSION}" in notes[0] and "report dates" in notes[0]
        assert _versions(catalog) == list(range(1, SCHEMA_VERSION + 1))
        assert catalog.counts() == ROWS
        columns = {column["name"] for column in inspect(catalog.engine).get_columns("images")}
        assert {"pixel_hash", "sop_pseudonym"} <= columns
        with catalog.session() as session:  # the names the old report gave, once each
            assert sorted(session.execute(select(ReportImageName.report_id, ReportImageName.external_id))) == [
                ("CXR1", "CXR1_IM-1"), ("CXR1", "CXR1_IM-2")]
        info = catalog_info(catalog)
        assert info["schema_version"] == SCHEMA_VERSION and info["images_without_pixel_hash"] == 2
        assert info["reports_linked_to_study"] == 1 and info["counts"]["ingest_errors"] == 1
        (model,) = list_models(catalog)
        assert (model.version, model.is_current, model.metrics) == ("enc-1", True, {"loss": 0.5})
    finally:
        catalog.dispose()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="radloop.core.catalog"):
        again = Catalog.open(workspace, create=False)  # up to date: nothing applied, nothing said
    try:
        assert not [record for record in caplog.records if "upgraded" in record.getMessage()]
        assert _versions(again) == list(range(1, SCHEMA_VERSION + 1)) and again.counts() == ROWS
    finally:
        again.dispose()


def _cli(workspace, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RADLOOP_DATABASE_URL": workspace.database_url, "COLUMNS": "200"}
    if workspace.database_url.startswith("sqlite"):
        env.pop("RADLOOP_DATABASE_URL")
    env.pop("RADLOOP_DEBUG", None)
    return subprocess.run([sys.executable, "-c", "from radloop.app.cli import main; main()", *args,
                           "-w", str(workspace.root)], capture_output=True, text=True, timeout=300, env=env, check=False)


def test_two_processes_opening_a_schema_1_catalog_migrate_it_once_and_one_says_so(workspace):
    _write_schema_1(workspace)
    env = {**os.environ, "RADLOOP_DATABASE_URL": workspace.database_url}
    if workspace.database_url.startswith("sqlite"):
        env.pop("RADLOOP_DATABASE_URL")
    script = ("import logging, sys; logging.basicConfig(level='WARNING')\n"
              "from radloop.core.catalog import Catalog\nfrom radloop.core.workspace import resolve_workspace\n"
              "Catalog.open(resolve_workspace(sys.argv[1]), create=False).dispose()\n")
    openers = [subprocess.Popen([sys.executable, "-c", script, str(workspace.root)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(opener.wait(timeout=300), opener.stderr.read()) for opener in openers]
    for opener in openers:
        opener.stderr.close()
        opener.stdout.close()
    assert [code for code, _ in results] == [0, 0], results
    assert sum("upgraded from schema version 1" in stderr for _, stderr in results) == 1, results
    catalog = Catalog.open(workspace, create=False)
    try:
        assert _versions(catalog) == list(range(1, SCHEMA_VERSION + 1)) and catalog.counts() == ROWS
    finally:
        catalog.dispose()


def test_catalog_of_a_newer_radloop_is_refused_in_one_line_and_left_as_it_is(workspace):
    Catalog.open(workspace).dispose()
    engine = create_engine(workspace.database_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO schema_version (version, applied_at, description) "
                                "VALUES (:version, '2027-01-01 00:00:00', 'from the future')"),
                           {"version": SCHEMA_VERSION + 1})

    with pytest.raises(CatalogVersionError, match=f"schema version {SCHEMA_VERSION + 1} is newer than this radloop"):
        Catalog.open(workspace, create=False)
    result = _cli(workspace, "info")
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2 and "Traceback" not in output, output
    assert output.startswith(f"error: catalog schema version {SCHEMA_VERSION + 1} is newer than this radloop "
                             f"knows ({SCHEMA_VERSION}): upgrade radloop"), output
    assert len(output.splitlines()) == 1, output
    with engine.connect() as connection:  # nothing written: the newer radloop's catalog is as it was
        assert connection.execute(select(func.max(SchemaVersion.version))).scalar() == SCHEMA_VERSION + 1
        assert connection.execute(select(func.count()).select_from(SchemaVersion)).scalar() == SCHEMA_VERSION + 1
    engine.dispose()


def test_index_saved_in_the_first_layout_still_loads_and_its_next_save_replaces_it(tmp_path):
    """An index folder of the first releases (fixed file names, no ``files`` in the manifest, a config without the
    keys added since) is searched as it is; its next save writes a named generation and drops the old files."""
    import json

    import numpy as np

    from radloop.retrieval.index import IndexManager

    vectors = np.random.default_rng(0).normal(size=(40, 16)).astype("float32")
    ids = [f"I-{number:016x}" for number in range(40)]
    folder = tmp_path / "index"
    IndexManager.build(vectors, ids, "enc-1").save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    files = manifest.pop("files")
    (folder / files["index"]).rename(folder / "index.faiss")
    (folder / files["ids"]).rename(folder / "ids.json")
    for key in ("target_recall", "calibration_queries", "coarse_ef_search"):
        del manifest["config"][key]
    old = {key: manifest[key] for key in ("model_version", "dim", "metric", "factory", "count", "config")}
    (folder / "manifest.json").write_text(json.dumps(old))

    loaded = IndexManager.load(folder, model_version="enc-1")
    assert len(loaded) == 40 and loaded.search(vectors[:1], k=1).ids == [[ids[0]]]
    loaded.add(vectors[:2] * -1, ["I-new-1", "I-new-2"])
    loaded.save(folder)
    assert not (folder / "index.faiss").exists() and not (folder / "ids.json").exists()
    assert len(IndexManager.load(folder, model_version="enc-1")) == 42
