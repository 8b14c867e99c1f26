"""Pretraining: loss goes down, exact resume, export/load round-trip, unreadable images, strict configs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_helpers import StopAtStep
from ssl_workspace import build_workspace

from radloop.core.config import ConfigError, load_config
from radloop.ssl import embed_images, load_encoder
from radloop.ssl.encoders import PooledEncoder, build_backbone
from radloop.ssl.mae import MaskedAutoencoder
from radloop.ssl.pretrain import pretrain
from radloop.ssl.pretrain_data import CatalogImage, PixelStore, StepBatchSampler, catalog_images
from radloop.ssl.settings import PretrainConfig
from radloop.ssl.simclr import SimCLRModel

TINY = {
    "simclr": ["method=simclr", "model.timm_name=resnet18", "model.image_size=32", "simclr.projection_hidden_dim=64",
               "simclr.projection_dim=16", "augment.local_views=2", "augment.local_crop_size=16"],
    "mae": ["method=mae", "model.timm_name=vit_tiny_patch16_224", "model.image_size=32", "model.patch_size=8",
            "model.pooling=avg_tokens", "model.channels_last=false", "mae.decoder_dim=32", "mae.decoder_depth=1",
            "mae.decoder_heads=2"],
}
COMMON = ["data.crop_size=32", "data.batch_size=8", "data.cache_size=40", "trainer.checkpoint_every_n_steps=2",
          "trainer.enable_progress_bar=false", "trainer.num_threads=1", "trainer.loggers=[csv]", "trainer.max_steps=5",
          "trainer.log_every_n_steps=1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(method: str, *extra: str) -> PretrainConfig:
    return load_config(None, PretrainConfig, COMMON + TINY[method] + list(extra))


def test_a_few_optimizer_steps_lower_the_mae_loss():
    torch.manual_seed(0)
    model = MaskedAutoencoder(build_backbone("vit_tiny_patch16_224", 32, patch_size=8), decoder_dim=32,
                              decoder_depth=1, decoder_heads=2)
    images = torch.rand(4, 1, 32, 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss, predictions, mask = model(images, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert predictions.shape == (4, 16, 64) and mask.sum().item() == 4 * 12
    assert losses[-1] < 0.8 * losses[0]


def test_a_few_optimizer_steps_lower_the_simclr_loss():
    torch.manual_seed(0)
    model = SimCLRModel(PooledEncoder(build_backbone("resnet18", 32)), 512, projection_hidden_dim=64,
                        projection_dim=16)
    first, second = torch.rand(8, 1, 32, 32), torch.rand(8, 1, 32, 32)
    views = [first, first + 0.05 * second]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model(views)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_decoupled_config_reaches_the_simclr_loss():
    from radloop.ssl.losses import nt_xent_loss
    from radloop.ssl.pretrain_module import SSLPretrainer

    torch.manual_seed(0)
    module = SSLPretrainer(_config("simclr", "simclr.decoupled=true", "augment.local_views=0"), total_steps=5)
    assert module.method.decoupled is True and module.method.temperature == 0.2
    module.method.eval()
    views = [torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)]
    with torch.no_grad():
        projections = [module.method.project(view) for view in views]
        expected = nt_xent_loss(projections, 0.2, decoupled=True)
        assert module.method(views).item() == pytest.approx(expected.item(), rel=1e-5)
        assert module.method(views).item() != pytest.approx(nt_xent_loss(projections, 0.2).item(), rel=1e-3)


def test_multiscale_pooling_concatenates_the_last_two_stages():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", 64).eval()
    captured = {}
    backbone.layer3.register_forward_hook(lambda module, inputs, output: captured.__setitem__("layer3", output))
    images = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        pooled = PooledEncoder(backbone, "multiscale")(images)
        reference = torch.cat([captured["layer3"].mean(dim=(2, 3)), backbone(images)], dim=1)
    assert pooled.shape == (3, 256 + 512)
    torch.testing.assert_close(pooled, reference)
    vit = build_backbone("vit_tiny_patch16_224", 32, patch_size=8).eval()
    with torch.no_grad():
        assert PooledEncoder(vit, "multiscale")(torch.rand(2, 1, 32, 32)).shape == (2, 2 * 192)
    with pytest.raises(ValueError, match="forward_intermediates"):
        PooledEncoder(torch.nn.Linear(4, 4), "multiscale")


def test_flip_average_embeds_an_image_and_its_mirror_alike():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", 64).eval()
    images = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        plain = PooledEncoder(backbone, "multiscale")
        averaged = PooledEncoder(backbone, "multiscale", flip_average=True)
        torch.testing.assert_close(averaged(images), (plain(images) + plain(images.flip(-1))) / 2)
        torch.testing.assert_close(averaged(images.flip(-1)), averaged(images))
        assert not torch.allclose(plain(images.flip(-1)), plain(images), atol=1e-4)
        vit = build_backbone("vit_tiny_patch16_224", 32, patch_size=8).eval()
        tokens = PooledEncoder(vit, "avg_tokens", flip_average=True)
        small = torch.rand(2, 1, 32, 32)
        torch.testing.assert_close(tokens(small.flip(-1)), tokens(small), atol=1e-5, rtol=1e-4)


def test_encoder_version_follows_the_weights_and_the_embedding_settings(tmp_path):
    from radloop.ssl.encoders import save_encoder

    torch.manual_seed(0)
    backbone = build_backbone("resnet18", 32)
    versions = {name: save_encoder(backbone, tmp_path / name, timm_name="resnet18", method="simclr", **kwargs).version
                for name, kwargs in {"a": {"image_size": 32}, "again": {"image_size": 32},
                                     "bigger": {"image_size": 48},
                                     "multiscale": {"image_size": 32, "pooling": "multiscale"},
                                     "flip": {"image_size": 32, "flip_average": True}}.items()}
    assert versions["a"] == versions["again"]
    assert len({versions["a"], versions["bigger"], versions["multiscale"], versions["flip"]}) == 4
    assert load_encoder(tmp_path / "flip").config.flip_average and not load_encoder(tmp_path / "a").config.flip_average


def test_export_pooling_changes_the_embedding_not_the_training(catalog, tmp_path):
    from radloop.ssl.pretrain_module import SSLPretrainer

    config = _config("simclr", "model.export_pooling=multiscale", "augment.local_views=0")
    assert SSLPretrainer(config, total_steps=5).method.encoder.pooling == "default"
    build_workspace(catalog, 16)
    result = pretrain(catalog, _config("simclr", "trainer.max_steps=2", "model.export_pooling=multiscale",
                                       "model.export_flip_average=true"), tmp_path / "run")
    bundle = load_encoder(result.encoder_dir)
    assert bundle.config.pooling == "multiscale" and bundle.config.embed_dim == 768 and bundle.config.flip_average
    image = torch.rand(50, 40).numpy()
    vectors = embed_images(bundle, [image, image[:, ::-1].copy()])
    assert vectors.shape == (2, 768)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)


def test_step_sampler_is_a_function_of_the_step_and_splits_ranks():
    full = list(StepBatchSampler(20, 4, 12, seed=3))
    resumed = list(StepBatchSampler(20, 4, 12, seed=3, start_batch=7))
    assert resumed == full[7:] and len(StepBatchSampler(20, 4, 12, start_batch=7)) == 12
    assert sorted(i for batch in full[:5] for i, _ in batch) == list(range(20))  # one epoch = a permutation
    ranks = [list(StepBatchSampler(20, 2, 6, seed=3, rank=r, world_size=2)) for r in range(2)]
    for step in range(6):
        both = sorted(ranks[0][step] + ranks[1][step])
        assert len(both) == 4 and len({i for i, _ in both}) == 4


@pytest.mark.parametrize("method", [pytest.param("simclr", marks=pytest.mark.slow), "mae"])
def test_resume_from_checkpoint_is_exact(catalog, tmp_path, method):
    """Bit-identical weights after an interruption; on a CUDA machine this runs on the GPU, where it needs
    deterministic kernels (``trainer.deterministic``)."""
    build_workspace(catalog, 16)
    config = _config(method, "trainer.deterministic=true")
    straight = pretrain(catalog, config, tmp_path / "straight", register=False)
    interrupted = pretrain(catalog, config, tmp_path / "resumed", register=False, callbacks=[StopAtStep(2)])
    assert interrupted.steps == 2
    resumed = pretrain(catalog, config, tmp_path / "resumed", register=False)
    assert resumed.resumed_from and resumed.resumed_from.endswith("last.ckpt")
    assert straight.steps == resumed.steps == 5
    first, second = load_encoder(straight.encoder_dir), load_encoder(resumed.encoder_dir)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    assert first.version == second.version
    assert (tmp_path / "straight" / "logs" / "metrics.csv").is_file()
    # the interrupted part's metrics are kept beside the resumed part's (Lightning would delete them)
    earlier = (tmp_path / "resumed" / "logs" / "metrics-1.csv").read_text()
    assert "train/loss" in earlier and (tmp_path / "resumed" / "logs" / "metrics.csv").is_file()



def test_a_resumed_run_shows_the_epoch_total_on_its_progress_bar(catalog, tmp_path):
    """Lightning skips on_train_epoch_start when it resumes mid-epoch: the bar had no total (no ETA), no epoch
    and counted the restored steps as done at once; now it starts at the restored step and counts to the end."""
    from lightning.pytorch.callbacks import Callback

    class Bars(Callback):
        def __init__(self) -> None:
            self.rows: list = []

        def on_train_batch_end(self, trainer, *_args) -> None:
            bar = trainer.progress_bar_callback.train_progress_bar
            self.rows.append((trainer.global_step, bar.initial, bar.total, bar.desc))

    build_workspace(catalog, 16)
    config = _config("mae", "trainer.enable_progress_bar=true", "trainer.max_steps=6")
    first, resumed = Bars(), Bars()
    pretrain(catalog, config, tmp_path / "run", register=False, callbacks=[StopAtStep(3), first])
    result = pretrain(catalog, config, tmp_path / "run", register=False, callbacks=[resumed])
    assert result.resumed_from and result.steps == 6
    assert {row[2] for row in first.rows + resumed.rows} == {6}
    assert all(row[3].startswith("Epoch 0") for row in first.rows + resumed.rows)
    restored = resumed.rows[0][0] - 1  # the checkpoint's step (checkpoint_every_n_steps=2: step 2)
    assert restored == 2 and {row[1] for row in resumed.rows} == {restored}


def test_resume_refuses_what_it_cannot_do(catalog, tmp_path):
    """A finished run cannot be extended (its schedule has ended), a checkpoint of other settings cannot be
    resumed, a file that is not a checkpoint is named: clear errors instead of a traceback or a silent no-op."""
    build_workspace(catalog, 16)
    run = tmp_path / "run"
    done = pretrain(catalog, _config("simclr", "trainer.max_steps=3"), run, register=False)
    assert done.steps == 3
    with pytest.raises(ValueError, match="finished its 3-step schedule.*model.init_from="):
        pretrain(catalog, _config("simclr", "trainer.max_steps=6"), run, register=False)
    with pytest.raises(ValueError, match=r"other settings \(simclr.projection_dim\)"):
        pretrain(catalog, _config("simclr", "trainer.max_steps=3", "simclr.projection_dim=8"), run, register=False)
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(ValueError, match="not a radloop pretraining checkpoint"):
        pretrain(catalog, _config("simclr", "trainer.max_steps=3"), tmp_path / "other", register=False,
                 resume=str(not_a_checkpoint))
    again = pretrain(catalog, _config("simclr", "trainer.max_steps=3", "model.export_pooling=multiscale"), run,
                     register=False)  # export settings may change: same schedule, re-exported
    assert again.steps == 3


def test_gpu_settings_on_a_machine_without_one_fail_first(catalog, tmp_path):
    from radloop.ssl.pretrain import require_accelerator

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        pretrain(catalog, _config("simclr", "trainer.accelerator=gpu"), tmp_path / "run", register=False)
    assert not (tmp_path / "run").exists()  # refused before any folder or decoding
    with pytest.raises(ValueError, match="unknown accelerator 'foo'"):
        require_accelerator("foo")
    require_accelerator("cpu")


def test_export_load_round_trip_and_registration(catalog, tmp_path):
    from radloop.core.schema import Model

    build_workspace(catalog, 16)
    result = pretrain(catalog, _config("simclr", "trainer.max_steps=2"), tmp_path / "run")
    bundle = load_encoder(result.encoder_dir)
    assert bundle.version == result.version and bundle.version.startswith("enc-simclr-resnet18-")
    assert bundle.config.in_chans == 1 and bundle.config.image_size == 32 and bundle.config.embed_dim == 512
    assert bundle.config.data["images"] == 16 and len(bundle.config.mean) == 1
    assert (tmp_path / "run" / "encoder" / "config.yaml").is_file()
    images = [torch.rand(50, 40).numpy(), (torch.rand(20, 30) * 255).to(torch.uint8).numpy()]
    again = load_encoder(tmp_path / "run" / "encoder" / "encoder.json")
    assert (embed_images(bundle, images) == embed_images(again, images)).all()
    with catalog.session() as session:
        row = session.get(Model, bundle.version)
        assert row.kind == "encoder" and row.task == "encoder" and row.is_current


def test_unreadable_image_is_skipped_with_a_logged_reason(catalog, tmp_path, caplog):
    ids = build_workspace(catalog, 17)
    items = catalog_images(catalog)
    broken = next(item for item in items if item.image_id == ids[0])
    with open(broken.path, "wb") as handle:
        handle.write(b"not a png")
    with caplog.at_level(logging.WARNING):
        store = PixelStore(items, cache_size=32)
        streamed = PixelStore([CatalogImage("I-missing", str(tmp_path / "nope.png"))], cache_size=32, cache=False)
        assert streamed.pixels(0) is None
    assert len(store) == 16 and ids[0] in store.skipped and "I-missing" in streamed.skipped
    assert ids[0] in caplog.text and "not a png" not in caplog.text or ids[0] in caplog.text
    result = pretrain(catalog, _config("mae", "trainer.max_steps=2"), tmp_path / "run", register=False)
    assert result.images == 16 and ids[0] in result.skipped and result.steps == 2


def test_unknown_config_key_fails_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: mae\ntrainer:\n  max_step: 10\n")
    with pytest.raises(ConfigError, match="trainer.max_step"):
        load_config(bad, PretrainConfig)
    with pytest.raises(ConfigError, match="augment.flip"):
        load_config(None, PretrainConfig, ["augment.flip=true"])
    with pytest.raises(ConfigError, match="data.splits.0: Input should be 'train', 'val' or 'test'"):
        load_config(None, PretrainConfig, ["data.splits=[tarin]"])  # a typo, not "ingest images first"


def test_shipped_config_paths_work_outside_the_repository(tmp_path, monkeypatch):
    """`--config configs/ssl/simclr_cpu.yaml` (as the README writes it) works from any folder; a missing
    config names where the shipped ones are."""
    monkeypatch.chdir(tmp_path)
    for name in ("configs/ssl/simclr_cpu.yaml", "ssl/simclr_cpu.yaml"):
        assert load_config(name, PretrainConfig).method == "simclr"
    (tmp_path / "configs" / "ssl").mkdir(parents=True)
    (tmp_path / "configs" / "ssl" / "simclr_cpu.yaml").write_text("method: mae\n")
    assert load_config("configs/ssl/simclr_cpu.yaml", PretrainConfig).method == "mae"  # a local file wins
    with pytest.raises(ConfigError, match="radloop's own configs are in .*configs"):
        load_config("configs/ssl/nope.yaml", PretrainConfig)


def test_shipped_configs_validate():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "configs" / "ssl"
    names = sorted(path.name for path in folder.glob("*.yaml"))
    assert {"simclr_cpu.yaml", "mae_cpu.yaml", "mae_vitb16_224_gpu.yaml", "mae_vitb16_448_gpu.yaml",
            "simclr_resnet50_gpu.yaml"} <= set(names)
    for name in names:
        load_config(folder / name, PretrainConfig)


def test_warm_start_loads_an_encoder_or_a_checkpoint(catalog, tmp_path):
    from radloop.ssl.pretrain import _warm_start
    from radloop.ssl.pretrain_module import SSLPretrainer

    build_workspace(catalog, 16)
    first = pretrain(catalog, _config("simclr", "trainer.max_steps=2"), tmp_path / "first", register=False)
    trained = load_encoder(first.encoder_dir).model.backbone.state_dict()
    for source in (first.encoder_dir, tmp_path / "first" / "checkpoints" / "last.ckpt"):
        module = SSLPretrainer(_config("simclr"), total_steps=5)
        _warm_start(module, Path(source))
        for name, tensor in module.backbone.state_dict().items():
            assert torch.equal(tensor, trained[name]), name
    with pytest.raises(ValueError, match="neither a checkpoint nor an encoder folder"):
        _warm_start(SSLPretrainer(_config("simclr"), total_steps=5), tmp_path / "missing")


def test_cli_pretrain_json_stdout_is_json_with_the_progress_bar_on(catalog, tmp_path):
    """The training progress bar goes to stderr: `radloop pretrain --json` prints only JSON on stdout."""
    import json

    import yaml
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    build_workspace(catalog, 16)
    settings = [s for s in COMMON + TINY["simclr"] if not s.startswith("trainer.enable_progress_bar")]
    config = load_config(None, PretrainConfig, settings + ["trainer.max_steps=2", "trainer.loggers=[]"])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    result = CliRunner().invoke(build_app(), ["pretrain", "--config", str(path), "--out", str(tmp_path / "run"),
                                              "-w", str(catalog.workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    assert config.trainer.enable_progress_bar and json.loads(result.stdout)["steps"] == 2


def test_sync_batchnorm_reaches_the_trainer(catalog, tmp_path, monkeypatch):
    """SimCLR's projection head normalises the global batch on several GPUs (SyncBatchNorm needs CUDA, so the
    setting is checked where it enters Lightning; the GPU SimCLR configs turn it on)."""
    import lightning

    from radloop.core.config import load_config as load

    build_workspace(catalog, 8)
    seen = {}

    class Stop(Exception):
        pass

    def fake_trainer(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(lightning, "Trainer", fake_trainer)
    for value in (True, False):
        with pytest.raises(Stop):
            pretrain(catalog, _config("simclr", f"trainer.sync_batchnorm={str(value).lower()}"), tmp_path / "run",
                     register=False)
        assert seen["sync_batchnorm"] is value
    folder = Path(__file__).resolve().parents[1] / "configs" / "ssl"
    for name in ("simclr_resnet18_224_gpu.yaml", "simclr_resnet50_gpu.yaml"):
        assert load(folder / name, PretrainConfig).trainer.sync_batchnorm is True


def test_a_rerun_never_overwrites_a_registered_encoder(catalog, tmp_path):
    """`--no-resume` (or another checkpoint) into a run folder whose encoder is registered is refused before
    training; resuming the same finished run exports the same version again; a resumed run that exports another
    version (stopped early, then trained on; here: other export settings) moves its earlier export aside to
    ``encoder-<version>`` and re-points the registry, so both versions load with their own weights; a checkpoint
    exports into a new folder."""
    from radloop.core.registry import get_model

    build_workspace(catalog, 16)
    run = tmp_path / "run"
    first = pretrain(catalog, _config("simclr", "trainer.max_steps=2"), run)
    assert first.registered
    weights = (run / "encoder" / "encoder.safetensors").read_bytes()
    with pytest.raises(ValueError, match=rf"holds encoder {first.version}, registered .*--out NEW_FOLDER"):
        pretrain(catalog, _config("simclr", "trainer.max_steps=2", "seed=7"), run, resume=False)
    assert not (run / "logs" / "metrics-1.csv").exists()  # refused before training
    same = pretrain(catalog, _config("simclr", "trainer.max_steps=2"), run)  # resuming the finished run
    assert same.version == first.version
    other = pretrain(catalog, _config("simclr", "trainer.max_steps=2", "model.export_pooling=multiscale"), run)
    assert other.version != first.version
    kept = run / f"encoder-{first.version}"
    assert (kept / "encoder.safetensors").read_bytes() == weights
    assert get_model(catalog, first.version).folder(catalog) == kept.resolve()
    assert get_model(catalog, other.version).folder(catalog) == (run / "encoder").resolve()
    assert load_encoder(kept).version == first.version and load_encoder(run / "encoder").version == other.version
    moved = pretrain(catalog, _config("simclr", "trainer.max_steps=2", "model.export_flip_average=true"),
                     tmp_path / "new", resume=str(run / "checkpoints" / "last.ckpt"))
    assert moved.version not in (first.version, other.version) and moved.steps == 2
    assert get_model(catalog, moved.version).folder(catalog) == (tmp_path / "new" / "encoder").resolve()
