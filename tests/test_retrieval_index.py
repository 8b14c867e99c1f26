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
