"""A report CSV is read a row at a time: the whole file was read, decoded and copied into a StringIO (about six times
its size: 125 MB for a 20.7 MB file of 100k reports), which set ingest's peak memory at archive scale."""

from __future__ import annotations

import subprocess
import sys

from radloop.core.reports_io import ParsedReport, ReportProblem, file_encoding, read_reports


def _write_csv(path, rows: int, encoding: str = "utf-8", bom: bool = False) -> None:
    lines = ["report_id,text,study_id,image"]
    lines += [f'R{n},"FINDINGS: No acute fracture of the left wrist, report {n}. IMPRESSION: Normal.",S{n},I{n}.png'
              for n in range(rows)]
    lines.append('R-accent,"Pneumothorax résolu, côté gauche.",S-a,')
    data = ("\n".join(lines) + "\n").encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)


def _peak_reading(path) -> tuple[int, int]:
    """(reports read, peak traced memory), measured in a fresh process (other threads of the test process, e.g.
    a database server's, would count too)."""
    script = ("import sys, tracemalloc\n"
              "from radloop.core.reports_io import ParsedReport, read_reports\n"
              "tracemalloc.start()\n"
              "count = sum(1 for item in read_reports(sys.argv[1]) if isinstance(item, ParsedReport))\n"
              "print(count, tracemalloc.get_traced_memory()[1])\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    count, peak = done.stdout.split()
    return int(count), int(peak)


def test_reading_a_big_csv_holds_a_row_not_the_file(tmp_path):
    path = tmp_path / "reports.csv"
    _write_csv(path, 100_000)
    size = path.stat().st_size
    count, peak = _peak_reading(path)
    assert count == 100_001
    # the peak is the encoding check's chunk (1 MB, with its decoded text) and a row, whatever the file's size
    # (was ~6x the file: read whole, decoded, copied into a StringIO)
    assert peak < size / 2, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_encodings_are_still_told_and_decoded(tmp_path):
    for encoding, bom, told in (("utf-8", True, "utf-8"), ("cp1252", False, "cp1252")):
        path = tmp_path / f"{encoding}.csv"
        _write_csv(path, 3, encoding, bom)
        assert file_encoding(path) == told
        items = list(read_reports(path))
        reports = {item.report_id: item for item in items if isinstance(item, ParsedReport)}
        assert reports["R-accent"].text == "Pneumothorax résolu, côté gauche."
        assert "R0" in reports  # the BOM is not part of the first column's name
        warned = [item for item in items if isinstance(item, ReportProblem) and item.stage == "encoding"]
        assert bool(warned) == (told != "utf-8")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"report_id,text\nR1,\"caf\xe9 \x81\"\n")  # 0x81 is not cp1252
    assert file_encoding(latin) == "latin-1"
    assert [item.text for item in read_reports(latin) if isinstance(item, ParsedReport)] == ["caf\xe9 \x81"]


def test_reports_with_study_ids_are_written_with_a_few_statements_per_batch(tmp_path, catalog):
    """A hospital CSV names each report's study (and image): a study lookup, an image lookup and a flush per report
    made 100k such reports take 227 s (37.8 s now)."""
    from sqlalchemy import event, select

    from noise_images import reports_csv
    from radloop.core.ingest_reports import write_reports
    from radloop.core.ingest_summary import IngestSummary
    from radloop.core.schema import Report

    rows = [(f"R{n:05d}", "No fracture.", f"ACC-{n // 2}", f"img{n:05d}") for n in range(2000)]
    statements = [0]

    def count(*_args):
        statements[0] += 1

    event.listen(catalog.engine, "before_cursor_execute", count)
    try:
        summary = IngestSummary(run_id="run")
        write_reports(catalog, reports_csv(tmp_path / "reports.csv", rows), summary, "run")
    finally:
        event.remove(catalog.engine, "before_cursor_execute", count)
    assert summary.reports_added == 2000
    with catalog.session() as session:
        studies = dict(session.execute(select(Report.id, Report.study_id)).all())
    assert len(set(studies.values())) == 1000 and studies["R00000"] == studies["R00001"] != studies["R00002"]
    assert statements[0] < 200, statements[0]  # was > 2 per report
