"""IndexManager: recall against IndexFlat, persistence round-trip (memory-mapped), incremental add/remove,
bad input leaves the index intact."""

from __future__ import annotations

import numpy as np
import pytest

from radloop.retrieval.index import IndexConfig, IndexManager, choose_factory
from radloop.retrieval.scale_bench import clustered_vectors


@pytest.fixture(scope="module")
def data():
    vectors = clustered_vectors(6_200, 32, n_clusters=50, noise=0.5, seed=1)
    return vectors[:6000], vectors[6000:], [f"I-{i:05d}" for i in range(6000)]


def _recall(manager, vectors, queries, k=10):
    import faiss

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    found = manager.search(queries, k)
    return np.mean([len({int(i[2:]) for i in row} & set(expected)) / k
                    for row, expected in zip(found.ids, truth.tolist())])


def test_automatic_choice_by_size():
    assert choose_factory(50_000, 384) == "Flat"
    assert choose_factory(1_000_000, 384) == "IVF4096_HNSW32,SQ8"
    assert choose_factory(1_000_000, 384, IndexConfig(memory_budget_mb=100)).endswith(",PQ48")
    assert choose_factory(10, 8, IndexConfig(factory="HNSW32")) == "HNSW32"


@pytest.mark.parametrize("factory, minimum", [("Flat", 1.0), ("IVF64,SQ8", 0.95), ("HNSW16", 0.95),
                                              ("IVF64,PQ8x4", 0.7)])
def test_recall_against_index_flat(data, factory, minimum):
    vectors, queries, ids = data
    manager = IndexManager.build(vectors, ids, "enc-test", IndexConfig(factory=factory, nprobe=16))
    assert _recall(manager, vectors, queries) >= minimum


def test_automatic_approximate_index_reranks(data):
    vectors, queries, ids = data
    manager = IndexManager.build(vectors, ids, "enc-test", IndexConfig(exact_max=1000))
    assert manager.factory.startswith("IVF") and manager.config.rerank
    assert _recall(manager, vectors, queries) >= 0.95


def test_persistence_round_trip_memory_mapped(tmp_path, data):
    vectors, queries, ids = data
    manager = IndexManager.build(vectors, ids, "enc-test", IndexConfig(factory="IVF64,SQ8", nprobe=8, rerank=True))
    manager.remove(["I-00003"])
    before = manager.search(queries[:20], 5)
    manager.save(tmp_path / "index")
    loaded = IndexManager.load(tmp_path / "index", model_version="enc-test")
    assert loaded.memory_mapped and len(loaded) == len(ids) - 1 and loaded.factory == "IVF64,SQ8"
    after = loaded.search(queries[:20], 5)
    assert after.ids == before.ids
    np.testing.assert_allclose(after.distances, before.distances, atol=1e-6)
    loaded.save(tmp_path / "copy")  # saving a memory-mapped index writes a self-contained copy
    assert IndexManager.load(tmp_path / "copy", mmap=False).search(queries[:20], 5).ids == before.ids
    loaded.add(vectors[3:4], ["I-00003"])  # a memory-mapped index becomes writable on demand
    assert loaded.search(vectors[3], 1).ids == [["I-00003"]]
    with pytest.raises(ValueError, match="built for model version 'enc-test', not 'enc-other'"):
        IndexManager.load(tmp_path / "index", model_version="enc-other")


def test_incremental_add_remove_and_exclusion(data):
    vectors, _, ids = data
    manager = IndexManager.build(vectors[:5000], ids[:5000], "enc-test")
    manager.add(vectors[5000:5900], ids[5000:5900])
    assert len(manager) == 5900 and manager.factory == "Flat"
    assert manager.search(vectors[5500], 1).ids == [["I-05500"]]
    assert manager.search(vectors[5500], 1, exclude_ids=["I-05500"]).ids[0][0] != "I-05500"
    manager.remove(["I-05500"])
    assert "I-05500" not in manager and manager.search(vectors[5500], 1).ids[0][0] != "I-05500"
    only = manager.search(vectors[0], 3, allowed_ids=["I-00007", "I-04000"])
    assert sorted(only.ids[0]) == ["I-00007", "I-04000"]


