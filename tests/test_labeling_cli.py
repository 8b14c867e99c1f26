"""CLI: label-reports (CSV, Open-i folder, catalog), eval-reports, bench label-reports; label_catalog idempotence."""

from __future__ import annotations

import csv
import json
import tarfile

import pytest
from typer.testing import CliRunner

from conftest import data_path
from radloop.app.cli import build_app

runner = CliRunner()

OPENI = """<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="{uid}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="INDICATION">{indication}</AbstractText><AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText></Abstract></Article></MedlineCitation>
<MeSH>{majors}</MeSH></eCitation>"""


def _openi(folder, uid, indication, findings, impression, majors):
    body = "".join(f"<major>{term}</major>" for term in majors)
    (folder / f"{uid}.xml").write_text(OPENI.format(uid=uid, indication=indication, findings=findings,
                                                    impression=impression, majors=body))


@pytest.fixture
def openi_folder(tmp_path):
    folder = tmp_path / "openi"
    folder.mkdir()
    _openi(folder, "CXR1", "Fall, rib pain, rule out pneumothorax.", "Healed left seventh rib fracture. No pneumothorax.",
           "No acute disease.", ["Fractures, Bone/ribs/left/healed"])
    _openi(folder, "CXR2", "Cough.", "The heart is normal in size. The lungs are clear.",
           "No acute cardiopulmonary abnormality.", ["normal"])
    _openi(folder, "CXR3", "Dyspnea.", "Right PICC line tip in the SVC. Small right pleural effusion.", "Effusion.",
           ["Catheters, Indwelling/right", "Pleural Effusion/right/small"])
    return folder


