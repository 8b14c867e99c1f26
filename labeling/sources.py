"""Read reports to label: Open-i XML (tarball or folder), CSV ``report_id,text``; streamed one at a time."""

from __future__ import annotations

import csv
import html
import re
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


_DECLARATION = re.compile(rb"""\A(?:\xef\xbb\xbf)?<\?xml[^>]*encoding=["'](?:utf-8|UTF-8)["'][^>]*\?>""")
_UID = re.compile(r'<uId\s+id="([^"<&]*)"\s*/>')
_ABSTRACT = re.compile(r'<AbstractText(?:\s+Label="([^"<&]*)")?\s*(?:/>|>([^<]*)</AbstractText>)')
_MAJOR = re.compile(r"<major>([^<]*)</major>")
_ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)")


def _xml_text(raw: str) -> str:
    """Character data as an XML parser returns it: line ends normalised, the five entities and numeric
    references resolved."""
    return html.unescape(raw.replace("\r\n", "\n").replace("\r", "\n")) if ("&" in raw or "\r" in raw) else raw


def _parse_openi_fast(data: bytes) -> tuple[str | None, dict[str, str], tuple[str, ...]] | None:
    """The fields ``parse_openi_xml`` reads, by pattern, or None when the document is not in the plain
    shape every Open-i report has (then the XML parser decides).

    About four times faster than building the element tree of a 6 kB report, which matters when one
    process reads for several labelling workers.  Falls back on: another encoding, comments or CDATA,
    an entity other than XML's five, an ``AbstractText`` or ``major`` element with attributes or child
    elements the patterns do not cover, more than one ``uId``.
    """
    if not _DECLARATION.match(data) or b"<!" in data or b"\r" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _ENTITY.search(text):
        return None
    uids = _UID.findall(text)
    abstracts = _ABSTRACT.findall(text)
    majors = _MAJOR.findall(text)
    if (len(uids) > 1 or text.count("<uId") != len(uids) or text.count("<AbstractText") != len(abstracts)
            or text.count("<major") != len(majors)):
        return None
    sections = {_xml_text(label or "TEXT").upper(): _xml_text(body) for label, body in abstracts}
    codes = tuple(code for code in (_xml_text(major).strip() for major in majors) if code)
    return (_xml_text(uids[0]) if uids else None), sections, codes


def parse_openi_xml(data: bytes, fallback_id: str) -> SourceReport:
    """Parse one Open-i XML document (``<uId>``, ``<AbstractText Label=..>``, ``<MeSH><major>``)."""
    fast = _parse_openi_fast(data)
    if fast is not None:
        uid, sections, majors = fast
        return SourceReport(uid or fallback_id, assemble_text(sections), majors, sections)
    return _parse_openi_tree(data, fallback_id)


def _parse_openi_tree(data: bytes, fallback_id: str) -> SourceReport:
    """``parse_openi_xml`` through the XML parser (any well-formed document)."""
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
    """Yield reports from a CSV with columns ``report_id,text`` (header required; bad bytes replaced).

    Header names are matched as core's report ingest matches them: stripped and case-insensitive
    (``Report_ID``, `` TEXT`` work); other columns are ignored.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
        missing = {"report_id", "text"} - set(reader.fieldnames)
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
