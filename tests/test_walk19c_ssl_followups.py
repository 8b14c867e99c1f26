"""Walkthrough 19, follow-ups (self-supervised and training paths): stored embedding settings kept by the probe and
reported by `radloop embed`, one-line refusals (`bench pretrain-throughput`, `reexport-encoder`), `bench finetune`'s
exit code when every job failed, `evaluate` on a calibration split, and errors after a progress bar."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from finetune_workspace import fill_fracture_catalog, register_random_encoder
from ssl_workspace import build_workspace
from test_walk19_ssl_train import _invoke, filled  # noqa: F401  (a fixture: 24 radiographs + a tiny encoder)

from radloop.app.cli import build_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def resnet_folder(tmp_path):
    """A tiny random ResNet encoder folder at 32 px."""
    from radloop.ssl.encoders import random_encoder, save_encoder

    folder = tmp_path / "resnet"
    save_encoder(random_encoder("test_resnet", 32).model.backbone, folder, timm_name="test_resnet", image_size=32,
                 method="random")
    return folder


def test_a_probe_adds_raw_vectors_to_an_encoder_embedded_raw(filled, tmp_path):
    """A probe's training embedded the images `radloop embed --no-normalize` had not reached and stored them
    L2-normalized beside the raw ones: one version held both, and `embed` refused that encoder from then on."""
    from sqlalchemy import select

    from radloop.core.embeddings import load_embeddings, write_shard
    from radloop.core.schema import Embedding
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoder_adapter import embed_images
    from radloop.ssl.encoders import load_encoder
    from radloop.ssl.finetune_data import build_labeled_set
    from radloop.ssl.finetune_jobs import embeddings_for

    version = filled.current_model("encoder").version
    bundle = load_encoder(tmp_path / "encoder")
    labeled = build_labeled_set(filled, ["fracture"], splits=["train"])
    first = labeled.image_ids[:3]  # what an earlier `radloop embed --no-normalize` stored
    write_shard(filled, version, first, embed_images(bundle, labeled.paths[:3], normalize=False), normalized=False)

    matrix = embeddings_for(filled, bundle, version, labeled, progress=False)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)  # the probe's input: unit length
    with filled.session() as session:
        settings = set(session.scalars(select(Embedding.normalized).where(Embedding.model_version == version)))
    assert settings == {False}
    stored = load_embeddings(filled, version, labeled.image_ids)
    assert sorted(stored.image_ids) == sorted(labeled.image_ids)
    assert not np.allclose(np.linalg.norm(stored.vectors, axis=1), 1.0, rtol=1e-3)  # raw, as the first ones
    order = [list(stored.image_ids).index(image_id) for image_id in labeled.image_ids]
    raw = np.asarray(stored.vectors, dtype=np.float32)[order]
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), matrix, atol=1e-5)
    # the rest of the catalog is still embedded in the stored setting
    assert embed_catalog(filled, bundle, normalize=False, progress=False, accelerator="cpu")["embedded"] > 0


def test_embed_with_nothing_to_do_reports_how_the_vectors_are_stored(catalog, resnet_folder):
    """`radloop embed` after `radloop embed --fp16 --no-normalize` said "normalized: True" (and float32): the
    flags of the run that embedded nothing, not what the version holds."""
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoders import load_encoder

    build_workspace(catalog, 3)
    workspace = str(catalog.workspace.root)
    first = _invoke("embed", "-w", workspace, "--encoder", str(resnet_folder), "--fp16", "--no-normalize", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["embedded"] == 3
    again = _invoke("embed", "-w", workspace, "--encoder", str(resnet_folder), "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["embedded"] == 0 and summary["already_embedded"] == 3
    assert summary["normalized"] is False and summary["dtype"] == "float16"
    # the same through the predict loop's path (another accelerator, extra processes)
    direct = embed_catalog(catalog, load_encoder(resnet_folder), progress=False, accelerator="cpu")
    assert direct["embedded"] == 0 and direct["normalized"] is False and direct["dtype"] == "float16"


def test_throughput_image_size_off_the_patch_grid_is_refused_in_one_line():
    """`bench pretrain-throughput --image-size 200` on a GPU died in timm ("not divisible by patch size 16") after
    building ViT-B/16; on the CPU it went unnoticed (the tiny shape ignores the sizes)."""
    from radloop.ssl.throughput import check_throughput_args

    check_throughput_args([224, 448], batch_size=256, steps=20)
    with pytest.raises(ValueError, match=r"^--image-size 200: the MAE ViT-B/16 cuts images into 16-px patches; use "
                                         r"a multiple of 16 \(e.g. 192 or 208\)$"):
        check_throughput_args([224, 200], batch_size=256, steps=20)
    for size in (0, -16, 8):
        with pytest.raises(ValueError, match=rf"^--image-size {size}: .* \(e.g. 16\)$"):
            check_throughput_args([size], batch_size=8, steps=1)
    with pytest.raises(ValueError, match="--steps 0: at least 1"):
        check_throughput_args([224], batch_size=8, steps=0)
    result = _invoke("bench", "pretrain-throughput", "--image-size", "200", "--json")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: --image-size 200: the MAE ViT-B/16 cuts images into 16-px patches; "
                                     "use a multiple of 16 (e.g. 192 or 208)")


@pytest.mark.parametrize("failed, code", [(2, 1), (1, 0)])
def test_bench_finetune_exits_1_when_every_job_failed(catalog, monkeypatch, failed, code):
    """Every job of `radloop bench finetune` failing (one class only, a missing package...) still exited 0: a
    script took the empty table for figures."""
    import radloop.ssl.finetune_bench as finetune_bench

    rows = [{"head": "probe", "init": init, "fraction": 1.0, "error": "one class only", "seconds": 0.1}
            for init in ("pretrained", "random")[:failed]]
    rows += [{"head": "probe", "init": "random", "fraction": 1.0, "train_images": 12, "auroc.fracture": 0.6,
              "seconds": 0.2}] * (2 - failed)
    monkeypatch.setattr(finetune_bench, "run_bench",
                        lambda *args, **kwargs: {"config": "bench.yaml", "rows": rows, "figures": {}})
    result = CliRunner().invoke(build_app(), ["bench", "finetune", "-w", str(catalog.workspace.root)])
    assert result.exit_code == code, result.output
    assert "pretrained" in result.stdout and "error" in result.stdout  # the table is still shown
    if code:
        assert result.stderr.strip() == "error: every bench job failed (2 of 2); first error: one class only"


def test_evaluate_on_the_calibration_split_says_calibrated_not_trained(catalog, tmp_path):
    """`radloop evaluate --split val` on a fine-tuned classifier said val's labels were "used to train" it: they
    Platt-scaled it and chose its epoch."""
    from radloop.ssl.finetune_config import TrainConfig
    from radloop.ssl.finetune_jobs import run_training

    fill_fracture_catalog(catalog, 18, seed=3, render_size=64, splits=("train", "val", "test"))
    register_random_encoder(catalog, tmp_path / "encoder")
    config = TrainConfig.model_validate({
        "name": "ft-cal", "head": "finetune", "data": {"calibration_split": "val"}, "trainer": {"num_threads": 1},
        "finetune": {"max_steps": 1, "max_epochs": 1, "batch_size": 4, "augment": False, "warmup_steps": 0,
                     "image_size": 32, "select_epoch": True}})
    version = run_training(catalog, config, progress=False).version
    result = _invoke("evaluate", "-m", version, "--split", "val", "-w", str(catalog.workspace.root))
    assert result.exit_code == 2, result.output
    assert re.fullmatch(rf"error: \d+ annotations of split 'val' \(\d+ image\(s\)\) were used to calibrate and "
                        rf"select the epoch of {version}: evaluation would leak", result.output.strip()), result.output
    train = _invoke("evaluate", "-m", version, "--split", "train", "-w", str(catalog.workspace.root))
    assert train.exit_code == 2 and f"split 'train' was used to train {version}" in train.output


def test_refused_reexport_leaves_no_empty_folder(resnet_folder, tmp_path):
    """A refused `reexport-encoder ... --out NEW` created NEW and left it empty."""
    out = tmp_path / "new" / "tokens"
    result = _invoke("reexport-encoder", str(resnet_folder), "--out", str(out), "--pooling", "avg_tokens")
    assert result.exit_code == 2 and result.output.startswith("error: pooling 'avg_tokens'"), result.output
    assert not out.exists() and not out.parent.exists()
    done = _invoke("reexport-encoder", str(resnet_folder), "--out", str(out), "--image-size", "48", "--json")
    assert done.exit_code == 0, done.output
    assert {path.name for path in out.iterdir()} == {"encoder.json", "encoder.safetensors"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_error_after_a_progress_bar_starts_on_its_own_line(monkeypatch):
    """The error of a run stopped mid-epoch was printed on the progress bar's line: "Epoch 0:  0%|...error: ..."."""
    from radloop.app.options import fail

    terminal = _Terminal()
    terminal.write("Epoch 0:   0%|          | 0/3")
    monkeypatch.setattr("sys.stderr", terminal)
    with pytest.raises(typer.Exit):
        fail("training interrupted")
    assert ANSI.sub("", terminal.getvalue()).splitlines() == ["Epoch 0:   0%|          | 0/3",
                                                             "error: training interrupted"]
    pipe = io.StringIO()  # a log or pipe: no blank line before the error
    monkeypatch.setattr("sys.stderr", pipe)
    with pytest.raises(typer.Exit):
        fail("training interrupted")
    assert pipe.getvalue() == "error: training interrupted\n"


def test_run_bench_from_another_folder_finds_the_shipped_jobs(catalog, monkeypatch, tmp_path):
    """`run_bench("configs/finetune/bench_cpu.yaml")` outside the repository loaded the shipped bench file but
    looked for its job files (`probe_cpu.yaml`, ...) under the current folder."""
    from radloop.ssl import finetune_bench, finetune_jobs

    jobs = []

    def first_job(catalog, config, **_kwargs):
        jobs.append(config.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_jobs, "run_training", first_job)
    monkeypatch.chdir(tmp_path)
    result = finetune_bench.run_bench(catalog, "configs/finetune/bench_cpu.yaml")
    assert jobs and result["interrupted"].startswith("during "), result
