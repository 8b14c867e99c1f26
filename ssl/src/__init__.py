"""Self-supervised encoders, pretraining (MAE, SimCLR), fine-tuning heads and embedding extraction.

Public API (``ssl/README.md``): :func:`load_encoder` (an :class:`EncoderBundle` from an encoder folder),
:func:`random_encoder` (an untrained one, the baseline), :func:`embed_images` (an (N, D) float32 array, one row per
image path or 2-D array), :func:`save_encoder` (a backbone exported to a folder, returned as a bundle),
:class:`EncoderConfig`, :func:`read_image` / :func:`preprocess` (the pixels an encoder sees).  Embedding the whole
catalog: :func:`radloop.ssl.embed.embed_catalog`; training: ``radloop.ssl.pretrain`` / ``radloop.ssl.finetune_jobs``.

The names are imported on first use (PEP 562): importing a submodule that needs no model (the configs
``radloop.ssl.settings`` / ``finetune_config``, ``artifacts``) does not pay for torch and timm (seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radloop.core.lazy import lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    "EncoderBundle": "encoders", "EncoderConfig": "encoders", "PooledEncoder": "encoders",
    "build_backbone": "encoders", "embed_images": "encoders", "load_encoder": "encoders", "preprocess": "encoders",
    "random_encoder": "encoders", "reexport_encoder": "encoders", "save_encoder": "encoders",
    "UnreadableImage": "pixels", "read_image": "pixels",
}

__all__ = [
    "EncoderBundle", "EncoderConfig", "PooledEncoder", "UnreadableImage", "build_backbone", "embed_images",
    "load_encoder", "preprocess", "random_encoder", "read_image", "reexport_encoder", "save_encoder",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from radloop.ssl.encoders import (
        EncoderBundle, EncoderConfig, PooledEncoder, build_backbone, embed_images, load_encoder, preprocess,
        random_encoder, reexport_encoder, save_encoder,
    )
    from radloop.ssl.pixels import UnreadableImage, read_image
