"""Saves of one index folder from several processes at once (a round started while `radloop index build` runs,
two app sessions extending one index) wait for one another: each deleted every generation but its own once it
switched, so two at once could delete each other's files and leave a manifest naming none."""

from __future__ import annotations

import multiprocessing

import numpy as np

from radloop.retrieval.index import IndexManager


def _save_many(folder: str, seed: int, rounds: int) -> None:
    vectors = np.random.default_rng(seed).normal(size=(300, 16)).astype(np.float32)
    manager = IndexManager.build(vectors, [f"s{seed}-{i}" for i in range(300)], "enc-v1")
    for _ in range(rounds):
        manager.save(folder)


def test_concurrent_saves_leave_a_loadable_index(tmp_path):
    folder = tmp_path / "index"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_save_many, args=(str(folder), seed, 15)) for seed in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]

    loaded = IndexManager.load(folder, model_version="enc-v1")
    assert len(loaded) == 300
    names = {path.name for path in folder.iterdir()}
    assert len([name for name in names if name.startswith("index-")]) == 1  # one generation left, the manifest's


def test_a_load_racing_a_save_opens_the_new_generation(tmp_path, monkeypatch):
    folder = tmp_path / "index"
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    manager = IndexManager.build(vectors, [f"c{i}" for i in range(50)], "enc-v1")
    manager.save(folder)
    real_open = IndexManager._open.__func__
    calls = []

    def open_after_a_save(cls, where, manifest, *, mmap):
        calls.append(manifest["files"]["index"])
        if len(calls) == 1:  # another process saves between this load's manifest read and its file reads
            monkeypatch.undo()  # (that save's own read-back opens the real way)
            manager.save(folder)
        return real_open(cls, where, manifest, mmap=mmap)

    monkeypatch.setattr(IndexManager, "_open", classmethod(open_after_a_save))
    loaded = IndexManager.load(folder)
    assert len(loaded) == 50
    assert len(calls) == 1  # the patched open ran once, with the old generation: the retry opened the new one
    assert not (folder / calls[0]).exists()
