"""Masked autoencoder around a timm VisionTransformer (He et al., CVPR 2022).

The encoder is an unmodified ``timm`` ViT (``in_chans=1``): its patch embedding, class token, position
embedding, blocks and final norm run on the visible patches only.  The light decoder is built from timm's
own ``Block``.  Only the encoder is exported.
"""

from __future__ import annotations

import torch
from torch import nn

from radloop.ssl.losses import mae_loss, patchify, random_masking, unshuffle

__all__ = ["MaskedAutoencoder"]


class MaskedAutoencoder(nn.Module):
    """MAE: timm ViT encoder on visible patches + a light transformer decoder predicting masked pixels.

    Args:
        encoder: a timm ``VisionTransformer`` with a class token and ``num_classes=0``.
        decoder_dim, decoder_depth, decoder_heads: decoder width, blocks and heads.
        mask_ratio: share of patches hidden from the encoder (0.75; 0.9 is reported best on chest X-rays).
        norm_pix_loss: regress per-patch normalized pixels.
    """

    def __init__(self, encoder: nn.Module, *, decoder_dim: int = 512, decoder_depth: int = 8,
                 decoder_heads: int = 16, mask_ratio: float = 0.75, norm_pix_loss: bool = True) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        if not getattr(encoder, "has_class_token", False) or getattr(encoder, "num_reg_tokens", 0) \
                or getattr(encoder, "no_embed_class", False) or encoder.pos_embed is None:
            raise ValueError("MAE needs a timm ViT with a class token, position embedding and no register tokens")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_size = int(encoder.patch_embed.patch_size[0])
        self.in_chans = int(encoder.patch_embed.proj.in_channels)
        num_patches = int(encoder.patch_embed.num_patches)
        embed_dim = int(encoder.embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size ** 2 * self.in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        for module in (self.decoder_embed, self.decoder_pred):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def forward_encoder(self, images: torch.Tensor, *, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches: returns (latent (B, 1+K, D), mask (B, L), ids_restore (B, L))."""
        encoder = self.encoder
        tokens = encoder.patch_embed(images)
        tokens = tokens + encoder.pos_embed[:, 1:, :]
        visible, mask, ids_restore = random_masking(tokens, self.mask_ratio, generator=generator)
        cls = (encoder.cls_token + encoder.pos_embed[:, :1, :]).expand(visible.shape[0], -1, -1)
        latent = torch.cat([cls, visible], dim=1)
        latent = encoder.norm_pre(latent)
        for block in encoder.blocks:
            latent = block(latent)
        return encoder.norm(latent), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch's pixels: (B, L, patch_size**2 * C)."""
        tokens = self.decoder_embed(latent)
        batch, length = ids_restore.shape
        mask_tokens = self.mask_token.expand(batch, length + 1 - tokens.shape[1], -1)
        patches = unshuffle(torch.cat([tokens[:, 1:], mask_tokens], dim=1), ids_restore)
        tokens = torch.cat([tokens[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens))[:, 1:]

    def forward(self, images: torch.Tensor, *, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (loss, predictions (B, L, P), mask (B, L))."""
        latent, mask, ids_restore = self.forward_encoder(images, generator=generator)
        predictions = self.forward_decoder(latent, ids_restore)
        loss = mae_loss(predictions, patchify(images, self.patch_size), mask, norm_pix=self.norm_pix_loss)
        return loss, predictions, mask
