"""Read the JSONL label files that ``radloop label-reports`` writes (one report a line)."""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterable, Iterator
from pathlib import Path

__all__ = ["iter_label_file", "pseudonymized_ids", "read_label_file"]

#: A report id written by ``label-reports --pseudonymize-ids`` (:func:`radloop.core.deid.report_pseudonym`).
PSEUDONYM = re.compile(r"R-[0-9a-f]{16}")
_LAYOUT = '{"report_id": ..., "findings": [{"finding": ..., "status": ...}, ...]}'


def read_label_file(path: str | Path, *, report_ids: Container[str] | None = None) -> dict[str, list[dict]]:
    """``report_id -> findings`` (dicts in the ``to_json`` layout) of a label-reports JSONL file; with
    ``report_ids``, only those reports' entries are kept (the file is streamed: a million-report file costs the
    memory of the reports asked for, not of the file).  A report given twice keeps its last line.

    Raises:
        ValueError: a folder, unreadable or non-UTF-8 file, or a line that is not a label-reports record
            (named by its line number).
    """
    return {report_id: findings for report_id, findings in iter_label_file(path)
            if report_ids is None or report_id in report_ids}


def iter_label_file(path: str | Path) -> Iterator[tuple[str, list[dict]]]:
    """Yield ``(report_id, findings)`` line by line from a label-reports JSONL file (errors as
    :func:`read_label_file`, raised when the reading reaches them)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--labels {path} is a folder: pass the JSONL file that `radloop label-reports --out` wrote")
    number = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    record = _record(line)
                    if record is None:
                        raise ValueError(f"{path}:{number}: not a label-reports JSON line ({_LAYOUT})")
                    yield str(record["report_id"]), record.get("findings", [])
    except UnicodeDecodeError:
        raise ValueError(f"{path}:{number + 1}: not UTF-8 text; --labels takes the JSONL file of "
                         "`radloop label-reports`") from None
    except OSError as error:
        raise ValueError(f"cannot read --labels {path}: {error.strerror or error}") from None


def pseudonymized_ids(report_ids: Iterable[str]) -> bool:
    """Whether every id is a pseudonym ``R-`` + 16 hex (and there is one at least); reads ``report_ids`` once,
    holding none of them."""
    seen = False
    for report_id in report_ids:
        if not PSEUDONYM.fullmatch(str(report_id)):
            return False
        seen = True
    return seen


def _record(line: str) -> dict | None:
    """One JSON line as a record, or None when it is none (an object with a report_id and a list of objects)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("report_id"), (str, int)):
        return None
    findings = record.get("findings", [])
    if not isinstance(findings, list) or not all(isinstance(entry, dict) for entry in findings):
        return None
    return record
