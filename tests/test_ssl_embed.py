"""Embeddings at catalog scale, the encoder contract, `bench ssl`, and the CLI's bad-input paths."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ssl_workspace import FRACTURE_IMAGES, build_workspace

from radloop.core.embeddings import load_embeddings, missing_image_ids
from radloop.ssl import embed_images, load_encoder, random_encoder, save_encoder
from radloop.ssl.benchmark import benchmark_encoders, knn_precision_at_k
from radloop.ssl.embed import embed_catalog, resolve_encoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture
def encoder_dir(tmp_path):
    bundle = random_encoder("resnet18", 32, seed=1)
    return save_encoder(bundle.model.backbone, tmp_path / "encoder", timm_name="resnet18", image_size=32,
                        method="simclr", mean=[0.4], std=[0.2]).config, tmp_path / "encoder"


def test_embed_catalog_is_resumable_sharded_and_skips_unreadable(catalog, encoder_dir, caplog):
    config, folder = encoder_dir
    ids = build_workspace(catalog, 10)
    broken = catalog.workspace.absolute(f"renders/{ids[3]}.png")
    broken.write_bytes(b"\x89PNG broken")
    bundle = load_encoder(folder)
    summary = embed_catalog(catalog, bundle, batch_size=4, shard_size=4, progress=False, accelerator="cpu")
    assert summary["embedded"] == 9 and summary["skipped"] == 1 and summary["shards"] == 3
    assert ids[3] in caplog.text
    assert missing_image_ids(catalog, bundle.version) == [ids[3]]
    stored = load_embeddings(catalog, bundle.version)
    assert stored.vectors.shape == (9, 512)
    np.testing.assert_allclose(np.linalg.norm(stored.vectors, axis=1), 1.0, rtol=1e-5)
    paths = [str(catalog.workspace.absolute(f"renders/{image_id}.png")) for image_id in stored.image_ids]
    np.testing.assert_allclose(stored.vectors, embed_images(bundle, paths, device="cpu"), rtol=1e-4, atol=1e-5)
    again = embed_catalog(catalog, bundle, progress=False, accelerator="cpu")
    assert again["embedded"] == 0 and again["already_embedded"] == 9


def test_embed_fp16_and_unnormalized(catalog, encoder_dir):
    from radloop.core.schema import Embedding

    build_workspace(catalog, 5)
    bundle = load_encoder(encoder_dir[1])
    embed_catalog(catalog, bundle, fp16=True, normalize=False, progress=False, accelerator="cpu")
    with catalog.session() as session:
        rows = session.query(Embedding).all()
        assert {row.dtype for row in rows} == {"float16"} and not any(row.normalized for row in rows)


def test_resolve_encoder_by_path_or_registered_version(catalog, encoder_dir):
    from radloop.core.registry import register_model

    config, folder = encoder_dir
    assert resolve_encoder(catalog, folder).version == config.version
    register_model(catalog, config.version, kind="encoder", task="encoder", path=folder)
    assert resolve_encoder(catalog, config.version).version == config.version
    with pytest.raises(LookupError, match="neither a folder nor a registered version"):
        resolve_encoder(catalog, "enc-nope")


def test_locate_encoder_is_the_lookup_behind_resolve_encoder(catalog, encoder_dir):
    """One torch-free lookup (path, file, registered version, ``current``) serves `resolve_encoder` and the quick
    checks of `radloop embed`: a file names its folder, a registered name its recorded version."""
    from radloop.core.registry import ENCODER_CONFIG_FILE, locate_encoder, register_model, set_current

    config, folder = encoder_dir
    with pytest.raises(LookupError, match="no current encoder.*none registered"):
        locate_encoder(catalog, "current")
    assert locate_encoder(catalog, folder / ENCODER_CONFIG_FILE) == locate_encoder(catalog, folder)
    assert locate_encoder(catalog, folder).registered is None
    assert resolve_encoder(catalog, folder / ENCODER_CONFIG_FILE).version == config.version
    register_model(catalog, config.version, kind="encoder", task="encoder", path=folder)
    set_current(catalog, config.version)
    for name in (config.version, "current"):
        location = locate_encoder(catalog, name)
        assert location.folder.resolve() == Path(folder).resolve() and location.registered == config.version
        assert resolve_encoder(catalog, name).version == config.version
    with pytest.raises(LookupError, match=f"encoders: {config.version}"):
        locate_encoder(catalog, "enc-nope")
    register_model(catalog, "probe-fracture-1", kind="probe", task="findings", path=folder)
    with pytest.raises(LookupError, match="'probe-fracture-1' is a registered probe, not an encoder \\(encoders: "):
        locate_encoder(catalog, "probe-fracture-1")


def test_embed_images_accepts_arrays_of_any_depth_and_is_order_stable():
    bundle = random_encoder("vit_tiny_patch16_224", 32, patch_size=8, pooling="avg_tokens")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 30), dtype=np.uint8), rng.integers(0, 4095, (64, 64)).astype(np.uint16),
              rng.random((20, 50)).astype(np.float32)]
    vectors = embed_images(bundle, images, batch_size=2)
    assert vectors.shape == (3, 192) and vectors.dtype == np.float32
    np.testing.assert_allclose(embed_images(bundle, images[::-1], batch_size=3)[::-1], vectors, atol=1e-5)


def test_knn_precision_reference():
    database = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    labels = np.array(["a", "a", "b", "b"])
    queries = np.array([[1, 0.05], [0.05, 1]], dtype=np.float32)
    assert knn_precision_at_k(database, labels, queries, np.array(["a", "a"]), k=2) == pytest.approx(0.5)


def test_bench_ssl_reports_probe_and_knn_for_encoder_and_baselines(catalog, encoder_dir):
    from conftest import data_path

    real = data_path(*FRACTURE_IMAGES.parts)
    build_workspace(catalog, 40, real_dir=real)
    result = benchmark_encoders(catalog, [load_encoder(encoder_dir[1])], fractions=(0.5, 1.0), repeats=2,
                                progress=False)
    names = list(result["encoders"])
    assert names[0].startswith("enc-simclr") and names[1].startswith("random-resnet18-32") and \
        names[2] == "raw_pixels_64_pca128"
    for entry in result["encoders"].values():
        scores = entry["probe"]["body_region_balanced_accuracy"]
        assert set(scores) == {"0.5", "1"} and 0.0 <= scores["1"]["mean"] <= 1.0
        assert 0.0 <= entry["knn_precision_at_10"]["body_region"] <= 1.0


def test_cli_pretrain_names_unknown_config_key(tmp_path, catalog):
    from radloop.app.cli import build_app

    bad = tmp_path / "bad.yaml"
    bad.write_text("method: simclr\ndata:\n  crop_sise: 64\n")
    result = CliRunner().invoke(build_app(), ["pretrain", "--config", str(bad), "-w", str(catalog.workspace.root)])
    assert result.exit_code == 2 and "data.crop_sise" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback (on a GPU the command times ViT-B/16; "
                    "tests/test_gpu.py covers that path with tiny shapes)")
def test_cli_pretrain_throughput_runs_on_cpu():
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["bench", "pretrain-throughput", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["gpu"] is False and "no GPU" in payload["note"] and payload["runs"][0]["images_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cli_bench_ssl_device_cuda_without_gpu_fails_clearly(catalog, encoder_dir):
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["bench", "ssl", "--encoder", str(encoder_dir[1]), "--device", "cuda",
                                              "-w", str(catalog.workspace.root)])
    assert result.exit_code == 2 and "no CUDA device" in result.output


def test_cli_reexport_encoder_changes_the_embedding_settings_not_the_weights(encoder_dir, tmp_path):
    from safetensors.torch import load_file

    from radloop.app.cli import build_app

    config, folder = encoder_dir
    runner = CliRunner()
    result = runner.invoke(build_app(), ["reexport-encoder", str(folder), "--out", str(tmp_path / "flip"),
                                         "--image-size", "48", "--pooling", "multiscale", "--flip-average", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    copy = load_encoder(tmp_path / "flip")
    assert payload["version"] == copy.version != config.version and payload["embed_dim"] == 768
    assert (copy.config.image_size, copy.config.pooling, copy.config.flip_average) == (48, "multiscale", True)
    assert copy.config.mean == config.mean and copy.config.data == config.data
    source = load_file(str(folder / "encoder.safetensors"))
    copied = load_file(str(tmp_path / "flip" / "encoder.safetensors"))
    assert source.keys() == copied.keys() and all(torch.equal(source[k], copied[k]) for k in source)
    image = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    mirrored = embed_images(copy, [image, image[:, ::-1].copy()])
    np.testing.assert_allclose(mirrored[0], mirrored[1], atol=1e-5)

    again = runner.invoke(build_app(), ["reexport-encoder", str(folder), "--out", str(tmp_path / "flip")])
    assert again.exit_code == 2 and "not empty" in again.output
    bad = runner.invoke(build_app(), ["reexport-encoder", str(folder), "--out", str(tmp_path / "x"),
                                      "--pooling", "gem"])
    assert bad.exit_code == 2 and "multiscale" in bad.output and not (tmp_path / "x").exists()
    missing = runner.invoke(build_app(), ["reexport-encoder", str(tmp_path / "none"), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 2 and "encoder.json" in missing.output


def test_cli_embed_registers_an_encoder_folder_current_only_when_none_is(catalog, encoder_dir, tmp_path):
    """`radloop embed --encoder FOLDER` makes the folder known to rounds, search and training; a second encoder
    is registered without replacing the current one; plain `radloop embed` uses the current encoder."""
    from radloop.app.cli import build_app
    from radloop.core.registry import current_model, get_model

    config, folder = encoder_dir
    build_workspace(catalog, 4)
    root = str(catalog.workspace.root)
    none_yet = CliRunner().invoke(build_app(), ["embed", "--accelerator", "cpu", "-w", root])
    assert none_yet.exit_code == 2 and "no current encoder" in none_yet.output and "radloop pretrain" in none_yet.output
    first = CliRunner().invoke(build_app(), ["embed", "--encoder", str(folder), "--accelerator", "cpu", "-w", root,
                                             "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["registry"] == "registered as the current encoder"
    assert current_model(catalog, "encoder").version == config.version
    assert get_model(catalog, config.version).folder(catalog) == folder.resolve()
    other = save_encoder(random_encoder("resnet18", 32, seed=2).model.backbone, tmp_path / "other",
                         timm_name="resnet18", image_size=32, method="simclr", mean=[0.4], std=[0.2]).config
    second = CliRunner().invoke(build_app(), ["embed", "--encoder", str(tmp_path / "other"), "--accelerator", "cpu",
                                              "-w", root, "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["registry"] == "registered" and other.version != config.version
    assert current_model(catalog, "encoder").version == config.version  # the current encoder stays
    again = CliRunner().invoke(build_app(), ["embed", "--encoder", str(folder), "--accelerator", "cpu", "-w", root,
                                             "--json"])
    assert json.loads(again.stdout)["registry"] == "already registered"
    by_version = CliRunner().invoke(build_app(), ["embed", "--encoder", other.version, "--accelerator", "cpu",
                                                  "-w", root, "--json"])
    assert by_version.exit_code == 0 and "registry" not in json.loads(by_version.stdout)
    current = CliRunner().invoke(build_app(), ["embed", "--accelerator", "cpu", "-w", root, "--json"])
    assert current.exit_code == 0, current.output
    assert json.loads(current.stdout)["model_version"] == config.version


def test_cli_embed_in_an_extra_ddp_process_neither_reports_nor_registers(catalog, encoder_dir, monkeypatch):
    """Lightning's ddp (and torchrun / srun) run the command once per process: only global rank 0 speaks."""
    from lightning.pytorch.utilities import rank_zero_only

    from radloop.app.cli import build_app
    from radloop.core.registry import RegistryError, get_model

    config, folder = encoder_dir
    build_workspace(catalog, 2)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    result = CliRunner().invoke(build_app(), ["embed", "--encoder", str(folder), "--accelerator", "cpu", "-w",
                                              str(catalog.workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ""
    with pytest.raises(RegistryError, match="registry is empty"):
        get_model(catalog, config.version)


def test_embed_images_refuses_one_image_where_a_list_belongs_and_takes_generators(tmp_path):
    from radloop.ssl.encoder_adapter import embed_images as embed_with_progress
    from radloop.ssl.encoders import embed_images, random_encoder

    bundle = random_encoder("test_resnet", 32)
    image = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    for embed in (embed_images, embed_with_progress):
        for single in ("x.png", tmp_path / "x.png", image):
            with pytest.raises(TypeError, match=r"a list of images.*pass \["):
                embed(bundle, single)
    from_generator = embed_images(bundle, (array for array in [image, image[::-1].copy()]))
    np.testing.assert_allclose(from_generator, embed_images(bundle, [image, image[::-1].copy()]), atol=1e-6)


def test_a_registered_encoder_whose_folder_was_overwritten_is_refused_not_used(catalog, encoder_dir, tmp_path):
    """Version A registered for a folder that now holds version B (a rerun wrote over it): loading A by version
    (registry, `radloop embed --encoder A` / current, search's query embedding) names the overwrite instead of
    embedding with B's weights under A's name."""
    from radloop.app.cli import build_app
    from radloop.core.registry import register_model
    from radloop.ssl.encoder_adapter import encoder_from_registry
    from radloop.ssl.encoders import EncoderOverwrittenError

    config, folder = encoder_dir
    build_workspace(catalog, 2)
    register_model(catalog, config.version, kind="encoder", task="encoder", path=folder, make_current=True)
    assert encoder_from_registry(catalog, config.version).version == config.version
    newer = save_encoder(random_encoder("resnet18", 32, seed=2).model.backbone, folder, timm_name="resnet18",
                         image_size=32, method="simclr", mean=[0.4], std=[0.2]).config
    assert newer.version != config.version
    expected = f"now holds version {newer.version}, not {config.version}: it was overwritten"
    for load in (lambda: encoder_from_registry(catalog, config.version),
                 lambda: resolve_encoder(catalog, config.version), lambda: resolve_encoder(catalog, "current")):
        with pytest.raises(EncoderOverwrittenError, match=expected):
            load()
    result = CliRunner().invoke(build_app(), ["embed", "--encoder", config.version, "--accelerator", "cpu", "-w",
                                              str(catalog.workspace.root), "--json"])
    assert result.exit_code == 2 and "it was overwritten" in result.output and result.stdout.strip() == ""
    assert missing_image_ids(catalog, newer.version) and missing_image_ids(catalog, config.version)


def test_linear_probe_balanced_accuracy_on_a_split_missing_a_class_does_not_warn():
    """`radloop bench ssl` printed sklearn's "y_pred contains classes not in y_true" when the held-out images
    missed a body region the probe predicts."""
    import warnings

    from radloop.ssl.benchmark import linear_probe_scores

    rng = np.random.default_rng(0)
    train_y = np.repeat(np.array(["hand", "wrist", "ankle"]), 6)
    train_x = rng.normal(size=(18, 4)) + np.repeat(np.eye(3, 4) * 4, 6, axis=0)
    test_y = np.array(["hand", "wrist", "wrist"])
    test_x = np.array([[0, 0, 4.0, 0], [0, 4.0, 0, 0], [4.0, 0, 0, 0]])  # the last looks like an ankle
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        scores = linear_probe_scores(train_x, train_y, test_x, test_y, metric="balanced_accuracy",
                                     fractions=[1.0], repeats=1, seed=0)
    assert 0.0 <= scores["1"]["mean"] <= 1.0
