"""Read radiology reports: Open-i XML (a tarball, a folder or single files) and CSV.

Open-i: the report id is ``<uId id="CXR1">``; ``<AbstractText Label=...>`` gives the sections (COMPARISON,
INDICATION, FINDINGS, IMPRESSION), ``<MeSH><major>`` the manual (expert) MeSH coding and ``<parentImage id>``
the Open-i image stems.  CSV: ``report_id,text[,study_id,image,report_date]`` with a header row (other columns
are ignored).

A report's date (``ParsedReport.report_date``) comes from a CSV's ``report_date``, ``date`` or ``study_date``
column (the first of them a row fills): ``YYYY-MM-DD``, ``YYYYMMDD`` or an ISO date-time (its date as written;
the time and any offset are dropped).  ``03/05/2023`` and other forms are refused (month or day first is a
guess); a file's unreadable dates make one ``warning`` naming their lines, not the values, and those reports
are kept without a date.  Open-i XML carries no report date (its ``articleDate`` / ``PubDate`` are the
collection's publication date, 2013-08-01 in every IU report), so none is read from it.

Bytes that are not UTF-8 are decoded with a fallback (cp1252, then latin-1) and the fallback is recorded
(``ParsedReport.encoding`` / a :class:`ReportProblem` of severity ``warning``).  A report without text is
skipped as a ``warning`` problem (it carries nothing to label; nothing is lost); unparsable files and rows
are ``error`` problems.  Parsing never raises for one bad report.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import tarfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

__all__ = ["DATE_COLUMNS", "ParsedReport", "ReportProblem", "decode_text", "format_sections", "parse_report_date",
           "read_reports"]

SECTION_ORDER = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
#: CSV columns that give a report's date, the first a row fills deciding
DATE_COLUMNS = ("report_date", "date", "study_date")
#: the date forms :func:`parse_report_date` accepts (said in the warning about the others)
DATE_FORMS = "YYYY-MM-DD, YYYYMMDD or an ISO date-time"
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ].*)?|\d{8}")


@dataclass(frozen=True)
class ParsedReport:
    """One report as read from its source (no catalog ids yet except the source's own)."""

    report_id: str
    text: str
    source: str  # file (and member) it came from
    sections: dict[str, str] = field(default_factory=dict)
    expert_codes: tuple[str, ...] = ()
    image_external_ids: tuple[str, ...] = ()
    study_key: str | None = None  # source study key: Open-i uid or the CSV study_id
    study_namespace: str | None = None  # "openi" | "study"
    encoding: str = "utf-8"
    meta: dict = field(default_factory=dict)
    report_date: date | None = None

    @property
    def content_hash(self) -> str:
        payload = "\x1f".join([self.report_id, self.text, *self.expert_codes, *self.image_external_ids])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReportProblem:
    """A report (or file) that could not be used as is: ``severity`` error (skipped) | warning (kept)."""

    path: str
    stage: str
    reason: str
    severity: str = "error"


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes as UTF-8 (BOM allowed), else cp1252, else latin-1; returns (text, encoding used)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    for encoding in FALLBACK_ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace"), "latin-1"  # unreachable: latin-1 decodes every byte


def parse_report_date(value: str) -> date | None:
    """The date of ``value`` (see the module docstring for the forms); None for a blank value.

    Raises:
        ValueError: another form, or no such day.
    """
    value = value.strip()
    if not value:
        return None
    if not _ISO_DATE.fullmatch(value):
        raise ValueError(f"not {DATE_FORMS}")
    if len(value) == 8:
        return datetime.strptime(value, "%Y%m%d").date()
    return datetime.fromisoformat(value).date() if len(value) > 10 else date.fromisoformat(value)


def format_sections(sections: dict[str, str]) -> str:
    """``"SECTION: text"`` paragraphs in report order (known sections first), empty sections left out."""
    names = [name for name in SECTION_ORDER if name in sections] + [n for n in sections if n not in SECTION_ORDER]
    return "\n\n".join(f"{name}: {sections[name]}" for name in names if sections[name].strip())


def read_reports(path: Path) -> Iterator[ParsedReport | ReportProblem]:
    """Yield the reports (and problems) of a tarball, folder, XML file or CSV file."""
    path = Path(path)
    name = path.name.lower()
    try:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in (".xml", ".csv"):
                    yield from read_reports(child)
        elif name.endswith((".tgz", ".tar.gz", ".tar")):
            yield from _read_tarball(path)
        elif name.endswith(".csv"):
            yield from _read_csv_file(path)
        elif name.endswith(".xml"):
            yield _read_openi_xml(path.read_bytes(), str(path))
        else:
            yield ReportProblem(str(path), "parse", "unsupported report file (expected .xml, .tgz or .csv)")
    except (OSError, tarfile.TarError) as error:
        yield ReportProblem(str(path), "read", f"cannot read report file: {error}")


def _read_tarball(path: Path) -> Iterator[ParsedReport | ReportProblem]:
    with tarfile.open(path) as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile()), key=lambda m: _natural_key(m.name))
        for member in members:
            if not member.name.lower().endswith(".xml"):
                continue
            handle = archive.extractfile(member)
            data = handle.read() if handle else b""
            yield _read_openi_xml(data, f"{path}:{member.name}")


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_openi_xml(data: bytes, source: str) -> ParsedReport | ReportProblem:
    if not data.strip():
        return ReportProblem(source, "parse", "skipped: empty report file (no content)", "warning")
    encoding = "utf-8"
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        text, encoding = decode_text(data)
        if encoding == "utf-8":
            return ReportProblem(source, "parse", f"not well-formed XML: {error}")
        try:  # declared UTF-8 (or nothing) but written in a legacy encoding: parse the decoded text
            root = ElementTree.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
        except ElementTree.ParseError as second:
            return ReportProblem(source, "parse", f"not well-formed XML (also as {encoding}): {second}")
    uid = root.find("uId")
    report_id = (uid.get("id") if uid is not None else None) or ""
    if not report_id:
        return ReportProblem(source, "parse", "Open-i report without <uId id=...>")
    sections: dict[str, str] = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "TEXT").strip().upper()
        value = " ".join("".join(node.itertext()).split())
        if value:
            sections[label] = value
    text = format_sections(sections)
    if not text:
        codes = [m.text for m in root.iter("major") if m.text]
        return ReportProblem(source, "parse", f"skipped: report {report_id} has no text (all sections empty; "
                                              f"MeSH {codes})", "warning")
    mesh = root.find("MeSH")
    major = tuple(" ".join((m.text or "").split()) for m in mesh.findall("major")) if mesh is not None else ()
    automatic = [" ".join((m.text or "").split()) for m in mesh.findall("automatic")] if mesh is not None else []
    images = tuple(node.get("id") for node in root.iter("parentImage") if node.get("id"))
    meta = {"mesh_automatic": automatic, "format": "openi"}
    if encoding != "utf-8":
        meta["decode_fallback"] = encoding
    return ParsedReport(report_id=report_id, text=text, source=source, sections=sections,
                        expert_codes=tuple(code for code in major if code), image_external_ids=images,
                        study_key=report_id, study_namespace="openi", encoding=encoding, meta=meta)


