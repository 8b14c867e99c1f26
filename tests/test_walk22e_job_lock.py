"""Walk 22e: two processes running the same fine-tuning job (one version, one checkpoint folder).

The second used to train into the first one's rolling ``last.ckpt``; now it stops at once naming the holder's pid
(exit 3, as a second ingest), and once the holder is killed (``kill -9``) the same command resumes its checkpoint.
Real processes, 24 real radiographs, a tiny encoder, one torch thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from finetune_workspace import fill_fracture_catalog, register_random_encoder

JOB = ("name: locked\nhead: finetune\ndata: {body_region: false, max_eval_images: 2}\n"
       "finetune: {max_epochs: 1, batch_size: 2, augment: false, warmup_steps: 0, calibrate: false}\n"
       "trainer: {num_threads: 1, checkpoint_every_n_steps: 1}\n")

# the first process: the same job as `radloop train`, held after its step-1 checkpoint until it is killed
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import lightning as L
    from radloop.core.catalog import Catalog
    from radloop.core.config import load_config
    from radloop.core.workspace import resolve_workspace
    from radloop.ssl import finetune
    from radloop.ssl.finetune_config import TrainConfig
    from radloop.ssl.finetune_jobs import run_training

    class Hold(L.Callback):
        def on_train_batch_end(self, trainer, *_args):
            if trainer.global_step == 2:
                Path(sys.argv[3]).write_text("training")
                time.sleep(600)

    plain = finetune.trainer_callbacks
    finetune.trainer_callbacks = lambda progress: [*plain(progress), Hold()]
    catalog = Catalog.open(resolve_workspace(sys.argv[1]))
    run_training(catalog, load_config(sys.argv[2], TrainConfig), progress=False)
""")


@pytest.fixture
def filled(catalog, tmp_path):
    fill_fracture_catalog(catalog, 24, seed=2, render_size=96, splits=("train", "test", "val"))
    register_random_encoder(catalog, tmp_path / "encoder")
    return catalog


def _environment(catalog) -> dict[str, str]:
    return {**os.environ, "RADLOOP_DATABASE_URL": catalog.workspace.database_url, "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "COLUMNS": "400"}


def _train(catalog, config):
    return subprocess.run([sys.executable, "-m", "radloop.app.cli", "train", "--config", str(config), "--workspace",
                           str(catalog.workspace.root), "--json"], capture_output=True, text=True, check=False,
                          env=_environment(catalog), timeout=300)


def test_a_second_process_on_the_same_job_is_refused_and_a_kill_9_leaves_it_resumable(filled, tmp_path):
    from radloop.core.registry import list_models

    config = tmp_path / "job.yaml"
    config.write_text(JOB)
    ready = tmp_path / "holder-training"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(filled.workspace.root), str(config), str(ready)],
                              env=_environment(filled), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert holder.poll() is None, holder.stdout.read()
            assert time.monotonic() < deadline, "the first job did not reach step 2"
            time.sleep(0.5)
        [run] = list((filled.workspace.models_dir / "runs").iterdir())
        checkpoint = run / "checkpoints" / "last.ckpt"
        assert checkpoint.is_file()
        written = checkpoint.stat().st_mtime_ns

        second = _train(filled, config)
        message = " ".join((second.stdout + second.stderr).split())
        assert second.returncode == 3, message
        assert f"already training in another process (pid {holder.pid} on " in message
        assert "Traceback" not in message
        assert checkpoint.stat().st_mtime_ns == written  # the holder's checkpoint untouched
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9: no clean-up runs; the kernel drops the lock
        holder.wait(timeout=60)

    resumed = _train(filled, config)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["version"] == run.name and result["registered"]
    assert f"resumed from checkpoint {checkpoint} (step 1)" in result["messages"]
    assert [model.kind for model in list_models(filled)] == ["classifier", "encoder"]
    assert not run.exists()  # done: the checkpoint folder, the lock file and the run folder are gone
