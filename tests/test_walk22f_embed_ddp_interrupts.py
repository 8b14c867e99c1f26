"""Walkthrough 22f: Ctrl-C of a two-process `radloop embed --devices 2` (Lightning's DDP launch: the launcher
re-runs the command once as rank 1).  A terminal's Ctrl-C sends SIGINT to every process of the foreground group;
SIGINT to the launcher alone is what ``kill -INT <pid>`` does.  Either way: exit status 130 with one clear
message, no partial shard file, every kept row readable, and a rerun embeds the rest, each image once.

The real CLI runs in a subprocess from a script file (Lightning's launcher re-runs ``sys.argv[0]``), each batch's
forward pass slowed so that the signal lands mid-run."""

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
from test_walk21g_embed_interrupts import _check_consistent, _rows

IMAGES = 48

#: the CLI with each batch's forward pass (48 images, 2 processes, 2-image batches: 12 x 0.25 s each) and each shard
#: write (4 rows: 6 per process, 0.6 s each) slowed down
SLOW_CLI = """
import sys, time
from radloop.ssl import embed
predict_step = embed._EncoderModule.predict_step
def slow_predict_step(self, batch, batch_index):
    time.sleep(0.25)
    return predict_step(self, batch, batch_index)
embed._EncoderModule.predict_step = slow_predict_step
from radloop.core import embedding_writer
publish = embedding_writer._publish
def slow_publish(temporary, folder, index):  # a shard write takes long: the signal may land in the middle of it
    time.sleep(0.3)  # the temporary file is written, not yet named
    target = publish(temporary, folder, index)
    time.sleep(0.3)  # named, its rows not yet recorded
    return target
embedding_writer._publish = slow_publish
from radloop.app.cli import main
main()  # sys.argv[0] stays this file: the launcher re-runs it for rank 1
"""
MESSAGE = "embedding interrupted: the shards written so far are kept; rerun the same command"


@pytest.fixture
def embedding_workspace(catalog, tmp_path):
    ids = build_workspace(catalog, IMAGES)
    encoder_dir = tmp_path / "encoder"
    version = save_random_encoder(encoder_dir)
    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    return catalog, ids, encoder_dir, version, script


def _group_members(leader: int) -> list[int]:
    """The processes of the launcher's session (the launcher and the rank it started)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == leader and fields[0] != "Z":  # fields[3]: the process group
                members.append(int(entry))
    return members


def _interrupt_mid_run(catalog, encoder_dir, version: str, script, whole_group: bool):
    process = subprocess.Popen([sys.executable, str(script), *embed_command(catalog, encoder_dir, "--devices", "2")],
                               env=embed_environment(catalog), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while len(_rows(catalog, version)) < 8 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert len(_group_members(process.pid)) >= 2, "the launch should have started a second process"
        if whole_group:  # a terminal's Ctrl-C
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, signal.SIGINT)
        output, errors = process.communicate(timeout=90)
        stragglers_deadline = time.monotonic() + 30
        while _group_members(process.pid) and time.monotonic() < stragglers_deadline:
            time.sleep(0.1)
        left = _group_members(process.pid)
    finally:
        if process.poll() is None or _group_members(process.pid):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    return process, output, errors, left


@pytest.mark.parametrize("whole_group", [True, False], ids=["ctrl-c-every-process", "sigint-launcher"])
def test_two_process_embed_interrupted_then_rerun_embeds_every_image_once(embedding_workspace, whole_group):
    catalog, ids, encoder_dir, version, script = embedding_workspace
    process, output, errors, left = _interrupt_mid_run(catalog, encoder_dir, version, script, whole_group)
    assert not left, f"processes of the run still alive after the launcher exited: {left}"
    kept = _rows(catalog, version)
    assert 8 <= len(kept) < IMAGES, f"the signal should land mid-run ({len(kept)} of {IMAGES} embedded)"
    assert len(set(kept)) == len(kept)
    assert process.returncode == 130, errors[-3000:]
    assert " ".join(errors.split()).count(MESSAGE) == 1, errors[-3000:]  # once, not once per process
    assert "Traceback" not in errors, errors[-3000:]
    assert not output.strip(), output  # no summary claiming a finished run
    from radloop.core.embedding_writer import shard_folder
    from radloop.core.embeddings import load_embeddings
    from radloop.core.schema import Embedding

    with catalog.session() as session:
        recorded = {path.rsplit("/", 1)[-1] for path, in session.query(Embedding.shard_path)
                    .filter(Embedding.model_version == version).distinct()}
    on_disk = {path.name for path in shard_folder(catalog, version).iterdir()}
    assert on_disk == recorded, f"partial or unrecorded shard files: {sorted(on_disk - recorded)}\n{errors[-3000:]}"
    assert sorted(load_embeddings(catalog, version).image_ids) == sorted(kept)  # what was kept reads back whole

    rerun = subprocess.run([sys.executable, str(script), *embed_command(catalog, encoder_dir, "--devices", "2")],
                           env=embed_environment(catalog), capture_output=True, text=True, timeout=240, check=False,
                           start_new_session=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout)
    assert summary["embedded"] == IMAGES - len(kept) and summary["already_embedded"] == len(kept)
    _check_consistent(catalog, version, ids)


def test_ctrl_c_during_a_shard_write_keeps_that_shard_whole(embedding_workspace, monkeypatch):
    """SIGINT while a shard is being written (here: once the file is written, before it is named and recorded) is
    held back until its rows are recorded, then raised.  Before, the KeyboardInterrupt landed inside the write: the
    shard was thrown away, and a second SIGINT (the launcher passing Ctrl-C on) could cut its clean-up short."""
    from radloop.core import embedding_writer
    from radloop.core.embeddings import load_embeddings
    from radloop.ssl.embed import _ShardWriter

    catalog, ids, _encoder_dir, version, _script = embedding_workspace
    publish = embedding_writer._publish

    def interrupted_publish(temporary, folder, index):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here at the latest
        return publish(temporary, folder, index)

    monkeypatch.setattr(embedding_writer, "_publish", interrupted_publish)
    writer = _ShardWriter(catalog, version, shard_size=4, fp16=False, normalized=True)
    writer.ids, writer.vectors = ids[:4], [np.ones((4, 8), dtype=np.float32)]
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    assert sorted(load_embeddings(catalog, version).image_ids) == sorted(ids[:4])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
