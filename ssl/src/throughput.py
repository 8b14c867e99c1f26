"""``radloop bench pretrain-throughput``: MAE ViT-B/16 training images/s and peak GPU memory (bf16).

On a GPU: ``vit_base_patch16_224`` resized to each image size, mask ratio 0.75, the MAE paper's decoder
(512 wide, 8 deep), AdamW, bf16 autocast, ``steps`` timed steps after warm-up.  Without a GPU a tiny shape
runs on the CPU so that the command is exercised, and the result says that no GPU was there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from radloop.ssl.encoders import build_backbone
from radloop.ssl.mae import MaskedAutoencoder

__all__ = ["GPU_PATCH_SIZE", "check_throughput_args", "measure_mae_throughput", "pretrain_throughput"]

#: ViT-B/16's patch side (px): every measured image size is a multiple of it.
GPU_PATCH_SIZE = 16


def measure_mae_throughput(timm_name: str, image_size: int, *, patch_size: int | None, batch_size: int, steps: int,
                           device: torch.device, decoder_dim: int = 512, decoder_depth: int = 8,
                           decoder_heads: int = 16, bf16: bool = True, warmup: int = 3,
                           compile_model: bool = False) -> dict[str, Any]:
    """Time ``steps`` MAE optimizer steps on random pixels; returns images/s, step time and peak memory."""
    torch.manual_seed(0)
    encoder = build_backbone(timm_name, image_size, patch_size=patch_size)
    model = MaskedAutoencoder(encoder, decoder_dim=decoder_dim, decoder_depth=decoder_depth,
                              decoder_heads=decoder_heads).to(device)
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05,
                                  fused=device.type == "cuda")
    images = torch.randn(batch_size, 1, image_size, image_size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = step_model(images)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started
    result = {"timm_name": timm_name, "image_size": image_size, "patch_size": patch_size or 16,
              "batch_size": batch_size, "steps": steps, "bf16": bf16, "compiled": compile_model,
              "images_per_s": round(batch_size * steps / elapsed, 1), "step_ms": round(1000 * elapsed / steps, 2)}
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    return result


def check_throughput_args(image_sizes: Sequence[int], *, batch_size: int, steps: int) -> None:
    """Refuse, before any model is built, what the GPU measurement would fail on mid-run with a traceback.

    Raises:
        ValueError: no image size, an image size that is not a positive multiple of the ViT-B/16 patch (16 px),
            or a batch size or step count below 1; one line naming the option.
    """
    if not image_sizes:
        raise ValueError("--image-size: give at least one image size (e.g. 224)")
    for size in image_sizes:
        if size < GPU_PATCH_SIZE or size % GPU_PATCH_SIZE:
            below = size // GPU_PATCH_SIZE * GPU_PATCH_SIZE
            near = f"{below} or {below + GPU_PATCH_SIZE}" if size > GPU_PATCH_SIZE else str(GPU_PATCH_SIZE)
            raise ValueError(f"--image-size {size}: the MAE ViT-B/16 cuts images into {GPU_PATCH_SIZE}-px patches; "
                             f"use a multiple of {GPU_PATCH_SIZE} (e.g. {near})")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: at least 1")
    if steps < 1:
        raise ValueError(f"--steps {steps}: at least 1")


def pretrain_throughput(image_sizes: Sequence[int] = (224, 448), *, batch_size: int = 256, steps: int = 20,
                        compile_model: bool = False) -> dict[str, Any]:
    """MAE ViT-B/16 throughput at each image size on the GPU, or a tiny CPU shape when there is none.

    Raises:
        ValueError: arguments :func:`check_throughput_args` refuses (checked on the CPU too).
    """
    check_throughput_args(image_sizes, batch_size=batch_size, steps=steps)
    if torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        runs = []
        for size in image_sizes:
            # 448 px has 4x the tokens: keep the per-step memory comparable.
            size_batch = max(1, batch_size * (224 * 224) // (size * size)) if size > 224 else batch_size
            runs.append(measure_mae_throughput("vit_base_patch16_224", size, patch_size=GPU_PATCH_SIZE,
                                               batch_size=size_batch, steps=steps, device=device,
                                               compile_model=compile_model))
        return {"device": torch.cuda.get_device_name(device), "gpu": True, "runs": runs,
                "goal_images_per_s_224": 3000}
    device = torch.device("cpu")
    run = measure_mae_throughput("vit_tiny_patch16_224", 32, patch_size=8, batch_size=8, steps=2, device=device,
                                 decoder_dim=64, decoder_depth=1, decoder_heads=2, bf16=False, warmup=1)
    return {"device": "cpu", "gpu": False,
            "note": "no GPU: ran a tiny MAE (ViT-Tiny, 32 px, patch 8, batch 8) on the CPU to exercise the "
                    "command; run it on a GPU for the ViT-B/16 224/448 figures",
            "runs": [run]}
