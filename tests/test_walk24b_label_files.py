"""Walkthrough 24b: `eval-reports --labels` read the whole labels file into memory (a dict of every report's
findings: GBs for a million-report `label-reports catalog` output) to score the few thousand Open-i reports given
with --reports.  The file is now streamed and only the scored reports' entries are kept."""

from __future__ import annotations

import json
import tracemalloc

from typer.testing import CliRunner

from radloop.app.cli import build_app
from radloop.labeling.label_files import iter_label_file, pseudonymized_ids, read_label_file

OPENI = """<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="CXR1"/><MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">Healed left rib fracture.</AbstractText></Abstract></Article></MedlineCitation>
<MeSH><major>Fractures, Bone/ribs/left/healed</major></MeSH></eCitation>"""
FINDING = {"finding": "fracture", "status": "positive", "temporality": "old", "site": "rib", "laterality": "left",
           "device_type": None, "evidence": "Healed left rib fracture", "start": 10, "end": 34, "section": "FINDINGS"}


def _big_labels(path, count: int) -> None:
    with path.open("w") as handle:
        handle.write(json.dumps({"report_id": "CXR1", "findings": [FINDING]}) + "\n")
        for index in range(count):
            handle.write(json.dumps({"report_id": f"OTHER{index}", "findings": [FINDING] * 4}) + "\n")


def test_eval_reports_keeps_only_the_scored_reports_of_a_big_labels_file(tmp_path):
    folder = tmp_path / "openi"
    folder.mkdir()
    (folder / "CXR1.xml").write_text(OPENI)
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    _big_labels(small, 10)
    _big_labels(big, 20000)  # ~18 MB of JSON; held whole it took ~75 MB of Python objects
    command = ["eval-reports", "--reports", str(folder), "--json", "--labels"]
    warm = CliRunner().invoke(build_app(), [*command, str(small)])  # imports and caches first
    assert warm.exit_code == 0, warm.output
    tracemalloc.start()
    try:
        result = CliRunner().invoke(build_app(), [*command, str(big)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"] == 1
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB for a {big.stat().st_size / 1e6:.1f} MB labels file"


def test_the_stream_and_the_filter_keep_the_file_semantics(tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"report_id": 7, "findings": []}\n\n{"report_id": "A"}\n{"report_id": "A", "findings": '
                      '[{"finding": "x"}]}\n')
    assert list(iter_label_file(labels)) == [("7", []), ("A", []), ("A", [{"finding": "x"}])]
    assert read_label_file(labels, report_ids={"A", "Z"}) == {"A": [{"finding": "x"}]}  # the last line wins
    assert pseudonymized_ids(iter(["R-0123456789abcdef"])) and not pseudonymized_ids(iter([]))
    assert not pseudonymized_ids(iter(["R-0123456789abcdef", "CXR1"]))
