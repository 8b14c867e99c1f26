"""Walkthrough 19 (self-supervised path): what a first-time user hit with `radloop pretrain`, `reexport-encoder`
and `embed`, each checked where it went wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ssl_workspace import build_workspace

from radloop.app.cli import build_app
from radloop.core.config import load_config
from radloop.ssl.settings import PretrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: configs/ssl/mae_cpu.yaml shrunk to seconds: ViT-Tiny at 32 px in 8-px patches, 2 steps of 8.
TINY = ["model.image_size=32", "model.patch_size=8", "data.crop_size=32", "data.cache_size=40",
        "data.batch_size=8", "data.splits=null", "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2",
        "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=1", "trainer.num_threads=1",
        "trainer.enable_progress_bar=false", "trainer.loggers=[csv]"]


def _invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), terminal_width=400, env={"COLUMNS": "400"})



def test_pretrain_out_relative_to_the_current_folder_registers_the_folder_it_wrote(catalog, tmp_path, monkeypatch,
                                                                                   recwarn):
    """`--out runs/x` from a folder other than the workspace registered `<workspace>/runs/x/encoder`: the current
    encoder pointed nowhere and every later `embed` / `train` failed with "not an encoder folder"."""
    from radloop.core.registry import current_model

    build_workspace(catalog, 10)
    monkeypatch.chdir(tmp_path)
    command = ["pretrain", "-c", "configs/ssl/mae_cpu.yaml", "-w", str(catalog.workspace.root), "--out", "runs/x",
               "--json", *[part for override in TINY for part in ("--set", override)]]
    result = _invoke(*command)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["registered"] and Path(summary["encoder_dir"]) == tmp_path / "runs" / "x" / "encoder"
    record = current_model(catalog, "encoder")
    assert record.version == summary["version"]
    assert record.folder(catalog) == tmp_path / "runs" / "x" / "encoder"
    embedded = _invoke("embed", "-w", str(catalog.workspace.root), "--json")
    assert embedded.exit_code == 0, embedded.output
    assert json.loads(embedded.stdout)["embedded"] == 10

    # rerunning the finished run: no "previous log files will be deleted" (the earlier metrics.csv is moved aside)
    recwarn.clear()
    again = _invoke(*command)
    assert again.exit_code == 0, again.output
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]


def test_pretrain_interrupted_while_caching_images_does_not_promise_a_resume(catalog, tmp_path, monkeypatch):
    """Ctrl-C while the images were decoded (minutes on an archive) said "rerun the same command to resume" with
    nothing to resume from."""
    import radloop.ssl.pretrain_data as pretrain_data
    from radloop.ssl.pretrain import pretrain

    build_workspace(catalog, 10)

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_data, "read_image", interrupted)
    config = load_config(None, PretrainConfig, ["method=mae", "model.timm_name=vit_tiny_patch16_224",
                                                 "model.pooling=avg_tokens", "model.channels_last=false", *TINY])
    with pytest.raises(KeyboardInterrupt) as stopped:
        pretrain(catalog, config, tmp_path / "run", register=False)
    assert str(stopped.value) == ("pretraining interrupted while reading the images, before its first step: nothing "
                                  "was trained; rerun the same command to start")
    result = _invoke("pretrain", "-c", "configs/ssl/mae_cpu.yaml", "-w", str(catalog.workspace.root),
                     "--out", str(tmp_path / "run"), *[part for override in TINY for part in ("--set", override)])
    assert result.exit_code == 130
    assert result.output.strip() == ("error: pretraining interrupted while reading the images, before its first "
                                     "step: nothing was trained; rerun the same command to start")


def test_the_image_cache_shows_its_progress(catalog, capsys):
    """Filling the RAM cache is the long silent part of a CPU pretraining start (an archive: minutes)."""
    from radloop.ssl.pretrain_data import PixelStore, catalog_images

    build_workspace(catalog, 6)
    store = PixelStore(catalog_images(catalog), cache_size=24, threads=1, progress=True)
    assert len(store) == 6
    assert "cache images (24px)" in capsys.readouterr().err
    PixelStore(catalog_images(catalog), cache_size=24, threads=1)  # quiet by default (the API, the tests)
    assert capsys.readouterr().err == ""


def test_a_16_bit_original_no_longer_there_is_pretrained_from_its_render(catalog, tmp_path):
    """Pretraining prefers a 16-bit original to its 8-bit render; an archive unmounted since ingest made every such
    image a skipped "unreadable image" although its render is in the workspace."""
    from radloop.core.schema import Image
    from radloop.ssl.pretrain_data import PixelStore, catalog_images

    ids = build_workspace(catalog, 2)
    with catalog.session() as session:
        for image_id, source in zip(ids, (tmp_path / "gone.dcm", catalog.workspace.absolute(f"renders/{ids[1]}.png"))):
            row = session.get(Image, image_id)
            row.bits_stored, row.source_format, row.source_path = 16, "dicom", str(source)
    items = {item.image_id: item.path for item in catalog_images(catalog)}
    assert items[ids[0]] == str(catalog.workspace.absolute(f"renders/{ids[0]}.png"))
    assert items[ids[1]] == str(catalog.workspace.absolute(f"renders/{ids[1]}.png"))  # there: the original itself
    store = PixelStore(catalog_images(catalog), cache_size=16, threads=1)
    assert len(store) == 2 and not store.skipped


def test_avg_tokens_pooling_on_a_cnn_is_refused(tmp_path):
    """`reexport-encoder --pooling avg_tokens` on a ResNet exported a 2-long "embedding" (the mean over the channels
    of a 2 x 2 feature map) and `model.pooling=avg_tokens` trained SimCLR's head on it."""
    from radloop.ssl.encoders import random_encoder, reexport_encoder, save_encoder

    bundle = random_encoder("test_resnet", 64)
    folder = tmp_path / "cnn"
    save_encoder(bundle.model.backbone, folder, timm_name="test_resnet", image_size=64, method="random")
    with pytest.raises(ValueError, match="pooling 'avg_tokens' averages a ViT's patch tokens; ResNet has none"):
        reexport_encoder(folder, tmp_path / "tokens", pooling="avg_tokens")
    with pytest.raises(ValueError, match="avg_tokens"):
        random_encoder("test_resnet", 64, pooling="avg_tokens")
    result = _invoke("reexport-encoder", str(folder), "--out", str(tmp_path / "tokens2"), "--pooling", "avg_tokens")
    assert result.exit_code == 2 and result.output.startswith("error: pooling 'avg_tokens'"), result.output
    assert len(result.output.strip().splitlines()) == 1
    vit = random_encoder("vit_tiny_patch16_224", 32, patch_size=8, pooling="avg_tokens")  # what it is for
    assert vit.embed_dim == 192


