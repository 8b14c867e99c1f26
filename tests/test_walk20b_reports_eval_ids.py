"""Walk 20b: `eval-reports --labels` scores a file written by `label-reports --pseudonymize-ids` (R-<HMAC> ids)
when given `--pseudonymize-ids` and the same workspace; when no id matches it says why in one line."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from radloop.app.cli import build_app
from radloop.core.deid import report_pseudonym

runner = CliRunner()

OPENI = """<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="{uid}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">{findings}</AbstractText></Abstract></Article></MedlineCitation>
<MeSH>{majors}</MeSH></eCitation>"""
REPORTS = [
    ("CXR1", "Healed left seventh rib fracture. No pneumothorax.", ["Fractures, Bone/ribs/left/healed"]),
    ("CXR2", "The heart is normal in size. The lungs are clear.", ["normal"]),
    ("CXR3", "Right PICC line tip in the SVC. Small right pleural effusion.",
     ["Catheters, Indwelling/right", "Pleural Effusion/right/small"]),
]


@pytest.fixture
def openi_folder(tmp_path):
    folder = tmp_path / "openi"
    folder.mkdir()
    for uid, findings, majors in REPORTS:
        body = "".join(f"<major>{term}</major>" for term in majors)
        (folder / f"{uid}.xml").write_text(OPENI.format(uid=uid, findings=findings, majors=body))
    return folder


def _negbio(tmp_path):
    path = tmp_path / "negbio.csv"
    columns = ["filename", "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, restval="0")
        writer.writeheader()
        for uid, _, _ in REPORTS:
            writer.writerow({"filename": uid, "Effusion": "1" if uid == "CXR3" else "0"})
    return path


def _label(openi_folder, out, workspace, *extra):
    result = runner.invoke(build_app(), ["label-reports", str(openi_folder), "--out", str(out), "--workspace",
                                         str(workspace.root), *extra])
    assert result.exit_code == 0, result.output


def _eval(openi_folder, labels, *extra):
    return runner.invoke(build_app(), ["eval-reports", "--reports", str(openi_folder), "--labels", str(labels),
                                       "--json", *extra])


def test_a_pseudonymized_labels_file_scores_like_the_plain_one(tmp_path, openi_folder, workspace):
    plain, hidden = tmp_path / "plain.jsonl", tmp_path / "hidden.jsonl"
    _label(openi_folder, plain, workspace)
    _label(openi_folder, hidden, workspace, "--pseudonymize-ids")
    assert "CXR" not in hidden.read_text()
    negbio = _negbio(tmp_path)
    expected = _eval(openi_folder, plain, "--negbio", str(negbio))
    assert expected.exit_code == 0, expected.output
    disagreements = tmp_path / "dis.tsv"
    result = _eval(openi_folder, hidden, "--negbio", str(negbio), "--pseudonymize-ids", "--workspace",
                   str(workspace.root), "--disagreements", str(disagreements))
    assert result.exit_code == 0, result.output
    scores, reference = json.loads(result.stdout), json.loads(expected.stdout)
    assert scores["reports_without_labels_excluded"] == 0 and scores["reports"] == 3
    assert scores["report_ids"] == "pseudonymized"
    assert scores["per_finding"] == reference["per_finding"] and scores["micro_f1"] == reference["micro_f1"]
    assert scores["per_finding"]["effusion"]["tp"] == 1  # the NegBio table was joined on the pseudonyms too
    assert scores["fracture_old_agreement"] == 1.0
    assert "CXR" not in "".join(line.split("\t")[0] for line in disagreements.read_text().splitlines())


def test_without_the_option_the_error_names_the_pseudonyms(tmp_path, openi_folder, workspace):
    hidden = tmp_path / "hidden.jsonl"
    _label(openi_folder, hidden, workspace, "--pseudonymize-ids")
    result = _eval(openi_folder, hidden)
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "pseudonymized report ids" in message and "add --pseudonymize-ids" in message and "--workspace" in message


def test_another_workspace_key_is_named_as_the_likely_cause(tmp_path, openi_folder, workspace):
    hidden = tmp_path / "hidden.jsonl"
    hidden.write_text("".join(json.dumps({"report_id": report_pseudonym(b"another workspace key!" * 2, uid),
                                          "findings": []}) + "\n" for uid, _, _ in REPORTS))
    workspace.pseudonym_key  # noqa: B018  (the workspace has its own key)
    result = _eval(openi_folder, hidden, "--pseudonymize-ids", "--workspace", str(workspace.root))
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "another workspace's secret.key" in message


def test_plain_ids_with_the_option_and_no_key_are_refused_clearly(tmp_path, openi_folder, workspace):
    plain = tmp_path / "plain.jsonl"
    _label(openi_folder, plain, workspace)
    workspace.pseudonym_key  # noqa: B018  (made on first use, as label-reports --pseudonymize-ids does)
    result = _eval(openi_folder, plain, "--pseudonymize-ids", "--workspace", str(workspace.root))
    assert result.exit_code == 2 and "holds plain report ids" in " ".join(result.output.split())
    empty = tmp_path / "no-key"
    empty.mkdir()
    result = _eval(openi_folder, plain, "--pseudonymize-ids", "--workspace", str(empty))
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "no secret.key in" in message and not (empty / "secret.key").exists()
    result = runner.invoke(build_app(), ["eval-reports", "--reports", str(openi_folder), "--pseudonymize-ids"])
    assert result.exit_code == 2 and "without --labels" in " ".join(result.output.split())