#: Bytes read at a time when a CSV file's encoding is checked.
_ENCODING_CHUNK = 1 << 20


def file_encoding(path: Path) -> str:
    """The encoding :func:`decode_text` would pick for the file's bytes, found reading it a chunk at a time (a report
    CSV of a million reports is GBs: decoding it whole held it several times over)."""
    for encoding in ("utf-8", *FALLBACK_ENCODINGS):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(_ENCODING_CHUNK):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"  # unreachable: latin-1 decodes every byte


def _read_csv_file(path: Path) -> Iterator[ParsedReport | ReportProblem]:
    """The reports of a CSV file, streamed: what is held at once is one row, not the file."""
    encoding = file_encoding(path)
    with path.open(encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as handle:
        yield from _read_csv(handle, str(path), encoding)


def _read_csv(handle, source: str, encoding: str) -> Iterator[ParsedReport | ReportProblem]:
    if encoding != "utf-8":
        yield ReportProblem(source, "encoding", f"file is not valid UTF-8; decoded as {encoding}", "warning")
    reader = csv.DictReader(handle)
    fields = [name.strip().lower() for name in reader.fieldnames or []]
    if "report_id" not in fields or "text" not in fields:
        yield ReportProblem(source, "parse",
                            f"CSV needs a header with report_id,text[,study_id,image,report_date]; got {fields}")
        return
    reader.fieldnames = fields
    date_columns = [name for name in DATE_COLUMNS if name in fields]
    bad_dates: list[int] = []  # lines whose date could not be read
    for line, row in enumerate(reader, start=2):
        report_id = (row.get("report_id") or "").strip()
        body = (row.get("text") or "").strip()
        where = f"{source}:{line}"
        if not report_id:
            yield ReportProblem(where, "parse", "CSV row without report_id")
            continue
        if not body:
            yield ReportProblem(where, "parse", f"skipped: report {report_id} is empty", "warning")
            continue
        study = (row.get("study_id") or "").strip() or None
        image = (row.get("image") or "").strip()
        images = tuple(Path(image).stem if image.lower().endswith((".png", ".jpg", ".jpeg", ".dcm")) else image
                       for image in [image] if image)
        meta = {"format": "csv"}
        if encoding != "utf-8":
            meta["decode_fallback"] = encoding
        given = next((row[name] for name in date_columns if (row.get(name) or "").strip()), "")
        try:
            report_date = parse_report_date(given)
        except ValueError:
            report_date = None
            bad_dates.append(line)
        yield ParsedReport(report_id=report_id, text=body, source=where, sections=_sections_of(body),
                           image_external_ids=images, study_key=study, study_namespace="study" if study else None,
                           encoding=encoding, meta=meta, report_date=report_date)
    if bad_dates:
        lines = ", ".join(str(line) for line in bad_dates[:10]) + (", ..." if len(bad_dates) > 10 else "")
        yield ReportProblem(source, "parse", f"{len(bad_dates)} report date(s) not understood (line(s) {lines}; "
                                             f"accepted: {DATE_FORMS}; 03/05/2023 is ambiguous): those reports "
                                             f"are kept without a date", "warning")


_SECTION_HEADER = re.compile(r"(?im)^\s*(COMPARISON|INDICATION|HISTORY|TECHNIQUE|FINDINGS|IMPRESSION)\s*:\s*")


def _sections_of(text: str) -> dict[str, str]:
    """Sections of a free-text report written as ``SECTION: ...`` paragraphs (empty dict when none)."""
    matches = list(_SECTION_HEADER.finditer(text))
    sections = {}
    for match, following in zip(matches, matches[1:] + [None]):
        end = following.start() if following else len(text)
        value = " ".join(text[match.end():end].split())
        if value:
            sections[match.group(1).upper()] = value
    return sections
