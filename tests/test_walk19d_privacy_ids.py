"""Walk 19d: `label-reports --pseudonymize-ids` writes an HMAC pseudonym of each report id (often an accession
number) with the workspace's key; off by default; without a workspace key it refuses in one line."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from radloop.app.cli import build_app
from radloop.core.deid import report_pseudonym

runner = CliRunner()


def _csv(tmp_path):
    source = tmp_path / "reports.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["report_id", "text"])
        writer.writerow(["ACC-0001", "Healed left rib fracture."])
        writer.writerow(["ACC-0002", "Small right pleural effusion."])
    return source


def _ids(path):
    return [json.loads(line)["report_id"] for line in path.read_text().splitlines()]


def test_report_ids_are_pseudonymized_with_the_workspace_key(tmp_path, workspace):
    source, out = _csv(tmp_path), tmp_path / "labels.jsonl"
    command = ["label-reports", str(source), "--out", str(out), "--workspace", str(workspace.root), "--json"]
    plain = runner.invoke(build_app(), command)
    assert plain.exit_code == 0, plain.output
    assert _ids(out) == ["ACC-0001", "ACC-0002"]  # default: as given (earlier files, eval-reports join on them)
    assert json.loads(plain.stdout)["report_ids"] == "as given"
    result = runner.invoke(build_app(), [*command, "--pseudonymize-ids"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report_ids"] == "pseudonymized"
    key = workspace.pseudonym_key
    ids = _ids(out)
    assert ids == [report_pseudonym(key, "ACC-0001"), report_pseudonym(key, "ACC-0002")]  # joinable in the workspace
    assert all(rid.startswith("R-") and len(rid) == 18 for rid in ids) and "ACC-" not in out.read_text()
    assert report_pseudonym(b"another workspace" * 2, "ACC-0001") != ids[0]


def test_catalog_reports_are_pseudonymized_too(catalog, workspace):
    from radloop.core.schema import Report

    with catalog.session() as session:
        session.add(Report(id="ACC-77", content_hash="h1", text="FINDINGS: Small left pleural effusion."))
    out = workspace.root.parent / "labels.jsonl"
    command = ["label-reports", "catalog", "--workspace", str(workspace.root), "--out", str(out), "--pseudonymize-ids"]
    for _ in range(2):  # the second run writes the stored labels: pseudonymized as well
        result = runner.invoke(build_app(), command)
        assert result.exit_code == 0, result.output
        assert _ids(out) == [report_pseudonym(workspace.pseudonym_key, "ACC-77")]


def test_without_a_workspace_key_it_refuses_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("RADLOOP_WORKSPACE", raising=False)
    missing, out = tmp_path / "no-workspace", tmp_path / "labels.jsonl"
    result = runner.invoke(build_app(), ["label-reports", str(_csv(tmp_path)), "--out", str(out), "--workspace",
                                         str(missing), "--pseudonymize-ids"])
    assert result.exit_code != 0
    assert "--pseudonymize-ids: no workspace at" in result.output and "--workspace" in result.output
    assert not missing.exists() and not out.exists()