def test_bad_input_names_the_problem_and_leaves_the_index_intact(data):
    vectors, _, ids = data
    manager = IndexManager.build(vectors[:1000], ids[:1000], "enc-test")
    reference = manager.search(vectors[:3], 5)
    with pytest.raises(ValueError, match="holds dimension 32"):
        manager.add(np.ones((2, 16), np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="model version 'enc-new'; this index holds 'enc-test'"):
        manager.add(vectors[1000:1002], ["a", "b"], model_version="enc-new")
    with pytest.raises(ValueError, match="model version 'enc-new'"):
        manager.search(vectors[0], model_version="enc-new")
    bad = vectors[1000:1003].copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        manager.add(bad, ["x", "y", "z"])
    with pytest.raises(ValueError, match="indexed already"):
        manager.add(vectors[:1], ["I-00000"])
    with pytest.raises(ValueError, match="not in the index"):
        manager.remove(["I-99999"])
    with pytest.raises(ValueError, match="holds dimension 32"):
        manager.search(np.ones(7, np.float32))
    with pytest.raises(ValueError, match="needs at least 64 vectors to train"):
        IndexManager.build(vectors[:10], ids[:10], "enc-test", IndexConfig(factory="IVF64,SQ8"))
    with pytest.raises(ValueError, match="bad FAISS factory"):
        IndexManager.build(vectors[:10], ids[:10], "enc-test", IndexConfig(factory="NotAnIndex"))
    assert len(manager) == 1000
    after = manager.search(vectors[:3], 5)
    assert after.ids == reference.ids


def test_nprobe_is_calibrated_to_the_target_recall_and_persisted(tmp_path, data):
    vectors, queries, ids = data
    manager = IndexManager.build(vectors, ids, "enc-test", IndexConfig(factory="IVF64,SQ8", target_recall=0.95))
    calibration = manager.calibration
    assert calibration["recall_at_10"] >= 0.95 and calibration["queries"] == 500
    tried = [nprobe for nprobe, _ in calibration["tried"]]
    assert tried == [2 ** i for i in range(len(tried))] and calibration["nprobe"] == tried[-1] < 64
    assert _recall(manager, vectors, queries) >= 0.93  # held-out queries: close to the calibration estimate
    lower = IndexManager.build(vectors, ids, "enc-test", IndexConfig(factory="IVF64,SQ8", target_recall=0.9))
    higher = IndexManager.build(vectors, ids, "enc-test", IndexConfig(factory="IVF64,SQ8", target_recall=0.9999))
    assert lower.calibration["nprobe"] < calibration["nprobe"] < higher.calibration["nprobe"]
    manager.save(tmp_path / "index")
    loaded = IndexManager.load(tmp_path / "index")
    assert loaded.calibration["nprobe"] == calibration["nprobe"]
    import faiss
    assert faiss.try_extract_index_ivf(loaded.index).nprobe == calibration["nprobe"]
    fixed = IndexManager.build(vectors, ids, "enc-test", IndexConfig(factory="IVF64,SQ8", nprobe=5))
    assert fixed.calibration is None and faiss.try_extract_index_ivf(fixed.index).nprobe == 5


def test_interrupted_save_keeps_the_previous_index_whole(data, tmp_path, monkeypatch):
    """A save killed before its manifest switch leaves the previous generation (index + its own id map)."""
    import json
    import os

    vectors, _, ids = data
    folder = tmp_path / "index"
    IndexManager.build(vectors[:300], ids[:300], "enc-test").save(folder)
    other_order = IndexManager.build(vectors[:300][::-1].copy(), ids[:300][::-1], "enc-test")
    real_replace = os.replace

    def interrupted(source, target):
        if str(target).endswith("manifest.json"):
            raise KeyboardInterrupt("killed before the manifest switch")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        other_order.save(folder)
    monkeypatch.setattr(os, "replace", real_replace)
    loaded = IndexManager.load(folder)
    assert loaded.search(vectors[7], 1).ids == [["I-00007"]]  # each vector still maps to its own id
    other_order.save(folder)  # a completed save switches and removes the old generation's files
    names = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert sorted(files.values()) + ["manifest.json"] == sorted(names)
    assert IndexManager.load(folder).search(vectors[7], 1).ids == [["I-00007"]]
    # a hand-damaged id map is caught on load, not answered with wrong ids
    (folder / files["ids"]).write_text(json.dumps({"ids": ids[:299], "removed": []}))
    with pytest.raises(ValueError, match="inconsistent .*radloop index build"):
        IndexManager.load(folder)


def test_removal_from_an_hnsw_index_survives_save_and_load(data, tmp_path):
    """HNSW cannot delete: removed ids are saved as tombstones and the load-time check counts them."""
    vectors, _, ids = data
    folder = tmp_path / "hnsw"
    manager = IndexManager.build(vectors[:200], ids[:200], "enc-test", IndexConfig(factory="HNSW32"))
    manager.save(folder)
    manager = IndexManager.load(folder, mmap=False)
    manager.remove(["I-00000"])
    manager.save(folder)
    loaded = IndexManager.load(folder)
    assert len(loaded) == 199 and "I-00000" not in loaded
    assert loaded.search(vectors[0], 1).ids[0][0] != "I-00000"
    loaded.add(vectors[:1], ["I-00000"])  # a re-added id gets a new entry; its tombstone stays filtered
    loaded.save(folder)
    assert IndexManager.load(folder).search(vectors[0], 1).ids == [["I-00000"]]


def test_a_save_that_does_not_load_back_leaves_the_previous_generation(data, tmp_path, monkeypatch):
    import json

    vectors, _, ids = data
    folder = tmp_path / "index"
    IndexManager.build(vectors[:300], ids[:300], "enc-test").save(folder)
    before = sorted(path.name for path in folder.iterdir())
    newer = IndexManager.build(vectors[:100], ids[:100], "enc-test")

    def unreadable(cls, *args, **kwargs):
        raise ValueError("index at the new generation is inconsistent")

    monkeypatch.setattr(IndexManager, "_open", classmethod(unreadable))
    with pytest.raises(ValueError, match="inconsistent"):
        newer.save(folder)
    monkeypatch.undo()
    assert sorted(path.name for path in folder.iterdir()) == before  # new files gone, old ones untouched
    assert len(IndexManager.load(folder)) == 300
    broken = IndexManager.build(vectors[:100], ids[:100], "enc-test")
    broken._removed.add(5)  # a tombstone without its vector: refused before anything is written
    with pytest.raises(ValueError, match="inconsistent"):
        broken.save(folder)
    assert sorted(path.name for path in folder.iterdir()) == before
    assert json.loads((folder / "manifest.json").read_text())["count"] == 300


def test_ids_are_compared_as_strings_everywhere(data):
    vectors, _, _ = data
    manager = IndexManager.build(vectors[:500], list(range(500)), "enc-test")
    assert 7 in manager and "7" in manager and np.int64(7) in manager
    assert sorted(manager.search(vectors[0], 3, allowed_ids=[1, 2, 3]).ids[0]) == ["1", "2", "3"]
    assert "0" not in manager.search(vectors[0], 3, exclude_ids=[0]).ids[0]
    assert manager.search(vectors[0], 1).ids == [["0"]]
    assert manager.remove([5]) == 1 and "5" not in manager and len(manager) == 499
    assert manager.search(vectors[0], 5, allowed_ids=["1", "1"]).ids == [["1"]]  # a repeat is one hit


def test_remove_is_all_or_nothing_and_refuses_a_bare_string(data):
    vectors, _, ids = data
    manager = IndexManager.build(vectors[:100], ids[:100], "enc-test")
    assert manager.remove(["I-00001", "I-00001"]) == 1  # repeats count once
    assert len(manager) == 99 and "I-00001" not in manager
    with pytest.raises(TypeError, match="not a single string"):
        manager.remove("I-00002")
    with pytest.raises(ValueError, match="not in the index.*nothing removed"):
        manager.remove(["I-00002", "I-00001"])  # I-00001 is gone already: I-00002 must stay
    assert "I-00002" in manager and len(manager) == 99
    with pytest.raises(TypeError, match="not a single string"):
        manager.add(vectors[:3], "abc")
    with pytest.raises(TypeError, match="allowed_ids must be a list"):
        manager.search(vectors[0], 3, allowed_ids="I-00003")


def test_float64_vectors_that_overflow_float32_are_named_as_such(data):
    vectors, _, ids = data
    with pytest.raises(ValueError, match="overflow float32"):
        IndexManager.build(vectors[:10].astype(np.float64) * 1e39, ids[:10], "enc-test")
