"""Two DDP processes on CPU (gloo): SimCLR and MAE pretraining, the gathered NT-Xent loss, sharded embedding.

Lightning's ``ddp`` strategy re-runs the launching command once per extra device, so the multi-process runs
go through a subprocess that runs this file as a script (``__main__`` below); a callback inside every
process records what it trained on.  Every subprocess runs in its own session with a timeout: a rank left
waiting in a collective would otherwise hang the test run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from ssl_workspace import build_workspace

TINY_SIMCLR = ["method=simclr", "model.timm_name=resnet18", "model.image_size=32", "simclr.projection_hidden_dim=32",
               "simclr.projection_dim=8", "augment.local_views=0"]
TINY_MAE = ["method=mae", "model.timm_name=vit_tiny_patch16_224", "model.image_size=32", "model.patch_size=8",
            "model.pooling=avg_tokens", "model.channels_last=false", "mae.decoder_dim=32", "mae.decoder_depth=1",
            "mae.decoder_heads=2"]
#: 2 processes x 4 images = global batches of 8: 4 steps are one epoch of the 32 images.
TWO_PROCESSES = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "data.crop_size=32",
                 "data.batch_size=4", "data.cache_size=40", "trainer.checkpoint_every_n_steps=2",
                 "trainer.enable_progress_bar=false", "trainer.num_threads=1", "trainer.loggers=[csv]",
                 "trainer.max_steps=4", "trainer.log_every_n_steps=1"]
IMAGES, STEPS, BATCH = 32, 4, 4


class _Recorder(L.Callback):
    """Runs inside every DDP process: writes ``rank-<r>.json`` with the batches this process's sampler hands
    it (image indices), the shapes going into and out of SimCLR's all-gather and its per-step losses."""

    def __init__(self, folder: str, stop_at: int | None = None) -> None:
        self.folder, self.stop_at = Path(folder), stop_at
        self.record: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        sampler = trainer.train_dataloader.batch_sampler
        self.record = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                       "batches": [[index for index, _ in batch] for batch in sampler],
                       "gathered": [], "losses": []}
        gather = pl_module._gather

        def recording_gather(projections: torch.Tensor) -> torch.Tensor:
            gathered = gather(projections)
            self.record["gathered"].append([list(projections.shape), list(gathered.shape)])
            return gathered

        pl_module._gather = recording_gather

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index: int) -> None:
        self.record["losses"].append(float(outputs["loss"]))
        if self.stop_at is not None and trainer.global_step >= self.stop_at:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank-{self.record['rank']}.json").write_text(json.dumps(self.record))


def _script_pretrain(root: str, out: str, records: str, stop_at: str, *overrides: str) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    from radloop.core.catalog import Catalog
    from radloop.core.config import load_config
    from radloop.core.workspace import resolve_workspace
    from radloop.ssl.pretrain import pretrain
    from radloop.ssl.settings import PretrainConfig

    catalog = Catalog.open(resolve_workspace(root), create=False)
    config = load_config(None, PretrainConfig, list(overrides))
    result = pretrain(catalog, config, out, callbacks=[_Recorder(records, int(stop_at) or None)])
    (Path(records) / f"result-{rank_zero_only.rank}.json").write_text(json.dumps(result.to_json()))


def _script_embed(root: str, encoder_dir: str, records: str) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoders import load_encoder

    catalog = Catalog.open(resolve_workspace(root), create=False)
    summary = embed_catalog(catalog, load_encoder(encoder_dir), batch_size=3, shard_size=4, devices=2,
                            accelerator="cpu", progress=False)
    Path(records).mkdir(parents=True, exist_ok=True)
    (Path(records) / f"summary-{rank_zero_only.rank}.json").write_text(json.dumps(summary))


