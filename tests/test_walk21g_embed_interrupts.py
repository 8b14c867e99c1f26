"""Walkthrough 21g (embedding at archive scale): `radloop embed` stopped by Ctrl-C (SIGINT) or killed (SIGKILL)
mid-run, then rerun: every image embedded exactly once, every shard consistent with its rows, the index sees them
all, and the run prints its throughput.  The real CLI in a subprocess, its forward pass slowed so that the signal
lands mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ssl_workspace import build_workspace, embed_command, embed_environment, save_random_encoder

IMAGES = 40

#: the CLI with each batch's forward pass slowed down (40 images in 2-image batches: 20 x 0.15 s)
SLOW_CLI = """
import sys, time
from radloop.ssl import embed
predict_step = embed._EncoderModule.predict_step
def slow_predict_step(self, batch, batch_index):
    time.sleep(0.15)
    return predict_step(self, batch, batch_index)
embed._EncoderModule.predict_step = slow_predict_step
from radloop.app.cli import main
sys.argv = ["radloop", *sys.argv[1:]]
main()
"""


@pytest.fixture
def embedding_workspace(catalog, tmp_path):
    ids = build_workspace(catalog, IMAGES)
    return catalog, ids, tmp_path / "encoder", save_random_encoder(tmp_path / "encoder")


def _rows(catalog, version: str) -> list[str]:
    from radloop.core.schema import Embedding

    with catalog.session() as session:
        return [image_id for image_id, in session.query(Embedding.image_id).filter(Embedding.model_version == version)]


def _stop_mid_run(catalog, encoder_dir, version: str, signal_number: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *embed_command(catalog, encoder_dir)],
                               env=embed_environment(catalog), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(_rows(catalog, version)) < 8 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal_number)
        _out, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process, errors


def _check_consistent(catalog, version: str, ids: list[str]) -> None:
    from radloop.core.embedding_writer import shard_folder
    from radloop.core.embeddings import load_embeddings
    from radloop.retrieval import IndexManager

    stored = load_embeddings(catalog, version)  # reads every shard its rows point at: none lost or short
    assert sorted(stored.image_ids) == sorted(ids) and len(set(stored.image_ids)) == len(ids)
    assert stored.vectors.shape[0] == len(ids) and np.isfinite(stored.vectors).all()
    folder = shard_folder(catalog, version)
    assert not [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]
    index = IndexManager.from_catalog(catalog, version)  # the index sees every image, each once
    assert len(index) == len(ids)
    found = index.search(stored.vectors, k=1)
    assert [neighbours[0] for neighbours in found.ids] == stored.image_ids


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_embed_stopped_mid_run_then_rerun_embeds_every_image_once(embedding_workspace, signal_number):
    catalog, ids, encoder_dir, version = embedding_workspace
    process, errors = _stop_mid_run(catalog, encoder_dir, version, signal_number)
    kept = _rows(catalog, version)
    assert 8 <= len(kept) < IMAGES, f"the signal should land mid-run ({len(kept)} of {IMAGES} embedded)"
    assert len(set(kept)) == len(kept)
    if signal_number == signal.SIGINT:
        assert process.returncode == 130, errors[-2000:]
        assert "embedding interrupted: the shards written so far are kept; rerun the same command" in \
            " ".join(errors.split())
    else:
        assert process.returncode == -signal.SIGKILL
    from radloop.core.embeddings import load_embeddings

    assert sorted(load_embeddings(catalog, version).image_ids) == sorted(kept)  # what was kept reads back whole

    rerun = subprocess.run([sys.executable, "-m", "radloop.app.cli", *embed_command(catalog, encoder_dir)],
                           env=embed_environment(catalog), capture_output=True, text=True, timeout=180, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["embedded"] == IMAGES - len(kept) and summary["already_embedded"] == len(kept)
    assert summary["images_per_second"] > 0
    _check_consistent(catalog, version, ids)


def test_embed_reports_its_throughput(embedding_workspace):
    """The summary gives the embedding loop's images per second (before: only the wall seconds, start-up and
    catalog queries included, so no throughput figure to size an archive run by)."""
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoders import load_encoder

    catalog, _ids, encoder_dir, _version = embedding_workspace
    summary = embed_catalog(catalog, load_encoder(encoder_dir), batch_size=8, shard_size=16, accelerator="cpu",
                            progress=False)
    assert summary["embedded"] == IMAGES and summary["images_per_second"] > 0
    # the loop, not the start-up ("seconds" is rounded to 0.1 s: a 0.149 s run says 0.1)
    assert summary["images_per_second"] >= IMAGES / (summary["seconds"] + 0.05)
    again = embed_catalog(catalog, load_encoder(encoder_dir), accelerator="cpu", progress=False)
    assert again["embedded"] == 0 and "images_per_second" not in again
