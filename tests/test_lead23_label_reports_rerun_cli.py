"""`radloop label-reports catalog` with nothing left to label does not build the medspacy labeller (seconds of
CPU and ~900 MB per run: a nightly job's rerun), and still writes every stored report."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_a_catalog_rerun_with_nothing_to_label_builds_no_labeller(tmp_path, monkeypatch):
    import radloop.labeling.labeler as labeler_module
    from radloop.app.cli import build_app
    from radloop.core.catalog import Catalog
    from radloop.core.schema import Report
    from radloop.core.workspace import resolve_workspace

    workspace = resolve_workspace(tmp_path / "ws").ensure()
    catalog = Catalog.open(workspace)
    with catalog.session() as session:
        session.add(Report(id="R1", content_hash="h1", text="FINDINGS: Healed right rib fracture."))
        session.add(Report(id="R2", content_hash="h2", text="FINDINGS: Small left pleural effusion."))
    catalog.dispose()
    command = ["label-reports", "catalog", "--workspace", str(workspace.root), "--out", str(tmp_path / "l.jsonl"),
               "--json"]
    first = CliRunner().invoke(build_app(), command)
    assert first.exit_code == 0, first.output

    built = []
    real_init = labeler_module.ReportLabeler.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(labeler_module.ReportLabeler, "__init__", counting_init)
    again = CliRunner().invoke(build_app(), command)
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert built == []
    assert summary["written_from_catalog"] == 2 and summary["rules_version"] == json.loads(first.stdout)["rules_version"]
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 2
