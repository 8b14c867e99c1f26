"""`radloop models list` on an empty registry says what registers a model (was an empty table)."""

from __future__ import annotations


def test_models_list_on_an_empty_registry_says_what_registers_one(tmp_path, catalog):
    import json

    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    root = str(catalog.workspace.root)
    result = CliRunner().invoke(build_app(), ["models", "list", "--workspace", root])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "no models registered yet: `radloop pretrain --config configs/ssl/simclr_cpu.yaml` registers an encoder" \
        in flat, result.output
    listed = CliRunner().invoke(build_app(), ["models", "list", "--json", "--workspace", root])
    assert json.loads(listed.stdout) == {"models": []}  # the hint goes to stderr, the JSON stays clean
