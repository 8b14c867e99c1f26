"""MAE masking and losses, NT-Xent: against slow, written-out references on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from radloop.ssl.losses import mae_loss, nt_xent_loss, patchify, random_masking, unpatchify, unshuffle


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.mark.parametrize(("length", "ratio"), [(16, 0.75), (64, 0.9), (10, 0.5), (7, 0.0)])
def test_masking_keeps_exactly_the_right_number_of_patches(length, ratio):
    tokens = torch.randn(3, length, 5)
    visible, mask, ids_restore = random_masking(tokens, ratio, generator=torch.Generator().manual_seed(1))
    keep = int(length * (1 - ratio))
    assert visible.shape == (3, keep, 5)
    assert mask.shape == (3, length)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), float(length - keep)))
    for sample in range(3):  # the visible tokens are exactly the unmasked ones, in shuffled order
        unmasked = tokens[sample][mask[sample] == 0]
        assert sorted(map(tuple, unmasked.tolist())) == sorted(map(tuple, visible[sample].tolist()))


def test_unshuffle_restores_the_original_order():
    tokens = torch.arange(2 * 12, dtype=torch.float32).reshape(2, 12, 1).expand(2, 12, 4).contiguous()
    visible, mask, ids_restore = random_masking(tokens, 0.75, generator=torch.Generator().manual_seed(0))
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    masked = torch.gather(tokens, 1, ids_shuffle[:, visible.shape[1]:, None].expand(-1, -1, 4))
    restored = unshuffle(torch.cat([visible, masked], dim=1), ids_restore)
    assert torch.equal(restored, tokens)


def test_masking_is_seeded():
    tokens = torch.randn(2, 16, 3)
    first = random_masking(tokens, 0.75, generator=torch.Generator().manual_seed(5))[1]
    second = random_masking(tokens, 0.75, generator=torch.Generator().manual_seed(5))[1]
    third = random_masking(tokens, 0.75, generator=torch.Generator().manual_seed(6))[1]
    assert torch.equal(first, second) and not torch.equal(first, third)


def test_patchify_round_trip_and_layout():
    images = torch.randn(2, 1, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 16)
    assert torch.equal(patches[1, 4], images[1, 0, 4:8, 4:8].reshape(-1))  # row 1, column 1, row-major
    assert torch.equal(unpatchify(patches, 4, 8, 12), images)


def _slow_mae_loss(predictions, targets, mask, norm_pix):
    total, count = 0.0, 0
    for b in range(targets.shape[0]):
        for l in range(targets.shape[1]):
            if mask[b, l] != 1:
                continue
            target = targets[b, l].tolist()
            if norm_pix:
                mean = sum(target) / len(target)
                var = sum((t - mean) ** 2 for t in target) / (len(target) - 1)
                target = [(t - mean) / math.sqrt(var + 1e-6) for t in target]
            total += sum((p - t) ** 2 for p, t in zip(predictions[b, l].tolist(), target)) / len(target)
            count += 1
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_equals_slow_reference_on_masked_patches_only(norm_pix):
    generator = torch.Generator().manual_seed(3)
    predictions = torch.randn(2, 6, 4, generator=generator, dtype=torch.float64)
    targets = torch.randn(2, 6, 4, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 1]], dtype=torch.float64)
    expected = _slow_mae_loss(predictions, targets, mask, norm_pix)
    assert mae_loss(predictions, targets, mask, norm_pix=norm_pix).item() == pytest.approx(expected, rel=1e-5)
    # visible patches do not count: changing their predictions leaves the loss unchanged
    changed = predictions.clone()
    changed[mask == 0] += 100.0
    assert mae_loss(changed, targets, mask, norm_pix=norm_pix).item() == pytest.approx(expected, rel=1e-5)


def _slow_nt_xent(first, second, temperature, decoupled=False):
    """One anchor at a time; ``decoupled`` (DCL) leaves the positive out of the denominator."""
    views = torch.cat([first, second]).double()
    n = first.shape[0]
    def cosine(a, b):
        return float(a @ b / (a.norm() * b.norm()))
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        skipped = (i, positive) if decoupled else (i,)
        denominator = sum(math.exp(cosine(views[i], views[k]) / temperature) for k in range(2 * n) if k not in skipped)
        total += -cosine(views[i], views[positive]) / temperature + math.log(denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_equals_slow_reference(temperature):
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    expected = _slow_nt_xent(first, second, temperature)
    assert nt_xent_loss([first, second], temperature).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_decoupled_nt_xent_equals_slow_reference(temperature):
    generator = torch.Generator().manual_seed(1)
    first, second = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    expected = _slow_nt_xent(first, second, temperature, decoupled=True)
    assert nt_xent_loss([first, second], temperature, decoupled=True).item() == pytest.approx(expected, rel=1e-5)
    # the coupled loss differs: its denominator also holds the positive
    assert nt_xent_loss([first, second], temperature).item() != pytest.approx(expected, rel=1e-3)


def test_nt_xent_multi_view_averages_over_all_positives():
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(4, 6, generator=generator) for _ in range(3)]
    z = torch.nn.functional.normalize(torch.cat(views), dim=1).double()
    logits = z @ z.T / 0.2
    total = 0.0
    for i in range(12):
        others = [k for k in range(12) if k != i]
        log_denominator = torch.logsumexp(logits[i, others], dim=0)
        positives = [k for k in others if k % 4 == i % 4]
        total += -sum(float(logits[i, k] - log_denominator) for k in positives) / len(positives)
    assert nt_xent_loss(views, 0.2).item() == pytest.approx(total / 12, rel=1e-5)


def test_nt_xent_prefers_aligned_views():
    generator = torch.Generator().manual_seed(2)
    first = torch.randn(8, 16, generator=generator)
    aligned = nt_xent_loss([first, first + 0.01 * torch.randn(8, 16, generator=generator)])
    shuffled = nt_xent_loss([first, first[torch.randperm(8, generator=generator)]])
    assert aligned < shuffled


def test_nt_xent_stays_float32_under_bf16_autocast():
    """bf16-mixed training (GPU or CPU) must not run the similarity logits in bf16."""
    generator = torch.Generator().manual_seed(3)
    first, second = torch.randn(64, 128, generator=generator), torch.randn(64, 128, generator=generator)
    expected = _slow_nt_xent(first, second, 0.2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent_loss([first, second], 0.2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-5)
