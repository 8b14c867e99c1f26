"""SimCLR: a timm backbone, a projection head and NT-Xent (Chen et al., ICML 2020).

The backbone is any ``timm.create_model(name, in_chans=1, num_classes=0)`` (ResNet or ViT); only the
backbone is exported, the projection head is discarded after pretraining.
"""

from __future__ import annotations

import torch
from torch import nn

from radloop.ssl.encoders import PooledEncoder
from radloop.ssl.losses import nt_xent_loss

__all__ = ["ProjectionHead", "SimCLRModel"]


class ProjectionHead(nn.Sequential):
    """MLP ``D -> hidden -> out`` with batch norm (SimCLR v2 style, two layers)."""

    def __init__(self, input_dim: int, hidden_dim: int = 2048, output_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(input_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim))


class SimCLRModel(nn.Module):
    """Backbone + projection head; ``forward(views)`` returns the NT-Xent loss over all views.

    Args:
        encoder: a :class:`PooledEncoder` around the timm backbone.
        embed_dim: the encoder's output length D.
        projection_hidden_dim, projection_dim: head sizes.
        temperature: NT-Xent temperature.
        decoupled: decoupled contrastive loss (positives out of the denominator; see ``nt_xent_loss``).
    """

    def __init__(self, encoder: PooledEncoder, embed_dim: int, *, projection_hidden_dim: int = 2048,
                 projection_dim: int = 128, temperature: float = 0.2,
                 decoupled: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(embed_dim, projection_hidden_dim, projection_dim)
        self.temperature = temperature
        self.decoupled = decoupled

    def project(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))

    def forward(self, views: list[torch.Tensor], *, gather=None) -> torch.Tensor:
        """NT-Xent over V views (each (N, 1, h, w); views of different sizes run as separate passes).

        Args:
            views: list of V image batches, row i of each is the same image.
            gather: optional callable (N, d) -> (world * N, d) that all-gathers projections across
                processes with gradients (more negatives under DDP).
        """
        by_size: dict[tuple[int, int], list[int]] = {}
        for position, view in enumerate(views):
            by_size.setdefault(tuple(view.shape[-2:]), []).append(position)
        outputs: dict[int, torch.Tensor] = {}
        for positions in by_size.values():
            batch = torch.cat([views[p] for p in positions])
            projected = self.project(batch).chunk(len(positions))
            outputs.update(zip(positions, projected))
        projections = [outputs[p] for p in range(len(views))]
        if gather is not None:
            projections = [gather(projection) for projection in projections]
        return nt_xent_loss(projections, self.temperature, decoupled=self.decoupled)
