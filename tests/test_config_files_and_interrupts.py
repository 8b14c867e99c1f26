"""Configs without settings are refused, an interrupted pretraining run says what it kept, held-out
metrics on a split without labels (or with one class only) explain themselves without scikit-learn's warnings."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lightning_helpers import InterruptAtStep
from ssl_workspace import build_workspace

from radloop.app.cli import build_app
from radloop.core.config import ConfigError, load_config
from radloop.ssl.finetune_config import TrainConfig
from radloop.ssl.finetune_metrics import classification_metrics, region_metrics
from radloop.ssl.pretrain import pretrain
from radloop.ssl.settings import PretrainConfig

NO_SETTINGS = {"empty": "", "comments": "# settings come later\n\n# really\n", "null": "null\n", "braces": "{}\n"}

TINY_MAE = ["method=mae", "model.timm_name=vit_tiny_patch16_224", "model.image_size=32", "model.patch_size=8",
            "model.pooling=avg_tokens", "model.channels_last=false", "mae.decoder_dim=32", "mae.decoder_depth=1",
            "mae.decoder_heads=2", "data.crop_size=32", "data.batch_size=8", "data.cache_size=40",
            "trainer.enable_progress_bar=false", "trainer.num_threads=1", "trainer.loggers=[]",
            "trainer.max_steps=5", "trainer.checkpoint_every_n_steps=3"]


@pytest.mark.parametrize("text", NO_SETTINGS.values(), ids=NO_SETTINGS.keys())
@pytest.mark.parametrize("overrides", [None, ["seed=3"]], ids=["alone", "with-overrides"])
def test_a_config_file_without_settings_is_refused(tmp_path, text, overrides):
    """It used to mean "all defaults": an empty pretraining config started a default, hours-long run."""
    file = tmp_path / "empty.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=f"config file {file} has no settings"):
        load_config(file, PretrainConfig, overrides)


def test_no_file_still_means_the_defaults():
    assert load_config(None, PretrainConfig).method == PretrainConfig().method
    assert load_config(None, PretrainConfig, ["seed=3"]).seed == 3


@pytest.mark.parametrize(("text", "expected"), [
    ("- method: mae\n- seed: 1\n", "must be a mapping of settings .* not a list"),
    ("simclr\n", "must be a mapping of settings .* not the single value 'simclr'"),
    ("method: [mae\n", r"is not valid YAML \(line 2, column 1: expected ',' or ']'"),
    ("method: mae: simclr\n", r"is not valid YAML \(line 1, column 12: mapping values are not allowed here\)"),
])
def test_a_config_file_that_is_not_a_mapping_is_refused_naming_it(tmp_path, text, expected):
    file = tmp_path / "odd.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=f"config file {file} {expected}"):
        load_config(file, PretrainConfig)


def test_an_unreadable_config_file_is_a_config_error(tmp_path):
    file = tmp_path / "binary.yaml"
    file.write_bytes(b"\xff\xfe\x00method")
    with pytest.raises(ConfigError, match=f"cannot read config file {file}"):
        load_config(file, TrainConfig)


@pytest.mark.parametrize("command", [["pretrain"], ["train"], ["index", "build"], ["round", "start"],
                                     ["bench", "finetune"]], ids=" ".join)
@pytest.mark.parametrize("text", [NO_SETTINGS["comments"], "method: [mae\n"], ids=["no-settings", "not-yaml"])
def test_every_command_that_loads_a_config_refuses_it_in_one_line(catalog, tmp_path, command, text):
    file = tmp_path / "job.yaml"
    file.write_text(text)
    result = CliRunner().invoke(build_app(), [*command, "--config", str(file), "-w", str(catalog.workspace.root)],
                                terminal_width=400, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and f"config file {file} " in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not isinstance(result.exception, Exception)
    assert not (catalog.workspace.root / "models" / "runs").exists()  # nothing started




@pytest.mark.usefixtures("one_torch_thread", "sigint_restored")
def test_an_interrupted_pretraining_run_says_what_it_kept(catalog, tmp_path):
    build_workspace(catalog, 16)
    config = load_config(None, PretrainConfig, TINY_MAE)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    with pytest.raises(KeyboardInterrupt) as before_the_first:  # checkpoints every 3 steps: none at step 2
        pretrain(catalog, config, run, register=False, callbacks=[InterruptAtStep(2)])
    assert str(before_the_first.value) == ("pretraining interrupted at step 2: no checkpoint was written yet (the "
                                           "first comes at step 3); a rerun starts from the beginning")
    assert not last.exists()
    with pytest.raises(KeyboardInterrupt) as after_one:
        pretrain(catalog, config, run, register=False, callbacks=[InterruptAtStep(4)])
    assert str(after_one.value) == f"pretraining interrupted at step 4: rerun the same command to resume from " \
                                   f"{last} (step 3)"
    with pytest.raises(KeyboardInterrupt) as resumed_then_stopped:  # resumed at 3: no new checkpoint by step 5
        pretrain(catalog, config, run, register=False, callbacks=[InterruptAtStep(5)])
    assert str(resumed_then_stopped.value).endswith(f"to resume from {last} (step 3)")
    with pytest.raises(KeyboardInterrupt) as fresh:  # --no-resume: the same command would start over again
        pretrain(catalog, config, run, resume=False, register=False, callbacks=[InterruptAtStep(4)])
    kept = re.fullmatch(r"pretraining interrupted at step 4: its checkpoint (\S+) \(step 3\) is kept: rerun with "
                        r"--checkpoint \1 to resume from it \(the same command starts from the beginning again\)",
                        str(fresh.value))
    assert kept, str(fresh.value)
    assert Path(kept[1]).parent == last.parent and Path(kept[1]) != last  # Lightning wrote last-v1.ckpt beside it
    finished = pretrain(catalog, config, run, register=False)
    assert finished.resumed_from == str(last) and finished.steps == 5


def test_a_finding_without_held_out_labels_is_named_so_without_warnings():
    targets = np.array([[-1, 1], [-1, 0], [-1, 1]])
    probabilities = np.array([[0.2, 0.9], [0.4, 0.1], [0.1, 0.7]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics(targets, probabilities, ["fracture", "foreign_body"])
    assert metrics["n.fracture"] == 0 and metrics["auroc.fracture"] is None and metrics["auroc.foreign_body"] == 1.0
    assert metrics["notes"] == ["fracture: no labelled held-out images (0 of 3); AUROC/AP undefined"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one_class = classification_metrics(np.ones((4, 1), int), np.full((4, 1), 0.5), ["fracture"])
    assert one_class["notes"] == ["fracture: held-out labels have one class only (all 4 images present); "
                                  "AUROC/AP undefined"]


def test_region_metrics_on_a_one_region_split_do_not_warn():
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warned "A single label was found in 'y_true' and 'y_pred'"
        all_right = region_metrics(["chest"] * 3, ["chest"] * 3)
        one_wrong = region_metrics(["chest"] * 4, ["chest", "hand", None, "chest"])
    assert all_right == {"region_balanced_accuracy": 1.0, "region_accuracy": 1.0, "n.region": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = balanced_accuracy_score(["chest"] * 4, ["chest", "hand", "<none>", "chest"])
    assert one_wrong["region_balanced_accuracy"] == pytest.approx(reference) == pytest.approx(0.5)
    assert one_wrong["region_accuracy"] == 0.5
