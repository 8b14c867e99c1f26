"""`bench selection` refuses an unknown strategy before generating its vectors (a million by default), and
`bench retrieval --embeddings` refuses --n / --dim, which it used to ignore silently."""

from __future__ import annotations

import numpy as np

from test_walk19_retrieval_errors import _invoke, _refused


def test_bench_selection_names_an_unknown_strategy_before_generating_vectors(monkeypatch):
    from radloop.retrieval import scale_bench

    def generate(*args, **kwargs):
        raise AssertionError("vectors generated before the strategy names were checked")

    monkeypatch.setattr(scale_bench, "clustered_vectors", generate)
    _refused(_invoke(["bench", "selection", "--strategies", "kcenter,kcentre"]), "kcentre", "kcenter")


def test_bench_retrieval_refuses_n_and_dim_with_embeddings(tmp_path):
    path = tmp_path / "vectors.npz"
    np.savez(path, ids=np.array([f"i{i}" for i in range(1200)]),
             vectors=np.random.default_rng(0).normal(size=(1200, 8)).astype(np.float32))
    _refused(_invoke(["bench", "retrieval", "--embeddings", str(path), "--n", "5000"]),
             "--n describes synthetic vectors: with --embeddings the file's own vectors are indexed")
    _refused(_invoke(["bench", "retrieval", "--embeddings", str(path), "--n", "5000", "--dim", "16"]),
             "--n and --dim describe synthetic vectors", "(leave out --n and --dim)")
