"""The ML backend's training when the same fine-tuning job runs in another process (walk 22e's job lock).

Before: ``JobLockedError`` escaped the training thread and was logged with a traceback as "background training
failed"; now the request ends with status ``busy`` and the lock holder in its outcome.
"""

from __future__ import annotations

from pathlib import Path

from radloop.app.backend_training import TrainingRequest, default_train_function
from radloop.ssl import finetune_jobs
from radloop.ssl.finetune_checkpoints import JobLockedError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "finetune_cpu.yaml"


def test_a_job_training_elsewhere_is_busy_not_a_failure(catalog, monkeypatch):
    lock = catalog.workspace.root / "models" / "runs" / "clf-1" / "job.lock"

    def locked(*_args, **_kwargs):
        raise JobLockedError(lock, "pid 4242 on host")

    monkeypatch.setattr(finetune_jobs, "run_training", locked)
    train = default_train_function(catalog, CONFIG)
    result = train([TrainingRequest(reason="START_TRAINING", project="1", at="2026-11-28T12:00:00Z")])
    assert result["status"] == "busy" and result["trained"] is False
    assert "pid 4242" in result["outcome"] and "already training" in result["outcome"]
    log = catalog.workspace.logs_dir / "training-requests.jsonl"
    assert "START_TRAINING" in log.read_text()  # the request is still recorded
