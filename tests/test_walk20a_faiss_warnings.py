"""Small IVF / PQ builds: FAISS's raw ``WARNING clustering ...`` lines stay off stderr (file descriptor 2) and one
radloop line says what a small training set means; other stderr output still gets through."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from radloop.retrieval import IndexConfig, IndexManager
from radloop.retrieval.index_training import captured_clustering_warnings
from test_walk20a_index_errors import embedded_catalog

RAW = "WARNING clustering"


def _vectors(count: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)


@pytest.mark.parametrize("factory, count", [("IVF16,PQ4", 300), ("IVF64,SQ8", 1000), ("PQ8", 300),
                                            ("OPQ4,IVF16,PQ4", 600)])
def test_a_small_training_set_gives_one_radloop_line_and_no_raw_faiss_warning(factory, count, capfd, caplog):
    vectors = _vectors(count)
    with caplog.at_level(logging.WARNING, logger="radloop.retrieval.index"):
        manager = IndexManager.build(vectors, [f"I-{i}" for i in range(count)], "v", IndexConfig(factory=factory))
    captured = capfd.readouterr()
    assert RAW not in captured.err and RAW not in captured.out
    notes = [record.getMessage() for record in caplog.records if "few for its k-means" in record.getMessage()]
    assert len(notes) == 1, notes  # once, not once per clustering (OPQ repeats its PQ training)
    assert notes[0].startswith(f"the {factory} index was trained on {count:,} vectors") and "--factory Flat" in notes[0]
    assert "\n" not in notes[0]
    assert manager.search(vectors[:1], 1).ids[0][0] in {f"I-{i}" for i in range(count)}  # it still works


def test_a_large_enough_training_set_says_nothing(capfd, caplog):
    with caplog.at_level(logging.WARNING, logger="radloop.retrieval.index"):
        IndexManager.build(_vectors(2000), [str(i) for i in range(2000)], "v", IndexConfig(factory="IVF8,Flat"))
    assert RAW not in capfd.readouterr().err
    assert not [record for record in caplog.records if "k-means" in record.getMessage()]


def test_other_stderr_output_is_written_back_also_when_training_fails(capfd):
    with captured_clustering_warnings() as found:
        os.write(2, b"WARNING clustering 10 points to 4 centroids: please provide at least 156 training points\n")
        os.write(2, b"something else FAISS said\n")
    assert found == [(10, 4, 156)]
    with pytest.raises(RuntimeError, match="boom"), captured_clustering_warnings():
        os.write(2, b"said before failing\n")
        raise RuntimeError("boom")
    err = capfd.readouterr().err
    assert "something else FAISS said" in err and "said before failing" in err and RAW not in err


def test_index_build_cli_with_a_forced_factory_prints_no_raw_warning(catalog, workspace, capfd):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    embedded_catalog(catalog, "enc-small", _vectors(300))
    result = CliRunner().invoke(build_app(), ["index", "build", "--encoder", "enc-small", "--factory", "IVF16,PQ4",
                                              "--json", "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert RAW not in capfd.readouterr().err


@pytest.mark.parametrize("factory", ["PQ8", "IVF16,PQ4", "OPQ4,PQ4"])
def test_pq_indexes_skip_the_polysemous_training_radloop_never_searches_with(factory):
    """index_factory turns polysemous training on for 8-bit PQ codes: ~3 s per sub-quantiser (minutes for the
    automatic choice's dim / 8 sub-quantisers at 512-d) to renumber centroids for a filter radloop never uses."""
    import faiss

    from radloop.retrieval.index_training import _coded_parts

    vectors = _vectors(300)
    manager = IndexManager.build(vectors, [str(i) for i in range(300)], "v", IndexConfig(factory=factory))
    coded = [part for part in _coded_parts(manager.index) if hasattr(part, "do_polysemous_training")]
    assert coded and not any(part.do_polysemous_training for part in coded)
    # the polysemous filter is off at search anyway: IndexPQ searches plain PQ, IndexIVFPQ has no Hamming threshold
    assert all(part.search_type == faiss.IndexPQ.ST_PQ if isinstance(part, faiss.IndexPQ) else
               part.polysemous_ht == 0 for part in coded)
