"""Walkthrough 19 (training path): `radloop train` / `bench finetune` with a ViT encoder, and Ctrl-C, as a
first-time user met them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from finetune_workspace import fill_fracture_catalog, register_random_encoder
from lightning_helpers import InterruptAtStep

from radloop.app.cli import build_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "finetune"
#: configs/finetune/finetune_cpu.yaml shrunk to seconds.
TINY_FINETUNE = ["finetune.max_epochs=1", "finetune.max_steps=3", "finetune.batch_size=4", "finetune.warmup_steps=1",
                 "finetune.image_size=32", "trainer.num_threads=1"]


def _invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), terminal_width=400, env={"COLUMNS": "400"})


def _sets(overrides: list[str]) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


@pytest.fixture
def filled(catalog, tmp_path):
    """24 real radiographs (train/test alternate by study) and a registered current encoder (tiny ResNet)."""
    fill_fracture_catalog(catalog, 24, seed=2, render_size=96)
    register_random_encoder(catalog, tmp_path / "encoder")
    return catalog


@pytest.fixture
def vit_encoder(tmp_path):
    """A ViT-Tiny encoder folder at 32 px (what `radloop pretrain -c configs/ssl/mae_cpu.yaml` exports)."""
    from radloop.ssl.encoders import random_encoder, save_encoder

    bundle = random_encoder("vit_tiny_patch16_224", 32, patch_size=8, pooling="avg_tokens")
    folder = tmp_path / "vit"
    save_encoder(bundle.model.backbone, folder, timm_name="vit_tiny_patch16_224", image_size=32, patch_size=8,
                 method="mae", pooling="avg_tokens")
    return folder




def _interrupt_fine_tuning(monkeypatch) -> None:
    import radloop.ssl.finetune as finetune

    original = finetune.trainer_callbacks
    monkeypatch.setattr(finetune, "trainer_callbacks", lambda progress: [*original(progress), InterruptAtStep(1)])


def test_finetune_image_size_on_a_vit_encoder_is_refused_before_reading_images(vit_encoder):
    """`finetune.image_size` (e.g. finetune_cpu_hour.yaml's 288) on an MAE ViT encoder loaded every image, then died
    in timm with a 60-line traceback ("Input height (48) doesn't match model (32)")."""
    from radloop.ssl.encoders import load_encoder
    from radloop.ssl.finetune import train_classifier
    from radloop.ssl.finetune_config import FinetuneConfig, TrainerConfig

    images = [Path("/nonexistent/render.png")] * 4  # never read: refused first
    targets = np.array([[1], [0], [1], [0]])
    with pytest.raises(ValueError, match=r"finetune.image_size 48: the encoder vit_tiny_patch16_224 is a ViT built "
                                         r"for 32 px and keeps that input size; leave finetune.image_size unset"):
        train_classifier(load_encoder(vit_encoder), images, targets, np.ones(4), [None] * 4, ["fracture"],
                         FinetuneConfig(image_size=48), TrainerConfig(num_threads=1), progress=False)


def test_train_with_a_vit_encoder_says_what_to_change_in_one_line(filled, vit_encoder):
    """Fine-tuning at another size and detection (no feature pyramid in a ViT) on an MAE encoder: one line each
    naming the setting, not a traceback or "no weights of encoder ... fit a vit_tiny_patch16_224 backbone"."""
    workspace = str(filled.workspace.root)
    finetune = _invoke("train", "-c", str(CONFIGS / "finetune_cpu.yaml"), "-w", workspace,
                       *_sets([f"encoder.path={vit_encoder}", "finetune.image_size=48", "finetune.max_steps=1"]))
    assert finetune.exit_code == 2, finetune.output
    assert finetune.output.startswith("error: finetune.image_size 48: the encoder vit_tiny_patch16_224 is a ViT")
    assert "Traceback" not in finetune.output and not isinstance(finetune.exception, AssertionError)
    detect = _invoke("train", "-c", str(CONFIGS / "detect_cpu.yaml"), "-w", workspace,
                     *_sets([f"encoder.path={vit_encoder}", "detect.max_steps=1"]))
    assert detect.exit_code == 2, detect.output
    assert detect.output.startswith("error: detection needs a CNN encoder with feature stages (e.g. resnet18); "
                                    "vit_tiny_patch16_224 (enc-mae-vit_tiny_patch16_224-"), detect.output
    random_vit = _invoke("train", "-c", str(CONFIGS / "detect_cpu.yaml"), "-w", workspace,
                         *_sets([f"encoder.path={vit_encoder}", "encoder.init=random", "detect.max_steps=1"]))
    assert random_vit.exit_code == 2 and "vit_tiny_patch16_224 (random-vit_tiny_patch16_224-32-seed0) is a ViT" in random_vit.output


@pytest.mark.usefixtures("sigint_restored")
def test_ctrl_c_during_train_is_one_line_and_exit_130(filled, monkeypatch):
    """Ctrl-C while a head trained ended `radloop train` with exit code 1 and no word (Lightning's shutdown message
    is below the CLI's log level): was anything saved or registered?"""
    from radloop.core.registry import list_models

    _interrupt_fine_tuning(monkeypatch)
    before = {record.version for record in list_models(filled)}
    result = _invoke("train", "-c", str(CONFIGS / "finetune_cpu.yaml"), "-w", str(filled.workspace.root),
                     *_sets(TINY_FINETUNE))
    assert result.exit_code == 130, result.output
    assert result.output.strip().endswith("error: training interrupted: no model was registered; rerun "
                                                      "the same command to train it again")
    assert {record.version for record in list_models(filled)} == before


@pytest.mark.usefixtures("sigint_restored")
def test_ctrl_c_during_bench_finetune_keeps_the_rows_measured(filled, monkeypatch, tmp_path):
    """Ctrl-C in the third job of `radloop bench finetune` threw away the two rows measured (minutes each) and exited
    1 without a word."""
    _interrupt_fine_tuning(monkeypatch)
    bench = tmp_path / "bench.yaml"
    bench.write_text(f"heads:\n  probe: {CONFIGS / 'probe_cpu.yaml'}\n  finetune: {CONFIGS / 'finetune_cpu.yaml'}\n"
                     "fractions: [1.0]\ninits: [pretrained, random]\noverrides: []\nseed: 0\n")
    result = _invoke("bench", "finetune", "-c", str(bench), "-w", str(filled.workspace.root), "--json",
                     *_sets(TINY_FINETUNE))
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().endswith(
        "error: bench interrupted: during finetune/pretrained/1; the 2 row(s) measured before it are shown above")
    summary = json.loads(result.stdout)
    assert [(row["head"], row["init"]) for row in summary["rows"]] == [("probe", "pretrained"), ("probe", "random")]
    assert all("auroc.fracture" in row for row in summary["rows"])
    assert summary["interrupted"] == "during finetune/pretrained/1"


def test_bench_finetune_table_keeps_the_init_column_whole_in_a_pipe(catalog, monkeypatch):
    """The table went through rich's 80-column default into a pipe or log: "pretrained" became "pretrai…"."""
    import radloop.ssl.finetune_bench as finetune_bench

    rows = [{"head": "finetune", "init": init, "fraction": 0.1, "train_images": 294, "auroc.fracture": 0.76,
             "region_balanced_accuracy": 0.75, "seconds": 700.0} for init in ("pretrained", "random")]
    monkeypatch.setattr(finetune_bench, "run_bench",
                        lambda *args, **kwargs: {"config": "bench.yaml", "rows": rows, "figures": {}})
    result = CliRunner().invoke(build_app(), ["bench", "finetune", "-w", str(catalog.workspace.root)])
    assert result.exit_code == 0, result.output
    assert "pretrained" in result.stdout and "…" not in result.stdout, result.stdout
