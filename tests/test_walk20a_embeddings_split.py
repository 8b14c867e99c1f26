"""core/embeddings.py split in two (reading / checking shards, and core/embedding_writer.py writing them): every
name importable from radloop.core.embeddings before the split still is, and is the writer's own object."""

from __future__ import annotations

from radloop.core import embedding_writer, embeddings

BEFORE_SPLIT = ("EmbeddingSet", "EmbeddingShardError", "LostShard", "embedded_image_ids", "embedded_versions",
                "embedding_mark", "embedding_write_lock", "forget_lost_shards", "load_embeddings", "lost_shards",
                "missing_image_ids", "next_shard_index", "shard_number", "stored_setting", "stored_settings",
                "write_shard", "STALE_TEMPORARY_S")


def test_the_public_names_still_import_from_embeddings():
    assert set(BEFORE_SPLIT) <= set(embeddings.__all__)
    for name in embeddings.__all__:
        assert getattr(embeddings, name) is not None, name
    for name in embedding_writer.__all__:
        if name in embeddings.__all__:
            assert getattr(embeddings, name) is getattr(embedding_writer, name), name
