"""label-reports refuses an input that holds no reports (one clear line, the previous --out kept)."""

from __future__ import annotations

from typer.testing import CliRunner

from radloop.app.cli import build_app


def test_label_reports_refuses_a_folder_without_reports(tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text("earlier run\n")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(build_app(), ["label-reports", str(tmp_path / "empty"), "--out", str(out)])
    assert result.exit_code != 0
    assert "no reports in" in result.output and "Traceback" not in result.output
    assert out.read_text() == "earlier run\n" and not (tmp_path / "labels.jsonl.partial").exists()


def test_label_reports_refuses_a_header_only_csv(tmp_path):
    source = tmp_path / "reports.csv"
    source.write_text("report_id,text\n")
    result = CliRunner().invoke(build_app(), ["label-reports", str(source), "--out", str(tmp_path / "labels.jsonl")])
    assert result.exit_code != 0 and "no reports in" in result.output
    assert not (tmp_path / "labels.jsonl").exists()
