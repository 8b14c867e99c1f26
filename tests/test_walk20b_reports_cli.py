"""Walk 20b: `eval-reports --labels` with a file that is no label-reports output (a folder, non-UTF-8 bytes, a JSON
line that is not an object or whose findings are not a list of objects) says so in one line, no traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from radloop.app.cli import build_app
from radloop.labeling import read_label_file

runner = CliRunner()
OPENI = """<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="CXR1"/><MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">Healed left rib fracture.</AbstractText></Abstract></Article></MedlineCitation>
<MeSH><major>Fractures, Bone/ribs/left/healed</major></MeSH></eCitation>"""


@pytest.fixture
def openi_folder(tmp_path):
    folder = tmp_path / "openi"
    folder.mkdir()
    (folder / "CXR1.xml").write_text(OPENI)
    return folder


@pytest.mark.parametrize(("content", "message"), [
    (b'{"report_id": "CXR1", "findings": "fracture"}\n', "1: not a label-reports JSON line"),
    (b'[1, 2]\n', "1: not a label-reports JSON line"),
    (b'{"report_id": "CXR1", "findings": [["fracture", "positive"]]}\n', "1: not a label-reports JSON line"),
    (b'{"report_id": "CXR1", "findings": []}\n{"findings": []}\n', "2: not a label-reports JSON line"),
    (b"\xff\xfe\x00garbage", "1: not UTF-8 text"),
])
def test_a_file_that_is_no_labels_file_is_named(tmp_path, openi_folder, content, message):
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(content)
    result = runner.invoke(build_app(), ["eval-reports", "--reports", str(openi_folder), "--labels", str(labels)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output  # an uncaught exception (the traceback) exits 1
    assert message in output


def test_a_folder_as_labels_is_named(tmp_path, openi_folder):
    result = runner.invoke(build_app(), ["eval-reports", "--reports", str(openi_folder), "--labels", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in " ".join(result.output.split())


def test_read_label_file_keys_ids_as_text(tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"report_id": 17, "findings": [{"finding": "fracture", "status": "positive"}]})
                      + "\n\n" + json.dumps({"report_id": "CXR1"}) + "\n")
    assert read_label_file(labels) == {"17": [{"finding": "fracture", "status": "positive"}], "CXR1": []}