def _run_script(*args: str, database_url: str | None = None, timeout: float = 240) -> None:
    """Run this file as a script (a Lightning DDP launch); kill its whole process group on timeout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if database_url:
        env["RADLOOP_DATABASE_URL"] = database_url
    process = subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the 2-process run hung (killed after {timeout} s):\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]


@pytest.fixture(scope="module")
def images_catalog(tmp_path_factory, test_catalog_url):
    """32 synthetic radiographs; one render is broken (read from disk with data.cache=false, it must not leave
    one process with a smaller batch than the other)."""
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import Workspace

    root = (tmp_path_factory.mktemp("ddp") / "ws").resolve()
    catalog = Catalog.open(Workspace(root=root, database_url=test_catalog_url(root)).ensure())
    ids = build_workspace(catalog, IMAGES)
    (catalog.workspace.renders_dir / f"{ids[5]}.png").write_bytes(b"not a png")
    yield catalog
    catalog.dispose()


def _pretrain_two_processes(catalog, out: Path, records: Path, method_settings: list[str], *extra: str,
                            stop_at: int = 0) -> tuple[dict[int, dict], dict[int, dict]]:
    _run_script("pretrain", str(catalog.workspace.root), str(out), str(records), str(stop_at),
                *TWO_PROCESSES, *method_settings, *extra, database_url=catalog.workspace.database_url)
    ranks = {r: json.loads((records / f"rank-{r}.json").read_text()) for r in range(2)}
    results = {r: json.loads((records / f"result-{r}.json").read_text()) for r in range(2)}
    return ranks, results


@pytest.fixture(scope="module")
def simclr_run(images_catalog, tmp_path_factory):
    folder = tmp_path_factory.mktemp("simclr")
    ranks, results = _pretrain_two_processes(images_catalog, folder / "run", folder / "records", TINY_SIMCLR,
                                             "data.cache=false")
    return folder / "run", ranks, results


def _metrics_rows(run_dir: Path, name: str = "metrics.csv") -> list[dict]:
    with open(run_dir / "logs" / name) as handle:
        return [row for row in csv.DictReader(handle) if row.get("train/loss")]


def test_simclr_on_two_processes_shards_the_data_and_gathers_twice_the_negatives(simclr_run):
    _run_dir, ranks, _results = simclr_run
    assert [ranks[r]["rank"] for r in range(2)] == [0, 1] and ranks[0]["world_size"] == 2
    for step in range(STEPS):
        first, second = ranks[0]["batches"][step], ranks[1]["batches"][step]
        assert len(first) == len(second) == BATCH and not set(first) & set(second), step
    # one epoch: every image exactly once over both processes
    seen = [index for r in range(2) for batch in ranks[r]["batches"][:STEPS] for index in batch]
    assert sorted(seen) == list(range(IMAGES))
    # each of the two views: (4, d) per process in, (8, d) out; the same loss on both processes
    for r in range(2):
        assert len(ranks[r]["gathered"]) == 2 * STEPS
        assert all(local == [BATCH, 8] and gathered == [2 * BATCH, 8] for local, gathered in ranks[r]["gathered"])
    np.testing.assert_allclose(ranks[0]["losses"], ranks[1]["losses"], rtol=1e-5)


def test_simclr_on_two_processes_writes_one_set_of_outputs(simclr_run, images_catalog):
    from radloop.core.schema import Model
    from radloop.ssl.encoders import load_encoder

    run_dir, ranks, results = simclr_run
    assert results[0]["steps"] == results[0]["total_steps"] == STEPS and results[0]["registered"]
    assert results[1]["steps"] == STEPS and results[1]["encoder_dir"] is None and not results[1]["registered"]
    assert results[0]["skipped"] == 1  # the broken render, found while streaming
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["last.ckpt", "step-4.ckpt"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == STEPS
    rows = _metrics_rows(run_dir)
    assert [int(row["step"]) for row in rows] == list(range(STEPS))  # one writer: no duplicated steps
    np.testing.assert_allclose([float(row["train/loss"]) for row in rows], ranks[0]["losses"], rtol=1e-5)
    bundle = load_encoder(run_dir / "encoder")
    assert bundle.version == results[0]["version"] and bundle.config.data["steps"] == STEPS
    assert (run_dir / "config.yaml").is_file()
    with images_catalog.session() as session:
        assert [row.version for row in session.query(Model).filter(Model.kind == "encoder")] == [bundle.version]


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_exactly(simclr_run, images_catalog, tmp_path):
    from radloop.ssl.encoders import load_encoder

    straight, _ranks, _results = simclr_run
    run_dir = tmp_path / "run"
    settings = [*TINY_SIMCLR, "data.cache=false"]
    ranks, results = _pretrain_two_processes(images_catalog, run_dir, tmp_path / "first", settings, stop_at=2)
    assert results[0]["steps"] == 2 and len(ranks[0]["losses"]) == 2
    ranks, results = _pretrain_two_processes(images_catalog, run_dir, tmp_path / "second", settings)
    assert results[0]["resumed_from"].endswith("last.ckpt") and results[0]["steps"] == STEPS
    assert len(ranks[0]["losses"]) == len(ranks[1]["losses"]) == STEPS - 2
    resumed, uninterrupted = load_encoder(run_dir / "encoder"), load_encoder(straight / "encoder")
    for name, tensor in uninterrupted.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert [int(row["step"]) for row in _metrics_rows(run_dir, "metrics-1.csv")] == [0, 1]
    assert [int(row["step"]) for row in _metrics_rows(run_dir)] == [2, 3]


@pytest.mark.slow
def test_mae_on_two_processes_logs_the_mean_loss_of_both(images_catalog, tmp_path):
    ranks, results = _pretrain_two_processes(images_catalog, tmp_path / "run", tmp_path / "records", TINY_MAE)
    assert results[0]["steps"] == STEPS and results[0]["registered"] and not results[1]["registered"]
    for step in range(STEPS):
        assert not set(ranks[0]["batches"][step]) & set(ranks[1]["batches"][step])
    assert ranks[0]["losses"] != ranks[1]["losses"]  # other images, other masks: each process has its own loss
    logged = [float(row["train/loss"]) for row in _metrics_rows(tmp_path / "run")]
    np.testing.assert_allclose(logged, np.mean([ranks[0]["losses"], ranks[1]["losses"]], axis=0), rtol=1e-5)


def test_embedding_on_two_processes_matches_one_process(images_catalog, tmp_path):
    from radloop.core.embeddings import load_embeddings
    from radloop.core.schema import Embedding, Image
    from radloop.ssl.encoders import embed_images, random_encoder, save_encoder

    bundle = random_encoder("test_resnet", 32)
    encoder_dir = tmp_path / "encoder"
    saved = save_encoder(bundle.model.backbone, encoder_dir, timm_name="test_resnet", image_size=32, method="random")
    _run_script("embed", str(images_catalog.workspace.root), str(encoder_dir), str(tmp_path / "records"),
                database_url=images_catalog.workspace.database_url)
    summary = json.loads((tmp_path / "records" / "summary-0.json").read_text())
    assert (tmp_path / "records" / "summary-1.json").is_file()
    with images_catalog.session() as session:
        renders = dict(session.query(Image.id, Image.render_path))
        rows = session.query(Embedding.image_id).filter(Embedding.model_version == saved.version).all()
    broken = [image_id for image_id, path in renders.items()
              if images_catalog.workspace.absolute(path).read_bytes() == b"not a png"]
    readable = sorted(set(renders) - set(broken))
    assert sorted(image_id for image_id, in rows) == readable  # every readable image once, none twice
    assert summary["embedded"] == len(readable) and summary["skipped"] == 1  # both processes counted
    stored = load_embeddings(images_catalog, saved.version)
    expected = embed_images(saved, [str(images_catalog.workspace.absolute(renders[i])) for i in stored.image_ids])
    np.testing.assert_allclose(stored.vectors, expected, atol=1e-5)


def _tiny_simclr():
    from radloop.ssl.simclr import SimCLRModel

    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16))
    # eval: batch norm uses its running statistics, the same in one process as in two
    return SimCLRModel(encoder, 16, projection_hidden_dim=32, projection_dim=8, temperature=0.2).eval()


def _simclr_views() -> list[torch.Tensor]:
    """Two views of 12 images (8 x 8): 6 per process."""
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(12, 1, 8, 8, generator=generator) for _ in range(2)]


def _gather_worker(rank: int, rendezvous: str, out: str) -> None:
    """One of two gloo processes: SimCLR on this process's half of the batch, projections all-gathered the way
    SSLPretrainer does it (Lightning's DDP all_gather), gradients averaged as DDP does."""
    from types import SimpleNamespace

    from lightning.fabric.utilities.distributed import _all_gather_ddp_if_available

    from radloop.ssl.pretrain_module import SSLPretrainer

    torch.distributed.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    model, views = _tiny_simclr(), _simclr_views()
    lightning_module = SimpleNamespace(all_gather=lambda tensor, sync_grads: _all_gather_ddp_if_available(
        tensor, sync_grads=sync_grads))
    shapes = []

    def gather(projections: torch.Tensor) -> torch.Tensor:
        gathered = SSLPretrainer._gather(lightning_module, projections)
        shapes.append(tuple(gathered.shape))
        return gathered

    half = views[0].shape[0] // 2
    loss = model([view[rank * half:(rank + 1) * half] for view in views], gather=gather)
    loss.backward()
    mean_loss = loss.detach().clone()
    torch.distributed.all_reduce(mean_loss)
    grads = {}
    for name, parameter in model.named_parameters():
        torch.distributed.all_reduce(parameter.grad)
        grads[name] = parameter.grad / 2
    if rank == 0:
        torch.save({"loss": mean_loss / 2, "grads": grads, "shapes": shapes}, out)
    torch.distributed.destroy_process_group()


def _script_gather(folder: str) -> None:
    import radloop.ssl.pretrain_module  # noqa: F401 (imported once, before the fork)

    torch.set_num_threads(1)
    torch.multiprocessing.start_processes(_gather_worker, args=(str(Path(folder) / "rendezvous"),
                                                                str(Path(folder) / "out.pt")),
                                          nprocs=2, join=True, start_method="fork")


def test_gathered_nt_xent_is_the_one_process_loss_of_the_whole_batch(tmp_path):
    """Loss and (DDP-averaged) gradients of two processes with all-gathered projections equal one process's on
    the concatenated batch: 2 x 6 images x 2 views, every anchor scored against all 23 other rows."""
    _run_script("gather", str(tmp_path), timeout=120)
    model = _tiny_simclr()
    expected = model(_simclr_views())
    expected.backward()
    got = torch.load(tmp_path / "out.pt")
    assert got["shapes"] == [(12, 8), (12, 8)]
    torch.testing.assert_close(got["loss"], expected.detach(), rtol=1e-5, atol=1e-6)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(got["grads"][name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_settings_refuse_what_cannot_run_on_several_processes():
    from radloop.core.config import ConfigError, load_config
    from radloop.ssl.finetune_config import TrainConfig
    from radloop.ssl.settings import PretrainConfig

    with pytest.raises(ConfigError, match="trainer.strategy.*use ddp"):
        load_config(None, PretrainConfig, ["trainer.strategy=ddp_spawn", "trainer.max_steps=4"])
    load_config(None, PretrainConfig, ["trainer.strategy=ddp", "trainer.devices=2", "trainer.max_steps=4"])
    job = {"name": "x", "head": "finetune"}
    for devices in (2, "auto", "0,1"):
        with pytest.raises(ValueError, match="a head trains on one device"):
            TrainConfig.model_validate({**job, "trainer": {"devices": devices}})
    for devices in (1, "1", "0,"):
        TrainConfig.model_validate({**job, "trainer": {"devices": devices}})


if __name__ == "__main__":  # a DDP launch: this process is rank 0, Lightning re-runs this command for rank 1
    {"pretrain": _script_pretrain, "embed": _script_embed, "gather": _script_gather}[sys.argv[1]](*sys.argv[2:])
