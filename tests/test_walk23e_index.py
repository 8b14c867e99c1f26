"""Walkthrough 23e (storage): saving a case-search index on a full disk or into a read-only workspace.

Measured: `radloop index build` with the index folder on an 8 KB tmpfs ended in a FAISS ``RuntimeError`` traceback
(``write error in .../index-<gen>.faiss: 8110 != 15360 (No space left on device)``) and left that half-written
file; `radloop search` on a read-only workspace whose index had to be rebuilt ended in ``could not open ... for
writing: Read-only file system`` (a traceback too)."""

from __future__ import annotations

import errno

import faiss
import numpy as np
import pytest

from radloop.retrieval.index import IndexConfig, IndexManager

VERSION = "enc-test-23e-index"


def _manager(count: int, seed: int) -> IndexManager:
    vectors = np.random.default_rng(seed).standard_normal((count, 8)).astype(np.float32)
    return IndexManager.build(vectors, [f"I-{seed}-{row}" for row in range(count)], VERSION,
                              IndexConfig(factory="Flat"))


@pytest.mark.parametrize(("message", "code", "cause"), [
    ("write error in {path}: 8110 != 15360 (No space left on device)", errno.ENOSPC,
     "No space left on device (disk full)"),
    ("could not open {path} for writing: Read-only file system", errno.EROFS, "Read-only file system"),
])
def test_a_refused_index_write_is_one_named_error_and_keeps_the_saved_index(tmp_path, monkeypatch, message, code,
                                                                            cause):
    folder = tmp_path / "index"
    _manager(20, seed=1).save(folder)
    before = sorted(path.name for path in folder.iterdir())
    real_write_index = faiss.write_index

    def refused(index, path):
        with open(path, "wb") as handle:  # what FAISS leaves of a write the disk cut short
            handle.write(b"IxF2 half an index")
        raise RuntimeError("Error in void faiss::write_index(const Index*, IOWriter*, int) at "
                           "/project/faiss/impl/index_write.cpp:499: Error: 'ret == (size * 4)' failed: "
                           + message.format(path=path))

    monkeypatch.setattr(faiss, "write_index", refused)
    with pytest.raises(OSError) as caught:
        _manager(30, seed=2).save(folder)
    assert (caught.value.errno, caught.value.filename) == (code, str(folder))
    assert caught.value.strerror == f"{cause}: could not write the index of {VERSION}"
    assert sorted(path.name for path in folder.iterdir()) == before
    monkeypatch.setattr(faiss, "write_index", real_write_index)
    assert len(IndexManager.load(folder, model_version=VERSION)) == 20


def test_a_faiss_error_that_is_not_a_write_stays_what_it_is(tmp_path, monkeypatch):
    def unsupported(index, path):
        raise RuntimeError("Error in faiss::write_index: don't know how to serialize this type of index")

    monkeypatch.setattr(faiss, "write_index", unsupported)
    with pytest.raises(RuntimeError, match="don't know how to serialize"):
        _manager(10, seed=3).save(tmp_path / "index")
