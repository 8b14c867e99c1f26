"""`radloop demo 2> log`: the demo's pretraining and embedding draw no progress bar into a file or pipe (each
update a carriage return), as the other commands (walk 23a); on a terminal they still do."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


class Stop(Exception):
    pass


@pytest.mark.parametrize("terminal", [False, True])
def test_demo_bars_follow_the_terminal(tmp_path, monkeypatch, terminal):
    import radloop.app.options as options
    import radloop.core.registry as registry
    import radloop.ssl.embed as embed
    import radloop.ssl.encoder_adapter as adapter
    import radloop.ssl.pretrain as pretrain_module
    import radloop.ssl.pretrain_data as pretrain_data
    from radloop.app import demo
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace

    catalog = Catalog.open(resolve_workspace(tmp_path / "ws").ensure())
    seen = {}

    def fake_pretrain(catalog, config, folder, resume):
        seen["pretrain_bar"] = config.trainer.enable_progress_bar
        raise Stop

    def fake_embed(catalog, encoder, progress):
        seen["embed_bar"] = progress
        raise Stop

    monkeypatch.setattr(options, "progress_bars", lambda: terminal)
    monkeypatch.setattr(pretrain_data, "catalog_images", lambda *args, **kwargs: list(range(100)))
    monkeypatch.setattr(pretrain_module, "pretrain", fake_pretrain)
    monkeypatch.setattr(embed, "embed_catalog", fake_embed)
    monkeypatch.setattr(adapter, "encoder_from_registry", lambda catalog, version: None)
    try:
        with pytest.raises(Stop):
            demo._encoder(catalog, demo.DemoOptions(data=tmp_path))
        monkeypatch.setattr(registry, "current_model", lambda catalog, kind: SimpleNamespace(version="enc-1"))
        with pytest.raises(Stop):
            demo._embed_and_index(catalog)
    finally:
        catalog.dispose()
    assert seen == {"pretrain_bar": terminal, "embed_bar": terminal}
