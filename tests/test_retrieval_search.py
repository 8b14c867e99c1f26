"""Case search over a small synthetic catalog: neighbours with labels/reports, filters, query exclusion,
index persistence and update, on-the-fly embedding of an image that is not in the catalog, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from radloop.core.embeddings import write_shard
from radloop.core.schema import Annotation, Image, Report, Study, WeakLabel
from radloop.retrieval import IndexManager, index_folder, search_cases
from radloop.retrieval.search import parse_filters

VERSION = "enc-test-0001"
REGIONS = ("wrist", "elbow", "shoulder")


def add_study_image(session, index: int, region: str | None, **image_columns) -> str:
    """A synthetic study and its one image (no files) numbered ``index``; returns the image id."""
    study, image = f"S-{index:016x}", f"I-{index:016x}"
    session.add(Study(id=study, dataset="synthetic", body_region=region, split="train"))
    session.flush()
    session.add(Image(id=image, study_id=study, content_hash=f"{index:064x}", dataset="synthetic",
                      source_path=f"/nowhere/{index}.png", source_format="png",
                      render_path=f"renders/{image}.png", thumb_path=f"thumbs/{image}.png",
                      width=64, height=64, render_width=64, render_height=64, body_region=region, **image_columns))
    return image


def _fill(catalog, count=60, seed=0):
    rng = np.random.default_rng(seed)
    ids, vectors = [], []
    with catalog.session() as session:
        for i in range(count):
            region = REGIONS[i % 3]
            image = add_study_image(session, i, region, meta={"box_source": "synthetic"})
            session.flush()
            if i % 4 == 0:
                session.add(Annotation(image_id=image, source="coco:test", kind="box", label="fracture",
                                       source_label=f"{region} fracture", x=1, y=1, w=5, h=5))
            report = f"R-{i:016x}"
            session.add(Report(id=report, study_id=f"S-{i:016x}", content_hash=f"{i:064x}", text=f"Report {i}. " * 40,
                               sections={"FINDINGS": f"Findings of case {i}.", "IMPRESSION": "No acute change."}))
            session.flush()
            session.add(WeakLabel(report_id=report, finding="fracture",
                                  status="positive" if i % 4 == 0 else "negative", rules_version="t"))
            ids.append(image)
            vectors.append(np.eye(3)[i % 3] * 3 + rng.normal(scale=0.3, size=3))
    vectors = np.concatenate([np.asarray(vectors), rng.normal(scale=0.1, size=(count, 13))], axis=1)
    write_shard(catalog, VERSION, ids, vectors.astype(np.float32), normalized=False)
    return ids, vectors


def register_random_resnet(catalog, version: str):
    """A random-init ResNet-18 encoder at 32 px, saved under the workspace's models and registered as current."""
    from radloop.core.registry import register_model
    from radloop.ssl import random_encoder, save_encoder

    bundle = random_encoder("resnet18", 32)
    folder = catalog.workspace.models_dir / "enc"
    saved = save_encoder(bundle.model.backbone if hasattr(bundle.model, "backbone") else bundle.model, folder,
                         timm_name="resnet18", image_size=32, method="random", version=version)
    register_model(catalog, saved.version, "encoder", "encoder", folder, make_current=True)
    return saved


def test_search_by_case_returns_described_neighbours(catalog):
    ids, _ = _fill(catalog)
    hits = search_cases(catalog, case_id=ids[0], k=5, encoder=VERSION)
    assert len(hits) == 5 and ids[0] not in [hit.image_id for hit in hits]
    assert [hit.rank for hit in hits] == [1, 2, 3, 4, 5]
    assert all(hit.body_region == "wrist" for hit in hits)  # same cluster as the query
    assert np.all(np.diff([hit.distance for hit in hits]) >= 0)
    first = hits[0]
    assert first.thumb_path.endswith(f"thumbs/{first.image_id}.png")
    assert first.report_excerpt.startswith("Findings of case") and first.report_labels["fracture"] in (
        "positive", "negative")
    assert "fracture" in first.labels
    # the index was saved and is reused
    assert (index_folder(catalog.workspace, VERSION) / "manifest.json").is_file()


def test_filters_restrict_results(catalog):
    ids, _ = _fill(catalog)
    hits = search_cases(catalog, case_id=ids[0], k=50, filters={"body_region": "elbow"}, encoder=VERSION)
    assert hits and all(hit.body_region == "elbow" for hit in hits) and len(hits) == 20
    fractures = search_cases(catalog, case_id=ids[1], k=50, filters={"finding": "fracture"}, encoder=VERSION)
    assert {hit.image_id for hit in fractures} == {ids[i] for i in range(0, 60, 4)} - {ids[1]}
    both = search_cases(catalog, case_id=ids[1], k=50, filters=parse_filters(
        ["body_region=wrist", "body_region=shoulder", "finding=fracture"]), encoder=VERSION)
    assert both and all(hit.body_region in ("wrist", "shoulder") and hit.labels["fracture"] == 1 for hit in both)
    with pytest.raises(ValueError, match="unknown filter 'colour'; valid: body_region"):
        search_cases(catalog, case_id=ids[0], filters={"colour": "red"}, encoder=VERSION)
    with pytest.raises(LookupError, match="no image or study 'I-nope'"):
        search_cases(catalog, case_id="I-nope", encoder=VERSION)


