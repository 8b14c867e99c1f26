"""GPU paths with tiny shapes: skipped without CUDA (the CPU suite covers the same code on the CPU).

The full-size GPU runs are CLI commands (`radloop bench pretrain-throughput`, `radloop pretrain` with
`configs/ssl/*_gpu.yaml`, `radloop bench finetune --config configs/finetune/bench_gpu.yaml`); README gives
what they measured on an H200.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_mae_bf16_steps_lower_the_loss_on_the_gpu():
    from radloop.ssl.encoders import build_backbone
    from radloop.ssl.mae import MaskedAutoencoder

    torch.manual_seed(0)
    model = MaskedAutoencoder(build_backbone("vit_tiny_patch16_224", 32, patch_size=8), decoder_dim=32,
                              decoder_depth=1, decoder_heads=2).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    images = torch.rand(8, 1, 32, 32, device="cuda")
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=torch.bfloat16):  # same mask every step (CPU-seeded noise)
            loss, _, _ = model(images, generator=torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_pretrain_throughput_reports_the_gpu():
    from radloop.ssl.throughput import measure_mae_throughput

    result = measure_mae_throughput("vit_tiny_patch16_224", 32, patch_size=8, batch_size=4, steps=2,
                                    device=torch.device("cuda"), decoder_dim=32, decoder_depth=1, decoder_heads=2)
    assert result["images_per_s"] > 0 and result["peak_memory_gib"] > 0


def test_classifier_predictor_runs_on_the_gpu_after_training_returned_it_on_the_cpu():
    import timm

    from radloop.ssl.finetune import ClassifierPredictor, FindingsClassifier

    backbone = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=0)
    net = FindingsClassifier(backbone, n_findings=1, n_regions=3)
    predictor = ClassifierPredictor(net, {"findings": ["fracture"], "regions": ["a", "b", "c"]}, "v")
    probabilities, regions = predictor.predict_arrays(torch.rand(2, 1, 64, 64))
    assert next(net.parameters()).is_cuda
    assert probabilities.shape == (2, 1) and regions.shape == (2, 3)
