"""Read reports to label: Open-i XML (tarball or folder), CSV ``report_id,text``; streamed one at a time."""

from __future__ import annotations

import csv
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

#: Open-i section order when a report's text is assembled from its <AbstractText> parts.
OPENI_SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")


@dataclass(frozen=True)
class SourceReport:
    """One report read from an input: its id, text (None when unreadable), expert codes and read error."""

    report_id: str
    text: str | None
    expert_codes: tuple[str, ...] = ()
    sections: dict = field(default_factory=dict)
    error: str | None = None


def assemble_text(sections: dict[str, str]) -> str:
    """Join sections as ``HEADER: body`` lines (known Open-i order first)."""
    order = [name for name in OPENI_SECTIONS if name in sections]
    order += [name for name in sections if name not in OPENI_SECTIONS]
    return "\n".join(f"{name}: {sections[name].strip()}" for name in order if (sections[name] or "").strip())


def parse_openi_xml(data: bytes, fallback_id: str) -> SourceReport:
    """Parse one Open-i XML document (``<uId>``, ``<AbstractText Label=..>``, ``<MeSH><major>``)."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        return SourceReport(fallback_id, None, error=f"invalid XML: {error}")
    uid = root.find("uId")
    report_id = uid.get("id") if uid is not None and uid.get("id") else fallback_id
    sections = {node.get("Label", "TEXT").upper(): (node.text or "") for node in root.iter("AbstractText")}
    majors = tuple((node.text or "").strip() for node in root.iter("major") if (node.text or "").strip())
    return SourceReport(report_id, assemble_text(sections), majors, sections)


def iter_openi(path: Path) -> Iterator[SourceReport]:
    """Yield reports from an Open-i tarball (``.tgz``/``.tar.gz``/``.tar``) or a folder of XML files."""
    if path.is_dir():
        for file in sorted(path.rglob("*.xml")):
            yield parse_openi_xml(file.read_bytes(), file.stem)
        return
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".xml"):
                handle = archive.extractfile(member)
                if handle is not None:
                    yield parse_openi_xml(handle.read(), Path(member.name).stem)


def iter_csv(path: Path) -> Iterator[SourceReport]:
    """Yield reports from a CSV with columns ``report_id,text`` (header required; bad bytes replaced)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        missing = {"report_id", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: CSV needs columns report_id,text (missing {', '.join(sorted(missing))})")
        for row_number, row in enumerate(reader, start=2):
            report_id = (row.get("report_id") or "").strip() or f"row{row_number}"
            yield SourceReport(report_id, row.get("text"))


def iter_reports(path: str | Path) -> Iterator[SourceReport]:
    """Dispatch on the input kind; raise ``ValueError`` naming an input that is none of them."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"input not found: {path}")
    name = path.name.lower()
    if path.is_dir() or name.endswith((".tgz", ".tar.gz", ".tar")):
        return iter_openi(path)
    if name.endswith(".csv"):
        return iter_csv(path)
    raise ValueError(f"unsupported input {path}: expected an Open-i tarball/folder or a CSV (report_id,text)")