def test_label_reports_csv_streams_the_contract_format(tmp_path):
    source = tmp_path / "reports.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["report_id", "text"])
        writer.writerow(["A", "ORIF plate and screws of the distal radius."])
        writer.writerow(["B", ""])
        writer.writerow(["C", "x" * 2_100_000])
        writer.writerow(["D", "Retained bullet fragment in the soft tissues of the thigh."])
    out = tmp_path / "labels.jsonl"
    result = runner.invoke(build_app(), ["label-reports", str(source), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"] == 4
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["report_id"] for line in lines] == ["A", "B", "C", "D"]
    keys = {"finding", "status", "temporality", "site", "laterality", "device_type", "evidence", "start", "end", "section"}
    assert all(set(entry) == keys for line in lines for entry in line["findings"])
    device = [e for e in lines[0]["findings"] if e["finding"] == "device"][0]
    assert device["device_type"] == "orthopedic_hardware" and device["site"] == "radius"
    assert lines[1]["findings"] == [] and "error" not in lines[1]
    assert "too long" in lines[2]["error"] and lines[2]["findings"] == []
    bullet = [e for e in lines[3]["findings"] if e["finding"] == "foreign_body"][0]
    assert bullet["status"] == "positive" and bullet["site"] == "femur"


def test_label_and_eval_openi_folder(tmp_path, openi_folder):
    out = tmp_path / "labels.jsonl"
    app = build_app()
    result = runner.invoke(app, ["label-reports", str(openi_folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = {json.loads(line)["report_id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert {"finding": "normal", "status": "positive"}.items() <= next(
        e for e in records["CXR2"]["findings"] if e["finding"] == "normal").items()
    assert not [e for e in records["CXR1"]["findings"] if e["finding"] == "pneumothorax" and e["status"] == "positive"]
    disagreements = tmp_path / "dis.tsv"
    result = runner.invoke(app, ["eval-reports", "--reports", str(openi_folder), "--labels", str(out),
                                 "--disagreements", str(disagreements), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["reports"] == 3
    assert scores["per_finding"]["fracture"]["f1"] == 1.0 and scores["fracture_old_agreement"] == 1.0
    assert scores["per_finding"]["device"]["tp"] == 1 and scores["per_finding"]["normal"]["f1"] == 1.0
    assert disagreements.read_text().startswith("report_id\tfinding\terror")


def test_eval_reports_scores_only_reports_in_a_partial_labels_file(tmp_path, openi_folder):
    app = build_app()
    out = tmp_path / "labels.jsonl"
    assert runner.invoke(app, ["label-reports", str(openi_folder), "--out", str(out)]).exit_code == 0
    partial = tmp_path / "partial.jsonl"
    partial.write_text(next(line for line in out.read_text().splitlines() if '"CXR1"' in line) + "\n")
    result = runner.invoke(app, ["eval-reports", "--reports", str(openi_folder), "--labels", str(partial), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["reports"] == 1 and scores["reports_without_labels_excluded"] == 2
    assert scores["per_finding"]["normal"]["fn"] == 0 and scores["per_finding"]["device"]["fn"] == 0
    warning = " ".join(result.stderr.split())
    assert "covers 1 of 3 reports" in warning and "the other 2 are left out" in warning
    assert scores["rules_version"] == f"from labels file {partial}"
    table = runner.invoke(app, ["eval-reports", "--reports", str(openi_folder), "--labels", str(partial)])
    printed = " ".join(table.stdout.split())
    assert table.exit_code == 0 and "rules_version None" not in printed and "rules_version from labels file" in printed
    strangers = tmp_path / "strangers.jsonl"
    strangers.write_text(json.dumps({"report_id": "OTHER", "findings": []}) + "\n")
    result = runner.invoke(app, ["eval-reports", "--reports", str(openi_folder), "--labels", str(strangers)])
    assert result.exit_code == 2 and "labels none of the 3 reports" in " ".join(result.output.split())


def test_eval_reports_on_the_dev_tarball_labels_on_the_fly(tmp_path):
    tarball = data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    small = tmp_path / "small.tgz"
    with tarfile.open(tarball) as source, tarfile.open(small, "w:gz") as target:
        for index, member in enumerate(m for m in source if m.isfile()):
            if index >= 150:
                break
            target.addfile(member, source.extractfile(member))
    result = runner.invoke(build_app(), ["eval-reports", "--reports", str(small), "--negbio",
                                         str(data_path("negbio_openi_gold", "examples", "openi_gld_std14.csv")), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["reports"] == 150 and scores["rules_version"].startswith("rules-")
    assert scores["micro_f1"] > 0.8 and scores["per_finding"]["normal"]["f1"] > 0.85


def test_bad_inputs_give_clear_errors(tmp_path):
    app = build_app()
    result = runner.invoke(app, ["label-reports", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "input not found" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("id,body\n1,text\n")
    result = runner.invoke(app, ["label-reports", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "report_id,text" in result.output
    result = runner.invoke(app, ["eval-reports", "--reports", str(tmp_path / "nope.tgz")])
    assert result.exit_code == 2 and "not found" in result.output


def test_bench_prints_throughput(openi_folder):
    result = runner.invoke(build_app(), ["bench", "label-reports", str(openi_folder), "--n-process", "1",
                                         "--repeat", "20", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["reports"] == 60 and figures["reports_per_s"] > 0 and figures["peak_rss_mb"] > 0


def test_label_catalog_is_idempotent_per_rules_version(catalog, workspace):
    from sqlalchemy import func, select

    from radloop.core.schema import Report, WeakLabel
    from radloop.labeling import ReportLabeler, label_catalog

    with catalog.session() as session:
        session.add(Report(id="R1", content_hash="h1", text="FINDINGS: Healed right rib fracture. Left chest tube."))
        session.add(Report(id="R2", content_hash="h2", text="", sections={"FINDINGS": "Small left pleural effusion."}))
        session.add(Report(id="R3", content_hash="h3", text="INDICATION: pneumonia?\nIMPRESSION: Normal chest."))
    labeler = ReportLabeler()
    first = label_catalog(catalog, labeler)
    assert (first.reports_total, first.reports_labelled, first.reports_skipped) == (3, 3, 0)
    with catalog.session() as session:
        rows = session.execute(select(WeakLabel)).scalars().all()
        assert {row.rules_version for row in rows} == {labeler.rules_version}
        by_report = {(row.report_id, row.finding, row.status) for row in rows}
        count = session.execute(select(func.count(WeakLabel.id))).scalar_one()
    assert ("R1", "fracture", "positive") in by_report and ("R2", "effusion", "positive") in by_report
    assert ("R3", "normal", "positive") in by_report and not any(r == "R3" and f == "pneumonia" for r, f, _ in by_report)
    second = label_catalog(catalog, labeler)
    assert (second.reports_labelled, second.reports_skipped, second.mentions_written) == (0, 3, 0)
    forced = label_catalog(catalog, labeler, force=True)
    with catalog.session() as session:
        assert session.execute(select(func.count(WeakLabel.id))).scalar_one() == count == forced.mentions_written
    result = runner.invoke(build_app(), ["label-reports", "catalog", "--workspace", str(workspace.root), "--out", "-"])
    assert result.exit_code == 0, result.output
    assert '"skipped_already_labelled": 3' in result.output


def test_label_reports_catalog_rerun_writes_every_report_and_keeps_old_file_on_failure(catalog, workspace,
                                                                                      monkeypatch):
    """A rerun (nothing new to label) writes the stored labels, not an empty file; a failed run leaves the
    previous --out whole; a missing output folder is created; a workspace that does not exist is refused."""
    from radloop.core.schema import Report

    with catalog.session() as session:
        session.add(Report(id="R1", content_hash="h1", text="FINDINGS: Healed right rib fracture. Left chest tube."))
        session.add(Report(id="R2", content_hash="h2", text="FINDINGS: Small left pleural effusion."))
        session.add(Report(id="R3", content_hash="h3", text="PA and lateral views."))  # no mention at all
    out = workspace.root.parent / "new-folder" / "labels.jsonl"
    command = ["label-reports", "catalog", "--workspace", str(workspace.root), "--out", str(out), "--json"]

    def records():
        return sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["report_id"])

    first = runner.invoke(build_app(), command)
    assert first.exit_code == 0, first.output
    labelled = records()
    assert [r["report_id"] for r in labelled] == ["R1", "R2", "R3"]
    assert {f["finding"] for f in labelled[0]["findings"]} >= {"fracture", "device"}
    second = runner.invoke(build_app(), command)
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    # R3 has no finding: marked done (walk 23f), so not relabelled on every run any more
    assert summary["skipped_already_labelled"] == 3 and summary["written_from_catalog"] == 3
    assert summary["reports"] == 3 and records() == labelled
    assert not out.with_name(out.name + ".partial").exists()

    import radloop.labeling

    def broken(*args, **kwargs):
        raise ValueError("labeller broke half-way")

    monkeypatch.setattr(radloop.labeling, "label_catalog", broken)
    failed = runner.invoke(build_app(), command)
    assert failed.exit_code == 2 and "labeller broke half-way" in failed.output
    assert records() == labelled and not out.with_name(out.name + ".partial").exists()

    missing = workspace.root.parent / "typo-ws"
    refused = runner.invoke(build_app(), ["label-reports", "catalog", "--workspace", str(missing), "--out", str(out)])
    assert refused.exit_code == 2 and not missing.exists()
    assert "no catalog" in refused.output or "no workspace folder" in refused.output  # SQLite / server database


def test_eval_reports_refuses_reports_without_expert_coding(tmp_path):
    reports = tmp_path / "reports.csv"
    reports.write_text("report_id,text\nR1,No fracture.\nR2,Healed rib fracture.\n")
    result = runner.invoke(build_app(), ["eval-reports", "--reports", str(reports)])
    assert result.exit_code == 2 and "no expert coding" in result.output
