"""The catalog-side paths rewritten for large archives give what the row-by-row versions gave, on SQLite and
(``make test-postgres``) PostgreSQL, and never send an ``IN`` list longer than ``IN_CHUNK``."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from sqlalchemy import event, insert, select

from radloop.core.records import Box
from radloop.core.schema import Annotation, Embedding, Image, Report, Study, WeakLabel

SIZE = 400


@pytest.fixture
def synthetic(catalog):
    """A 400-image synthetic catalog (16-dim embeddings) with the awkward rows the readers must handle."""
    from radloop.core.catalog_synth import build_synthetic_catalog

    build_synthetic_catalog(catalog, SIZE, dim=16, encoder=False, renders=False, burned_in_share=0.05,
                            detection_share=0.3, choice_share=0.2)
    with catalog.session() as session:
        ids = list(session.scalars(select(Image.id).order_by(Image.id)))
        boxed = [i for i, meta in session.execute(select(Image.id, Image.meta).order_by(Image.id))
                 if meta.get("box_source")]
        session.execute(insert(Annotation), [
            # a consensus without a majority after a definite answer: unknown again
            {"image_id": ids[0], "source": "csv:labels.csv", "kind": "choice", "label": "effusion", "meta": {"value": 1}},
            {"image_id": ids[0], "source": "labelstudio:consensus", "kind": "choice", "label": "effusion",
             "meta": {"value": None}},
            {"image_id": ids[1], "source": "csv:labels.csv", "kind": "choice", "label": "fracture", "meta": {}},
            {"image_id": boxed[0], "source": "coco:x", "kind": "box", "label": "foreign_body", "x": 1.0, "y": 2.0,
             "w": 3.0, "h": 4.0, "meta": {}},
            {"image_id": boxed[1], "source": "labelstudio", "kind": "box", "label": "fracture", "meta": {}},  # no geometry
            {"image_id": boxed[2], "source": "csv:labels.csv", "kind": "choice", "label": "fracture",
             "meta": {"value": None}},
            {"image_id": ids[2], "source": "labelstudio", "kind": "skip", "label": "fracture", "meta": {}},
        ])
        falsy = session.get(Image, ids[3])
        falsy.meta = {**falsy.meta, "box_source": "", "burned_in_annotation": False}
    return catalog


def _reference_targets(catalog, *, dataset=None, split=None, image_ids=None):
    """image_targets row by row: whole ORM rows, annotations by 5000 ids, a label answered 0 keeps no boxes (this
    catalog has no Label Studio rows); the reference for identical output."""
    from radloop.core.targets import ImageTargets

    with catalog.session() as session:
        query = select(Image, Study.split).join(Study, Study.id == Image.study_id)
        if dataset:
            query = query.where(Image.dataset == dataset)
        if split:
            query = query.where(Study.split == split)
        if image_ids is not None:
            query = query.where(Image.id.in_(image_ids))
        rows = session.execute(query.order_by(Image.id)).all()
        wanted = [image.id for image, _ in rows]
        boxes, choices = defaultdict(list), defaultdict(dict)
        for start in range(0, len(wanted), 5000):
            for a in session.scalars(select(Annotation).where(
                    Annotation.image_id.in_(wanted[start:start + 5000]), Annotation.kind.in_(("box", "choice")))
                    .order_by(Annotation.created_at, Annotation.id)):
                if a.kind == "box" and None not in (a.x, a.y, a.w, a.h):
                    boxes[a.image_id].append(Box(a.label, a.x, a.y, a.w, a.h))
                elif a.kind == "choice":
                    value = (a.meta or {}).get("value", 1)
                    if value is None:
                        choices[a.image_id].pop(a.label, None)
                    else:
                        choices[a.image_id][a.label] = int(bool(value))
    result = []
    for image, study_split in rows:
        answers = choices.get(image.id, {})
        kept = [box for box in boxes.get(image.id, []) if answers.get(box.label) != 0]  # ruled out: no boxes
        labels = {}
        if (image.meta or {}).get("box_source"):
            labels["fracture"] = int("fracture" in {box.label for box in kept})
        labels.update(answers)
        result.append(ImageTargets(image.id, image.study_id, study_split, image.body_region, image.render_path,
                                   image.width, image.height, labels, tuple(kept)))
    return result


class _Counter:
    """Largest number of bound parameters of one statement while ``on`` (the references use long IN lists)."""

    def __init__(self):
        self.on, self.max = False, 0

    def __call__(self, _conn, _cursor, _statement, parameters, _context, executemany):
        if self.on and not executemany and parameters:
            self.max = max(self.max, len(parameters))

    def __enter__(self):
        self.on = True

    def __exit__(self, *_):
        self.on = False


@pytest.fixture
def bound(monkeypatch, synthetic, request):
    """With ``long_lists``, IN_CHUNK of 50 in every reader; a :class:`_Counter` (``with bound:`` counts)."""
    from radloop.app import round_labels, round_pool
    from radloop.core import embeddings, targets

    if request.node.callspec.params.get("long_lists"):
        for module in (round_labels, round_pool, embeddings, targets):
            monkeypatch.setattr(module, "IN_CHUNK", 50)
    counter = _Counter()
    event.listen(synthetic.engine, "before_cursor_execute", counter)
    yield counter
    event.remove(synthetic.engine, "before_cursor_execute", counter)
    if request.node.callspec.params.get("long_lists"):
        assert 0 < counter.max <= 55


def _ids(catalog):
    with catalog.session() as session:
        return list(session.scalars(select(Image.id).order_by(Image.id)))


@pytest.mark.parametrize("long_lists", [False, True])
def test_image_targets_and_labels_match_the_row_by_row_reader(synthetic, bound, long_lists):
    from radloop.core.targets import image_labels, image_targets

    ids = _ids(synthetic)
    some = ids[::3]
    cases = [{}, {"split": "test"}, {"image_ids": some}, {"image_ids": ids[:7]}, {"image_ids": []},
             {"split": "train", "image_ids": some}]
    expected = [_reference_targets(synthetic, **case) for case in cases]
    reference = {t.image_id: t.labels for t in expected[0] if t.labels}
    assert len(reference) > 50
    with bound:
        assert [image_targets(synthetic, **case) for case in cases] == expected
        assert image_labels(synthetic) == reference
        assert image_labels(synthetic, some) == {i: labels for i, labels in reference.items() if i in set(some)}
        assert image_labels(synthetic, ids[:7]) == {i: labels for i, labels in reference.items() if i in ids[:7]}
        assert image_labels(synthetic, []) == {}
        assert image_labels(synthetic, split="test") == {t.image_id: t.labels for t in expected[1] if t.labels}
        assert image_labels(synthetic, some, split="train", dataset="archive") == {
            t.image_id: t.labels for t in expected[5] if t.labels}
        assert image_labels(synthetic, dataset="other") == {}


@pytest.mark.parametrize("long_lists", [False, True])
def test_round_pool_readers_match_the_row_by_row_readers(synthetic, bound, long_lists):
    from radloop.app.round_pool import pool_images, pool_weak_labels, without_truth
    from radloop.app.round_record import RoundConfig

    config = RoundConfig(simulate=True)
    with synthetic.session() as session:
        rows = session.execute(select(Image.id, Image.body_region, Image.meta).join(Study, Study.id == Image.study_id)
                               .where(Study.split == "train").order_by(Image.id)).all()
    kept = [row for row in rows if not (row[2] or {}).get("burned_in_annotation")]
    assert len(kept) < len(rows)  # some are flagged
    with bound:
        pool, regions = pool_images(synthetic, config)
    assert (pool, regions) == ([row[0] for row in kept], [row[1] for row in kept])

    for task in ("fracture", "effusion", "hernia"):
        with synthetic.session() as session:
            found = session.execute(
                select(Image.id, WeakLabel.status).join(Report, Report.study_id == Image.study_id)
                .join(WeakLabel, WeakLabel.report_id == Report.id)
                .where(Image.id.in_(pool), WeakLabel.finding == task)).all()
        status = {}
        for image_id, value in found:
            status[image_id] = max(status.get(image_id, -1), 1 if value == "positive" else 0)
        expected = np.array([status.get(i, -1) for i in pool]) if found else None
        with bound:
            got = pool_weak_labels(synthetic, pool, task)
        assert (got is None and expected is None) or np.array_equal(got, expected)

    known = {t.image_id for t in _reference_targets(synthetic, image_ids=pool) if t.labels.get("fracture") is not None}
    with bound:
        truth_pool, truth_regions, note = without_truth(synthetic, config, pool, regions)
    assert truth_pool == [i for i in pool if i in known] and note
    assert truth_regions == [r for i, r in zip(pool, regions) if i in known]



@pytest.mark.parametrize("long_lists", [False, True])
def test_images_in_split_matches_the_row_by_row_reader(synthetic, bound, long_lists):
    from radloop.app.round_labels import images_in_split

    ids = _ids(synthetic)
    with synthetic.session() as session:
        split_of = dict(session.execute(select(Image.id, Study.split).join(Study, Study.id == Image.study_id)).all())
    for split in ("train", "test"):
        for wanted in (ids, ids[::2], ids[:3], []):
            with bound:
                got = images_in_split(synthetic, wanted, split)
            assert got == {i for i in wanted if split_of[i] == split}


def _reference_embeddings(catalog, version, image_ids=None):
    with catalog.session() as session:
        query = select(Embedding.image_id, Embedding.shard_path, Embedding.row).where(
            Embedding.model_version == version)
        if image_ids is not None:
            query = query.where(Embedding.image_id.in_(image_ids))
        rows = session.execute(query.order_by(Embedding.image_id)).all()
    shards = {}
    vectors = []
    for _, path, row in rows:
        shards.setdefault(path, np.load(catalog.workspace.absolute(path), mmap_mode="r"))
        vectors.append(np.asarray(shards[path][row], dtype=np.float32))
    return [row[0] for row in rows], np.stack(vectors)


@pytest.mark.parametrize("long_lists", [False, True])
def test_embeddings_load_and_missing_match_the_row_by_row_reader(synthetic, bound, long_lists):
    from radloop.core.catalog_synth import SYNTH_ENCODER
    from radloop.core.embeddings import load_embeddings, missing_image_ids, write_shard

    ids = _ids(synthetic)
    with synthetic.session() as session:  # a float16 shard of new vectors for 10 images, 5 of them re-embedded
        session.execute(Embedding.__table__.delete().where(Embedding.image_id.in_(ids[:5])))
    assert missing_image_ids(synthetic, SYNTH_ENCODER) == ids[:5]
    assert missing_image_ids(synthetic, "other") == ids
    half = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float16)
    write_shard(synthetic, SYNTH_ENCODER + "-b", ids[:10], half, normalized=False)
    write_shard(synthetic, SYNTH_ENCODER, ids[:5], half[:5].astype(np.float32), normalized=True)
    assert missing_image_ids(synthetic, SYNTH_ENCODER) == []
    for version, subset in ((SYNTH_ENCODER, None), (SYNTH_ENCODER, ids[::2] + ["I-unknown"]),
                            (SYNTH_ENCODER, ids[3:9]), (SYNTH_ENCODER + "-b", None), (SYNTH_ENCODER + "-b", ids[:4]),
                            # under a third of the version, more than IN_CHUNK (50) with long_lists: read in chunks
                            (SYNTH_ENCODER, list(np.random.default_rng(1).permutation(ids[100:190])) + ["I-unknown"])):
        expected_ids, expected = _reference_embeddings(synthetic, version, subset)
        with bound:
            loaded = load_embeddings(synthetic, version, subset)
        assert loaded.image_ids == expected_ids
        assert loaded.vectors.dtype == np.float32 and np.array_equal(loaded.vectors, expected)
    with pytest.raises(LookupError):
        load_embeddings(synthetic, SYNTH_ENCODER, [])


def test_a_round_start_rebuilds_the_index_only_when_the_embeddings_changed(synthetic):
    from radloop.core.catalog_synth import SYNTH_ENCODER
    from radloop.core.embeddings import write_shard
    from radloop.retrieval.index import IndexConfig, IndexManager, index_folder
    from radloop.retrieval.search import load_index

    folder = index_folder(synthetic.workspace, SYNTH_ENCODER)
    assert not IndexManager.saved_is_current(synthetic, SYNTH_ENCODER)  # none saved
    IndexManager.from_catalog(synthetic, SYNTH_ENCODER).save(folder)
    assert IndexManager.saved_is_current(synthetic, SYNTH_ENCODER)
    assert not IndexManager.saved_is_current(synthetic, SYNTH_ENCODER, IndexConfig(factory="HNSW8"))
    with synthetic.session() as session:  # a new image, embedded: the saved index misses it
        study = session.scalars(select(Study.id)).first()
        session.add(Image(id="I-new", study_id=study, content_hash="x" * 64, source_path="/x", source_format="png",
                          render_path="r", thumb_path="t", width=1, height=1, render_width=1, render_height=1))
    write_shard(synthetic, SYNTH_ENCODER, ["I-new"], np.ones((1, 16), dtype=np.float32), normalized=True)
    assert not IndexManager.saved_is_current(synthetic, SYNTH_ENCODER)
    load_index(synthetic, SYNTH_ENCODER)  # a search extends the saved index: not what a build would give
    assert not IndexManager.saved_is_current(synthetic, SYNTH_ENCODER)
    IndexManager.from_catalog(synthetic, SYNTH_ENCODER).save(folder)
    assert IndexManager.saved_is_current(synthetic, SYNTH_ENCODER)


def test_a_search_reads_only_the_embeddings_added_since_the_index_was_saved(synthetic):
    from radloop.core.catalog_synth import SYNTH_ENCODER
    from radloop.core.embeddings import embedding_mark, write_shard
    from radloop.retrieval.index import IndexManager, index_folder
    from radloop.retrieval.search import load_index

    first = load_index(synthetic, SYNTH_ENCODER)  # none saved: built, with the catalog's mark
    assert len(first) == SIZE and first.catalog_mark == embedding_mark(synthetic, SYNTH_ENCODER)
    with synthetic.session() as session:
        study = session.scalars(select(Study.id)).first()
        for name in ("I-new1", "I-new2"):
            session.add(Image(id=name, study_id=study, content_hash=name.ljust(64, "0"), source_path="/x",
                              source_format="png", render_path="r", thumb_path="t", width=1, height=1,
                              render_width=1, render_height=1))
    write_shard(synthetic, SYNTH_ENCODER, ["I-new1"], np.ones((1, 16), dtype=np.float32), normalized=True)
    seen = []
    event.listen(synthetic.engine, "before_cursor_execute",
                 lambda _c, _k, statement, *_: seen.append(statement))
    extended = load_index(synthetic, SYNTH_ENCODER)
    assert "I-new1" in extended and len(extended) == SIZE + 1
    assert any("embeddings.id >" in statement for statement in seen)  # only the rows above the mark
    assert IndexManager.load(index_folder(synthetic.workspace, SYNTH_ENCODER)).catalog_mark == embedding_mark(
        synthetic, SYNTH_ENCODER)
    with synthetic.session() as session:  # a row removed below the mark: the whole version is compared again
        session.execute(Embedding.__table__.delete().where(Embedding.image_id == _ids(synthetic)[5]))
    write_shard(synthetic, SYNTH_ENCODER, ["I-new2"], np.ones((1, 16), dtype=np.float32), normalized=True)
    again = load_index(synthetic, SYNTH_ENCODER)
    assert "I-new2" in again and len(again) == SIZE + 2  # the removed one stays (searches skip deleted images)
