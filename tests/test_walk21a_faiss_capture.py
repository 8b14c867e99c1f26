"""FAISS's clustering warnings are captured (descriptor 2 redirected, process-wide) only when a training set is
small enough for FAISS to print one: a large index's long training leaves other threads' stderr alone (walk 21a)."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from radloop.retrieval import IndexConfig, IndexManager, index_training
from radloop.retrieval.index_training import largest_clustering


def _vectors(count: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)


@pytest.fixture
def captures(monkeypatch):
    entered = []
    real = index_training.captured_clustering_warnings

    def recording():
        entered.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(index_training, "captured_clustering_warnings", recording)
    return entered


@pytest.mark.parametrize("factory, count", [("IVF8,Flat", 2000), ("IVF16,SQ8", 1000), ("IVF8,PQ4x4", 1000)])
def test_a_training_set_large_enough_for_every_kmeans_is_not_captured(factory, count, captures, capfd, caplog):
    with caplog.at_level(logging.WARNING, logger="radloop.retrieval.index"):
        IndexManager.build(_vectors(count), [str(i) for i in range(count)], "v", IndexConfig(factory=factory))
    assert captures == []
    assert "WARNING clustering" not in capfd.readouterr().err  # FAISS had nothing to say: nothing was lost
    assert not [record for record in caplog.records if "k-means" in record.getMessage()]


@pytest.mark.parametrize("factory, count", [("IVF64,SQ8", 1000), ("IVF8,PQ4", 1000), ("OPQ4,IVF8,PQ4", 600)])
def test_a_small_training_set_is_still_captured_and_told_in_one_line(factory, count, captures, capfd, caplog):
    with caplog.at_level(logging.WARNING, logger="radloop.retrieval.index"):
        IndexManager.build(_vectors(count), [str(i) for i in range(count)], "v", IndexConfig(factory=factory))
    assert len(captures) == 1
    assert "WARNING clustering" not in capfd.readouterr().err
    assert len([record for record in caplog.records if "few for its k-means" in record.getMessage()]) == 1


@pytest.mark.parametrize("factory, expected", [("IVF64,SQ8", 64), ("IVF16,PQ4", 256), ("IVF16,PQ4x4", 16),
                                               ("OPQ4,IVF16,PQ4x4", 256), ("PQ4x12", 4096), ("SQ8", 0),
                                               ("PCA8,IVF8,Flat", 8)])
def test_largest_clustering_reads_the_cells_and_codebooks(factory, expected):
    import faiss

    assert largest_clustering(faiss.index_factory(32, factory)) == expected
