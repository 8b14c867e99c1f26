"""The DDP process group Lightning leaves alive is destroyed at exit (a live gloo group can abort the process
after its work is done: exit -6, "terminate called without an active exception")."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from ssl_workspace import build_workspace

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_process_group_is_destroyed_when_the_interpreter_exits(tmp_path):
    script = textwrap.dedent(f"""
        import atexit
        import torch.distributed as dist
        # registered first, so it runs last: after radloop's hook
        atexit.register(lambda: print("at exit, group alive:", dist.is_initialized()))
        from radloop.ssl.distributed import destroy_process_group_at_exit
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
        destroy_process_group_at_exit()
        destroy_process_group_at_exit()  # registered once
        print("before exit, group alive:", dist.is_initialized())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["before exit, group alive: True", "at exit, group alive: False"]


def test_pretraining_and_embedding_register_it(catalog, tmp_path, monkeypatch):
    from radloop.core.config import load_config
    from radloop.ssl import distributed
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoders import load_encoder
    from radloop.ssl.pretrain import pretrain
    from radloop.ssl.settings import PretrainConfig

    calls = []
    monkeypatch.setattr(distributed, "destroy_process_group_at_exit", lambda: calls.append("registered"))
    build_workspace(catalog, 8)
    config = load_config(None, PretrainConfig, [
        "method=simclr", "model.timm_name=test_resnet", "model.image_size=32", "simclr.projection_hidden_dim=32",
        "simclr.projection_dim=8", "data.crop_size=32", "data.batch_size=4", "data.cache_size=40",
        "trainer.max_steps=1", "trainer.enable_progress_bar=false", "trainer.num_threads=1", "trainer.loggers=[]"])
    result = pretrain(catalog, config, tmp_path / "run", register=False)
    assert calls == ["registered"]
    embed_catalog(catalog, load_encoder(result.encoder_dir), batch_size=4, progress=False, accelerator="cpu")
    assert calls == ["registered", "registered"]
