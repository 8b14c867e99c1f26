"""An index manager shown in a notebook says what it is (was ``<IndexManager object at 0x...>``)."""

from __future__ import annotations

import numpy as np

from radloop.retrieval.index import IndexManager


def test_index_manager_repr_names_version_size_and_kind():
    vectors = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    manager = IndexManager.build(vectors, [f"c{i}" for i in range(20)], "enc-v1")
    assert repr(manager) == "IndexManager(model_version='enc-v1', entries=20, dim=8, factory='Flat', metric='cosine')"
