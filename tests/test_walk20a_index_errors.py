"""Forced FAISS factories that FAISS cannot train or fill: one ``ValueError`` line naming the reason (the CLI prints
it as one error line), never a C++ ``RuntimeError`` with its source location."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from radloop.retrieval import IndexConfig, IndexManager
from radloop.retrieval.index_store import faiss_reason


def _vectors(count: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(count, dim)).astype(np.float32)


@pytest.mark.parametrize("factory", ["PQ8", "IVF16,PQ8", "OPQ8,PQ8np"])
def test_a_codebook_larger_than_the_set_is_refused_in_one_line(factory):
    with pytest.raises(ValueError) as raised:
        IndexManager.build(_vectors(130), [str(i) for i in range(130)], "v", IndexConfig(factory=factory))
    message = str(raised.value)
    assert message.startswith(f"the {factory} index cannot be trained on 130 vectors: Number of training points "
                              "(130) should be at least as large as number of clusters (256)")
    assert "--factory Flat" in message and ".cpp" not in message and "Error in" not in message


def test_factories_that_cannot_take_ids_or_more_vectors_are_refused_in_one_line():
    vectors = _vectors(130)
    manager = IndexManager(64, "v", IndexConfig(factory="IVF4,Flat,RFlat"))
    with pytest.raises(ValueError, match=r"^the IVF4,Flat,RFlat index cannot take these vectors: add_with_ids not "
                                         r"implemented for this type of index; rebuild with another --factory"):
        manager.add(vectors, [str(i) for i in range(130)])
    assert manager.index is None and len(manager) == 0  # unchanged: a later add starts again
    with pytest.raises(ValueError, match=r"^the NSG32 index needs at least 1,000 vectors \(got 110\): FAISS's NSG "
                                         "graph build can abort the process on small sets"):  # NNDescent's assert
        IndexManager.build(vectors[:110], [str(i) for i in range(110)], "v", IndexConfig(factory="NSG32"))
    many = _vectors(1020)
    graph = IndexManager.build(many[:1000], [str(i) for i in range(1000)], "v", IndexConfig(factory="NSG32"))
    with pytest.raises(ValueError, match=r"^the NSG32 index cannot take more vectors: NSG does not support "
                                         "incremental addition"):
        graph.add(many[1000:], [str(i) for i in range(1000, 1020)])
    assert len(graph) == 1000


def test_faiss_reason_drops_the_source_location_and_the_assertion_expression():
    error = RuntimeError("Error in void faiss::Clustering::train_encoded(faiss::idx_t, const uint8_t*) at "
                         "/project/faiss/Clustering.cpp:66: Error: 'nx >= static_cast<idx_t>(k)' failed: Number of "
                         "training points (130) should be at least as large as number of clusters (256)")
    assert faiss_reason(error) == ("Number of training points (130) should be at least as large as number of "
                                   "clusters (256)")
    bare = RuntimeError("Error in faiss::IndexLSH::IndexLSH() at /project/faiss/IndexLSH.cpp:9: Error: "
                        "'metric == METRIC_L2' failed")
    assert faiss_reason(bare) == "'metric == METRIC_L2' failed"  # nothing else to say


def embedded_catalog(catalog, version: str, vectors: np.ndarray) -> list[str]:
    """One synthetic image (no files) per row of ``vectors``, embedded by encoder ``version``; their ids."""
    from radloop.core.embeddings import write_shard
    from radloop.core.schema import Image, Study

    ids = []
    with catalog.session() as session:
        for i in range(len(vectors)):
            session.add(Study(id=f"S-{i}", dataset="synthetic", split="train"))
            session.flush()
            session.add(Image(id=f"I-{i:04d}", study_id=f"S-{i}", content_hash=f"{i:064x}", dataset="synthetic",
                              source_path=f"/nowhere/{i}.png", source_format="png", render_path=f"r/{i}.png",
                              thumb_path=f"t/{i}.png", width=8, height=8, render_width=8, render_height=8))
            ids.append(f"I-{i:04d}")
    write_shard(catalog, version, ids, vectors, normalized=False)
    return ids


def test_index_build_cli_refuses_an_untrainable_factory_in_one_line(catalog, workspace):
    from radloop.app.cli import build_app

    embedded_catalog(catalog, "enc-small", _vectors(130))
    result = CliRunner().invoke(build_app(), ["index", "build", "--encoder", "enc-small", "--factory", "IVF16,PQ8",
                                              "--workspace", str(workspace.root)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: the IVF16,PQ8 index cannot be trained on 130 vectors"), result.output
    assert "Traceback" not in result.output