def test_a_study_with_only_a_report_is_named_as_such_not_as_missing(catalog):
    """`--case S-...` of a study that exists with a report but no images: nothing to search with, said so."""
    _fill(catalog, count=6)
    with catalog.session() as session:
        session.add(Study(id="S-reportonly", dataset="synthetic", split="train"))
        session.add(Study(id="S-empty", dataset="synthetic", split="train"))
        session.flush()
        session.add(Report(id="R-reportonly", study_id="S-reportonly", content_hash="f" * 64, text="No fracture."))
    with pytest.raises(LookupError, match=r"study 'S-reportonly' has no images \(only a report\): there is "
                                          "nothing to search with") as raised:
        search_cases(catalog, case_id="S-reportonly", encoder=VERSION)
    assert "in the catalog" not in str(raised.value)
    with pytest.raises(LookupError, match="study 'S-empty' has no images: there is nothing to search with"):
        search_cases(catalog, case_id="S-empty", encoder=VERSION)
    with pytest.raises(LookupError, match="no image or study 'S-nope' in the catalog"):
        search_cases(catalog, case_id="S-nope", encoder=VERSION)


def test_filter_values_are_checked_against_the_vocabulary_and_the_catalog(catalog):
    ids, _ = _fill(catalog)
    with catalog.session() as session:
        session.get(Image, ids[3]).laterality = "L"  # DICOM's ImageLaterality code
        session.get(Image, ids[6]).laterality = "left"
        session.get(Image, ids[9]).laterality = "R"
    for filters, message in (({"body_region": "shoulders"}, "unknown body_region 'shoulders'; valid: .*shoulder"),
                             ({"finding": "fractures"}, "unknown finding 'fractures'; valid: .*fracture"),
                             ({"split": "training"}, "unknown split 'training'; valid: test, train, val"),
                             ({"laterality": "up"}, "unknown laterality 'up'; valid: left \\(L\\), right \\(R\\)"),
                             ({"dataset": "nope"}, "no image has dataset 'nope'; values in the catalog: synthetic")):
        with pytest.raises(ValueError, match=message):
            search_cases(catalog, case_id=ids[0], k=5, filters=filters, encoder=VERSION)
    shoulders = search_cases(catalog, case_id=ids[0], k=50, filters={"body_region": "Shoulder"}, encoder=VERSION)
    assert len(shoulders) == 20 and all(hit.body_region == "shoulder" for hit in shoulders)
    assert len(search_cases(catalog, case_id=ids[1], k=50, filters={"finding": "Fracture"}, encoder=VERSION)) == 15
    assert len(search_cases(catalog, case_id=ids[0], k=50, filters={"split": "TRAIN"}, encoder=VERSION)) == 50
    left = {ids[3], ids[6]}
    for spelling in ("L", "left", "Left", "l"):
        hits = search_cases(catalog, case_id=ids[0], k=50, filters={"laterality": spelling}, encoder=VERSION)
        assert {hit.image_id for hit in hits} == left, spelling
    assert [hit.image_id for hit in search_cases(catalog, case_id=ids[0], k=5, filters={"laterality": "right"},
                                                 encoder=VERSION)] == [ids[9]]
    # in the vocabulary but on no image: no hits, not an error
    assert search_cases(catalog, case_id=ids[0], k=5, filters={"body_region": "knee"}, encoder=VERSION) == []
    assert search_cases(catalog, case_id=ids[0], k=5, filters={"laterality": "bilateral"}, encoder=VERSION) == []


def test_saved_index_is_updated_with_new_embeddings(catalog):
    ids, vectors = _fill(catalog, count=30)
    search_cases(catalog, case_id=ids[0], k=3, encoder=VERSION)
    with catalog.session() as session:
        session.add(Study(id="S-new", dataset="synthetic", body_region="wrist", split="train"))
        session.flush()
        session.add(Image(id="I-new", study_id="S-new", content_hash="f" * 64, dataset="synthetic",
                          source_path="/x.png", source_format="png", render_path="renders/new.png",
                          thumb_path="thumbs/new.png", width=8, height=8, render_width=8, render_height=8,
                          body_region="wrist"))
    write_shard(catalog, VERSION, ["I-new"], vectors[:1].astype(np.float32), normalized=False)
    hits = search_cases(catalog, case_id=ids[0], k=1, encoder=VERSION)
    assert hits[0].image_id == "I-new"  # identical vector
    assert len(IndexManager.load(index_folder(catalog.workspace, VERSION))) == 31


