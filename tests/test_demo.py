"""`radloop demo` on a small real subset: every stage runs and the report/plot are written."""

from __future__ import annotations

import json

import pytest

from conftest import DATA_ROOT, data_path


@pytest.mark.slow
def test_demo_small_subset(tmp_path):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    data_path("bone_fracture_xray_roboflow_v4", "coco", "train_annotations.coco.json")
    data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    workspace = tmp_path / "demo-ws"
    result = CliRunner().invoke(build_app(), [
        "demo", "--data", str(DATA_ROOT), "--workspace", str(workspace), "--limit", "240",
        "--pretrain-minutes", "0.15", "--rounds", "2", "--budget", "12", "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((workspace / "rounds" / "demo_summary.json").read_text())
    assert json.loads(result.stdout)["rounds"] == summary["rounds"]  # --json: stdout is the JSON alone
    steps = {step["step"].split(" ")[0]: step for step in summary["steps"]}
    assert steps["ingest"]["fracture_images"] == 240 and steps["ingest"]["ingest_errors"] == 0
    assert steps["weak"]["reports_labelled"] > 2000 and steps["weak"]["f1_fracture"] > 0.5
    assert steps["embed"]["index_size"] >= 240
    assert [r["labels_total"] for r in summary["rounds"]] == [12, 24]
    assert len(summary["random_baseline"]) == 2
    assert summary["next_batch"]["selected"] == 12
    assert (workspace / summary["next_batch"]["label_studio_import_file"]).exists()
    assert (workspace / "rounds" / "learning_curve.png").stat().st_size > 10_000
    # the experts' batch stays open as an expert round: a plain finish does not answer it from the ground truth
    finish = CliRunner().invoke(build_app(), ["round", "finish", "--workspace", str(workspace)])
    assert finish.exit_code != 0 and "went to an import file" in finish.output, finish.output
    simulated = CliRunner().invoke(build_app(), ["round", "finish", "--simulate", "--workspace", str(workspace),
                                                 "--json"])
    assert simulated.exit_code == 0, simulated.output
    assert json.loads(simulated.stdout)["labels_spent"] == 12


def test_demo_missing_data_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["demo", "--data", str(tmp_path / "nowhere"),
                                              "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 2
    assert "not found" in result.output


def test_demo_workspace_is_sqlite_even_with_a_site_database(tmp_path, monkeypatch):
    """The demo deletes and rebuilds its folder: its catalog lives there, never in RADLOOP_DATABASE_URL's."""
    from radloop.app.cli_demo import demo_workspace

    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    plain, note = demo_workspace(tmp_path / "ws")
    assert plain.database_url == f"sqlite:///{(tmp_path / 'ws' / 'catalog.sqlite').resolve()}" and note is None
    monkeypatch.setenv("RADLOOP_DATABASE_URL", "postgresql+psycopg://site@db.example/radloop")
    demo, note = demo_workspace(tmp_path / "ws")
    assert demo == plain and "RADLOOP_DATABASE_URL is not used" in note


def test_demo_explore_hint_opens_the_demo_catalog(tmp_path, monkeypatch):
    """The closing hint must open the demo's SQLite catalog in the app, also with a site database in the shell."""
    import shlex

    from radloop.app.cli_demo import explore_command
    from radloop.core.workspace import resolve_workspace

    def workspace_the_hint_opens(line):
        assignments = dict(word.split("=", 1) for word in shlex.split(line) if "=" in word and "/" not in word[:1])
        with monkeypatch.context() as scope:
            for key, value in assignments.items():
                scope.setenv(key, value)
            return resolve_workspace()

    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    line = explore_command(tmp_path / "ws")
    assert "RADLOOP_DATABASE_URL" not in line
    assert workspace_the_hint_opens(line).database_url.startswith("sqlite:///")
    monkeypatch.setenv("RADLOOP_DATABASE_URL", "postgresql+psycopg://site@db.example/radloop")
    opened = workspace_the_hint_opens(explore_command(tmp_path / "ws"))
    assert opened.database_url == f"sqlite:///{(tmp_path / 'ws' / 'catalog.sqlite').resolve()}"


def test_demo_never_wipes_a_workspace_it_did_not_make(tmp_path, monkeypatch):
    """Without --keep the demo deletes and rebuilds its folder: only an empty one or one an earlier demo made
    (marker file); a real workspace, another folder or a file is refused, and bad --data is caught first."""
    from typer.testing import CliRunner

    from radloop.app.cli import build_app
    from radloop.app.cli_demo import DEMO_MARKER, replaceable

    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    assert replaceable(tmp_path / "new", keep=False) is None
    (tmp_path / "empty").mkdir()
    assert replaceable(tmp_path / "empty", keep=False) is None
    real = tmp_path / "real"
    real.mkdir()
    (real / "catalog.sqlite").write_text("a site's catalog")
    for keep in (False, True):
        assert "did not make" in replaceable(real, keep=keep)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("x")
    assert "not a radloop workspace" in replaceable(tmp_path / "other", keep=False)
    (tmp_path / "afile").write_text("x")
    assert "is a file" in replaceable(tmp_path / "afile", keep=False)
    demo_made = tmp_path / "demo-ws"
    demo_made.mkdir()
    (demo_made / DEMO_MARKER).write_text("")
    (demo_made / "catalog.sqlite").write_text("")
    assert replaceable(demo_made, keep=False) is None and replaceable(demo_made, keep=True) is None

    runner = CliRunner()
    refused = runner.invoke(build_app(), ["demo", "--data", str(DATA_ROOT), "--workspace", str(real)])
    assert refused.exit_code == 2 and "did not make" in refused.output
    assert (real / "catalog.sqlite").read_text() == "a site's catalog"
    (tmp_path / "nodata").mkdir()
    (demo_made / "keep-me.txt").write_text("x")
    no_data = runner.invoke(build_app(), ["demo", "--data", str(tmp_path / "nodata"), "--workspace", str(demo_made)])
    assert no_data.exit_code == 2 and "demo data missing" in no_data.output
    assert (demo_made / "keep-me.txt").exists()


def test_demo_pretraining_minutes_count_fractions():
    from radloop.app.demo import pretrain_overrides

    assert "trainer.max_time=00:00:00:06" in pretrain_overrides(0.1)
    assert "trainer.max_time=00:00:02:30" in pretrain_overrides(2.5)
    assert "trainer.max_time=00:01:05:00" in pretrain_overrides(65)
    assert "trainer.max_steps=150" in pretrain_overrides(2.5)
    assert {"trainer.fit_schedule_to_time=true", "trainer.checkpoint_every_n_steps=150"} <= set(pretrain_overrides(2.5))


def test_lightning_progress_bars_write_to_stderr(capfd):
    """stdout carries --json output: the prediction bar (embedding) and the training bar go to stderr."""
    import lightning as L
    import torch

    from radloop.ssl.trainer_progress import trainer_callbacks

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).sum()

        def predict_step(self, batch, _):
            return self.layer(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(8, 2)), batch_size=4)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, callbacks=trainer_callbacks(True))
    trainer.fit(Tiny(), data)
    trainer.predict(Tiny(), data, return_predictions=False)
    captured = capfd.readouterr()
    assert "Predicting" in captured.err and "Epoch" in captured.err
    assert "Predicting" not in captured.out and "Epoch" not in captured.out
