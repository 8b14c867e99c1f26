"""Walkthrough 21g (config sanity): pretraining configs that cannot run are refused when they are read, naming the
setting, not after the archive's images were cached (minutes) by a traceback from timm or the MAE on every rank."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from radloop.app.cli import build_app
from radloop.core.config import ConfigError, load_config
from radloop.ssl.settings import PretrainConfig

VIT_MAE = ["method=mae", "model.timm_name=vit_tiny_patch16_224", "model.pooling=avg_tokens",
           "model.channels_last=false", "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2",
           "trainer.max_steps=2"]
VIT_SIMCLR = ["method=simclr", "model.timm_name=vit_tiny_patch16_224", "model.pooling=avg_tokens",
              "model.channels_last=false", "model.patch_size=8", "model.image_size=64", "augment.local_views=0",
              "trainer.max_steps=2"]


def _refusal(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as refused:
        load_config(None, PretrainConfig, overrides)
    return " ".join(str(refused.value).split())


@pytest.mark.parametrize(("sizes", "expected"), [
    (["model.image_size=60", "data.crop_size=60", "model.patch_size=8"],
     "model.image_size 60, data.crop_size 60 not divisible by the ViT patch size 8 (model.patch_size)"),
    (["model.image_size=72", "data.crop_size=72"],  # no patch_size: the 16 of the timm name
     "model.image_size 72, data.crop_size 72 not divisible by the ViT patch size 16 (vit_tiny_patch16_224)"),
])
def test_a_vit_size_not_divisible_by_the_patch_size_is_refused_at_load(sizes, expected):
    """Before: accepted, then "image 60x60 is not divisible by patch size 8" from the MAE's first step."""
    assert expected in _refusal([*VIT_MAE, *sizes])
    load_config(None, PretrainConfig, [*VIT_MAE, "model.image_size=64", "data.crop_size=64", "model.patch_size=8"])


def test_a_vit_trained_at_another_size_than_it_is_built_for_is_refused_at_load():
    """SimCLR on a ViT: crops of 48 px into a ViT built for 64 px failed inside timm ("Input height (48) doesn't
    match model (64)", an AssertionError) at the first step; local crops likewise."""
    message = _refusal([*VIT_SIMCLR, "data.crop_size=48"])
    assert "a ViT trains at model.image_size 64 only: data.crop_size 48 differ" in message
    assert "model.kwargs.dynamic_img_size=true" in message
    message = _refusal([*VIT_SIMCLR, "data.crop_size=64", "augment.local_views=2", "augment.local_crop_size=32"])
    assert "augment.local_crop_size 32 differ" in message
    load_config(None, PretrainConfig, [*VIT_SIMCLR, "data.crop_size=64"])
    load_config(None, PretrainConfig, [*VIT_SIMCLR, "data.crop_size=48", "model.kwargs={dynamic_img_size: true}"])
    # a CNN embeds at another size than it trains at (FixRes): still accepted
    load_config(None, PretrainConfig, ["method=simclr", "model.timm_name=resnet18", "model.image_size=80",
                                       "data.crop_size=64", "trainer.max_steps=2"])


def test_an_mae_decoder_width_not_divisible_by_its_heads_is_refused_at_load():
    """Before: "dim should be divisible by num_heads" (an AssertionError from timm's Block) after caching."""
    message = _refusal([*VIT_MAE, "model.image_size=64", "data.crop_size=64", "model.patch_size=8",
                        "mae.decoder_dim=30", "mae.decoder_heads=4"])
    assert "mae.decoder_dim 30 is not divisible by mae.decoder_heads 4" in message


@pytest.mark.parametrize("ratio", ["1.0", "-0.1", "1.5"])
def test_an_mae_mask_ratio_out_of_range_is_refused_at_load(ratio):
    assert "mae.mask_ratio" in _refusal([*VIT_MAE, "model.image_size=64", "data.crop_size=64",
                                          "model.patch_size=8", f"mae.mask_ratio={ratio}"])


def test_every_ssl_config_file_loads():
    for path in sorted(Path("configs/ssl").glob("*.yaml")):
        load_config(path, PretrainConfig, [])


def test_a_gpu_config_on_a_machine_without_a_gpu_is_refused_before_anything_is_written(catalog, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run_dir = tmp_path / "run"
    for config in sorted(Path("configs/ssl").glob("*_gpu.yaml")):
        result = CliRunner().invoke(build_app(), ["pretrain", "-c", str(config), "-w", str(catalog.workspace.root),
                                                  "--out", str(run_dir)], terminal_width=400,
                                    env={"COLUMNS": "400"})
        assert result.exit_code == 2, (config, result.output)
        message = " ".join(result.output.split())
        assert "accelerator 'gpu' but no CUDA GPU is visible on this machine" in message, (config, message)
        assert "--set trainer.accelerator=cpu" in message
        assert not run_dir.exists()
