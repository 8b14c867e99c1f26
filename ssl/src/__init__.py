"""Self-supervised encoders, pretraining (MAE, SimCLR), fine-tuning heads and embedding extraction.

Public API (see CONTRACTS "Encoders"): :func:`load_encoder`, :func:`random_encoder`, :func:`embed_images`,
:class:`EncoderBundle`, :class:`EncoderConfig`, :func:`save_encoder`.
"""

from radloop.ssl.encoders import (
    EncoderBundle, EncoderConfig, PooledEncoder, build_backbone, embed_images, load_encoder, preprocess,
    random_encoder, reexport_encoder, save_encoder,
)
from radloop.ssl.pixels import UnreadableImage, read_image

__all__ = [
    "EncoderBundle", "EncoderConfig", "PooledEncoder", "UnreadableImage", "build_backbone", "embed_images",
    "load_encoder", "preprocess", "random_encoder", "read_image", "reexport_encoder", "save_encoder",
]