def test_embedding_raw_vectors_beside_normalized_ones_is_refused(catalog, tmp_path):
    """`radloop embed --no-normalize` after a plain `radloop embed` stored the new images' raw vectors (norms in the
    tens) beside the unit-length ones under one version: searches and the rounds' distances mixed the two."""
    from radloop.core.embeddings import load_embeddings
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoders import random_encoder, save_encoder

    first = build_workspace(catalog, 4)
    bundle = random_encoder("test_resnet", 32)
    folder = tmp_path / "encoder"
    bundle = save_encoder(bundle.model.backbone, folder, timm_name="test_resnet", image_size=32, method="random")
    assert embed_catalog(catalog, bundle, progress=False, accelerator="cpu")["embedded"] == 4
    build_workspace(catalog, 2, seed=5)  # two more images arrive
    with pytest.raises(ValueError, match=f"the embeddings stored for {bundle.version} are L2-normalized: "
                                         "embedding the other images raw would mix"):
        embed_catalog(catalog, bundle, normalize=False, progress=False, accelerator="cpu")
    result = _invoke("embed", "-w", str(catalog.workspace.root), "--encoder", str(folder), "--no-normalize")
    assert result.exit_code == 2 and result.output.startswith("error: the embeddings stored for"), result.output
    assert len(result.output.strip().splitlines()) == 1
    assert embed_catalog(catalog, bundle, progress=False, accelerator="cpu")["embedded"] == 2  # the same setting
    stored = load_embeddings(catalog, bundle.version)
    assert len(stored.image_ids) == 6 and set(first) <= set(stored.image_ids)
    np.testing.assert_allclose(np.linalg.norm(stored.vectors, axis=1), 1.0, rtol=1e-3)