def test_image_outside_the_catalog_is_embedded_on_the_fly(catalog, tmp_path):
    torch = pytest.importorskip("torch")
    from PIL import Image as PILImage

    from radloop.ssl import embed_images

    saved = register_random_resnet(catalog, "enc-fly")
    pixels = np.random.default_rng(0).integers(0, 255, size=(3, 40, 40), dtype=np.uint8)
    files = []
    for i, array in enumerate(pixels):
        path = tmp_path / f"img{i}.png"
        PILImage.fromarray(array).save(path)
        files.append(path)
    vectors = embed_images(saved, [str(path) for path in files[:2]])
    with catalog.session() as session:
        for i in range(2):
            session.add(Study(id=f"S-{i}", dataset="t", split="train"))
            session.flush()
            session.add(Image(id=f"I-{i}", study_id=f"S-{i}", content_hash=f"{i}" * 64, dataset="t",
                              source_path=str(files[i]), source_format="png", render_path=f"r{i}.png",
                              thumb_path=f"t{i}.png", width=40, height=40, render_width=40, render_height=40))
    write_shard(catalog, "enc-fly", ["I-0", "I-1"], vectors, normalized=True)
    hits = search_cases(catalog, image=files[1], k=2)  # not catalogued by content hash: embedded now
    assert hits[0].image_id == "I-1" and hits[0].distance < 1e-4
    hits = search_cases(catalog, image=pixels[0], k=1)  # a 2-D array works too
    assert hits[0].image_id == "I-0"
    not_an_image = tmp_path / "scan.png"
    not_an_image.write_text("these are notes, not pixels")
    with pytest.raises(ValueError, match="cannot read the query image .*scan.png"):
        search_cases(catalog, image=not_an_image, k=1)
    del torch


def test_same_study_images_are_not_other_cases(catalog):
    """Other views / copies of the query's radiograph (same study) are left out unless asked for."""
    ids, vectors = _fill(catalog, count=30)
    with catalog.session() as session:  # a copy of case 0 (another file of the same study, near-identical)
        session.add(Image(id="I-copy", study_id="S-" + ids[0][2:], content_hash="c" * 64, dataset="synthetic",
                          source_path="/nowhere/copy.png", source_format="png", render_path="renders/c.png",
                          thumb_path="thumbs/c.png", width=64, height=64, render_width=64, render_height=64))
    write_shard(catalog, VERSION, ["I-copy"], vectors[:1].astype(np.float32), normalized=False)
    assert "I-copy" not in [hit.image_id for hit in search_cases(catalog, case_id=ids[0], k=5, encoder=VERSION)]
    with_study = search_cases(catalog, case_id=ids[0], k=5, encoder=VERSION, same_study=True)
    assert with_study[0].image_id == "I-copy" and with_study[0].distance < 1e-5
    with pytest.raises(LookupError, match="unknown encoder 'enc-nope' \\(encoders: enc-test-0001\\)"):
        search_cases(catalog, case_id=ids[0], encoder="enc-nope")


def test_search_cli_json(catalog, workspace):
    from radloop.app.cli import build_app

    ids, _ = _fill(catalog, count=30)
    runner = CliRunner()
    result = runner.invoke(build_app(), ["search", "--case", ids[0], "--k", "3", "--filter", "body_region=wrist",
                                         "--encoder", VERSION, "--json", "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["neighbours"]) == 3 and all(n["body_region"] == "wrist" for n in payload["neighbours"])
    built = runner.invoke(build_app(), ["index", "build", "--encoder", VERSION, "--factory", "HNSW16", "--json",
                                        "--workspace", str(workspace.root)])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["count"] == 30 and json.loads(built.stdout)["factory"] == "HNSW16"
    info = runner.invoke(build_app(), ["index", "info", "--encoder", VERSION, "--json", "--workspace",
                                       str(workspace.root)])
    assert info.exit_code == 0 and json.loads(info.stdout)["model_version"] == VERSION
    bad = runner.invoke(build_app(), ["search", "--case", ids[0], "--filter", "nonsense", "--encoder", VERSION,
                                      "--workspace", str(workspace.root)])
    assert bad.exit_code != 0 and "key=value" in bad.output
    with catalog.session() as session:  # an image not embedded yet: search covers 30 of 31 and says so
        session.add(Image(id="I-new", study_id="S-" + ids[0][2:], content_hash="n" * 64, dataset="synthetic",
                          source_path="/nowhere/new.png", source_format="png", render_path="renders/n.png",
                          thumb_path="thumbs/n.png", width=64, height=64, render_width=64, render_height=64))
    partial = runner.invoke(build_app(), ["search", "--case", ids[1], "--encoder", VERSION, "--json",
                                          "--workspace", str(workspace.root)])
    assert partial.exit_code == 0 and "30 of 31 catalog images are embedded" in partial.output
    assert json.loads(partial.stdout)["images_searched"] == 30


def test_listing_table_folds_instead_of_cutting_and_keeps_ids_whole():
    from rich.console import Console

    from radloop.app.options import listing_table

    version = "probe-fracture-r012-0123456789abcdef"
    table = listing_table(["version", "notes"], [[version, "a long note " * 12]], whole=("version",))
    console = Console(width=60, record=True, file=open(os.devnull, "w"))
    console.print(table)
    text = console.export_text()
    assert version in text and "…" not in text and text.count("long") == 12  # wrapped, every word kept
