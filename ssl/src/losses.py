"""Self-supervised losses and the MAE patch/mask helpers (pure tensor functions, no state).

- NT-Xent: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations" (SimCLR,
  ICML 2020), generalised to V >= 2 views per image (every other view of the same image is a positive, as in
  multi-crop / SupCon); with V = 2 it is exactly SimCLR's loss.  ``decoupled=True`` is the decoupled
  contrastive loss (DCL: Yeh et al., "Decoupled Contrastive Learning", ECCV 2022): the positives leave the
  softmax denominator, which removes the negative-positive coupling that slows learning at small batch sizes.
- MAE: He et al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022): random masking by
  argsort of uniform noise, loss on per-patch normalized pixels of the masked patches only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mae_loss", "nt_xent_loss", "patchify", "random_masking", "unpatchify", "unshuffle"]


def nt_xent_loss(views: list[torch.Tensor] | torch.Tensor, temperature: float = 0.2, *,
                 decoupled: bool = False) -> torch.Tensor:
    """Normalized-temperature cross entropy over V views of N images.

    Args:
        views: V tensors of shape (N, d) (or one (V, N, d) tensor); row i of every view is image i.
        temperature: softmax temperature tau.
        decoupled: leave the positives out of the denominator (DCL): each positive is scored against the
            V*(N-1) negatives only, ``-s_p / tau + logsumexp_negatives(s / tau)``.

    Returns:
        Scalar loss: mean over the V*N anchors of the mean negative log-probability of its V-1 positives
        among all other V*N-1 rows (cosine similarity / tau); with ``decoupled`` among the negatives only.
    """
    stacked = torch.stack(list(views)) if not isinstance(views, torch.Tensor) else views
    n_views, n_images = stacked.shape[0], stacked.shape[1]
    if n_views < 2:
        raise ValueError("NT-Xent needs at least two views per image")
    # Autocast (bf16-mixed) would run the similarity matmul in bf16, whose ~3 significant digits blur the
    # logits (cos / 0.2 spans [-5, 5]): the loss is computed in float32 whatever the trainer's precision.
    with torch.autocast(device_type=stacked.device.type, enabled=False):
        embeddings = F.normalize(stacked.reshape(n_views * n_images, -1).float(), dim=1)
        logits = embeddings @ embeddings.T / temperature
    self_mask = torch.eye(n_views * n_images, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    image_index = torch.arange(n_images, device=logits.device).repeat(n_views)
    positives = (image_index[:, None] == image_index[None, :]) & ~self_mask
    denominator = logits.masked_fill(positives, float("-inf")) if decoupled else logits
    log_prob = logits - torch.logsumexp(denominator, dim=1, keepdim=True)
    positive_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / (n_views - 1)
    return -positive_log_prob.mean()


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch_size**2 * C), patches in row-major order (as timm's PatchEmbed)."""
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image {height}x{width} is not divisible by patch size {patch_size}")
    rows, cols = height // patch_size, width // patch_size
    patches = images.reshape(batch, channels, rows, patch_size, cols, patch_size)
    patches = torch.einsum("bchpwq->bhwpqc", patches)
    return patches.reshape(batch, rows * cols, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int, channels: int = 1) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, L, p*p*C) -> (B, C, H, W)."""
    batch = patches.shape[0]
    rows, cols = height // patch_size, width // patch_size
    grid = patches.reshape(batch, rows, cols, patch_size, patch_size, channels)
    grid = torch.einsum("bhwpqc->bchpwq", grid)
    return grid.reshape(batch, channels, height, width)


def random_masking(tokens: torch.Tensor, mask_ratio: float, *, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``1 - mask_ratio`` share of the tokens of every sample.

    Args:
        tokens: (B, L, D).
        mask_ratio: share of tokens to drop, in [0, 1).
        generator: source of the noise (seeded by the caller for exact resume).

    Returns:
        ``(visible (B, K, D), mask (B, L) float with 1 = masked, ids_restore (B, L) long)`` where
        ``K = int(L * (1 - mask_ratio))`` and ``unshuffle(cat(visible, masked), ids_restore)`` restores order.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    batch, length, dim = tokens.shape
    keep = max(1, int(length * (1.0 - mask_ratio)))
    noise = torch.rand(batch, length, generator=generator, device="cpu").to(tokens.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(batch, length, device=tokens.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return visible, mask, ids_restore


def unshuffle(tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Put shuffled tokens (B, L, D) (visible first, then masked) back in their original order."""
    return torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def mae_loss(predictions: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor, *,
             norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Mean squared error on the masked patches only.

    Args:
        predictions: (B, L, P) decoded pixels per patch.
        target_patches: (B, L, P) from :func:`patchify`.
        mask: (B, L), 1 = masked (counted), 0 = visible (ignored).
        norm_pix: normalize each target patch by its own mean and (unbiased) variance, as in MAE.
    """
    target = target_patches.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps) ** 0.5
    per_patch = ((predictions.float() - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
