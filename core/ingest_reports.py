"""Write parsed reports into the catalog and link them to studies and images.

Links, where the data says so:
- Open-i: the report's study is the pseudonym of its uid (``CXR1``); Open-i images ``CXR1_IM-...`` get the
  same study, whichever is ingested first.
- CSV ``study_id``: pseudonym of that key in the ``study`` namespace, the same one DICOM images get from
  their StudyInstanceUID, so a CSV keyed by StudyInstanceUID links to its DICOMs.
- CSV ``image``: the study of the catalogued image with that external id (file stem); also when the row's
  ``study_id`` is no catalogued study (e.g. a hospital's study number beside PNG images).
Reports still unlinked (or linked to a study that has no image) are linked at the end of every later ingest
once their images arrive, an ingest of images alone included (found by the new images' names through the
``report_image_names`` index, so that the work follows the ingest's size, not the number of reports waiting); a study made for such a report that nothing
refers to any more is deleted in the same transaction (:func:`remove_empty_studies`).  A CSV none of whose
reports reaches a catalogued image while the catalog has images gets one warning that says so.
A report's date (``Report.report_date``) is stored as the source gives it, like the text (which holds dates
too); a re-ingest that gives a date where there was none, or another one, updates it, one that gives none
keeps the stored one.
A report whose text changed loses its weak labels (those of the old text), so that the next ``label-reports
catalog`` labels it, and only it, again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import aliased

from radloop.core.catalog import Catalog, chunked
from radloop.core.deid import study_pseudonym
from radloop.core.ingest_summary import IngestSummary
from radloop.core.reports_io import ParsedReport, ReportProblem, read_reports
from radloop.core.schema import Base, Image, IngestError, Report, ReportImageName, Study, WeakLabel
from radloop.core.splits import split_for_study

__all__ = ["link_unlinked_reports", "remove_empty_studies", "write_reports"]

BATCH = 500


def write_reports(catalog: Catalog, path: Path, summary: IngestSummary, run_id: str, *,
                  dataset: str | None = None) -> None:
    """Read one report source and write its reports (and problems) to the catalog in batches."""
    name = dataset or _dataset_name(path)
    key = catalog.workspace.pseudonym_key
    batch: list[ParsedReport | ReportProblem] = []
    csv_reports: dict[str, list[str]] = {}  # CSV file -> ids of the reports read from it
    written: set[str] = set()  # ids of the reports read, and of the reports of the studies they left
    for item in read_reports(path):
        batch.append(item)
        if isinstance(item, ParsedReport):
            written.add(item.report_id)
            if item.meta.get("format") == "csv":
                csv_reports.setdefault(item.source.rsplit(":", 1)[0], []).append(item.report_id)
        if len(batch) >= BATCH:
            written |= _write_batch(catalog, batch, summary, run_id, name, key)
            batch = []
    written |= _write_batch(catalog, batch, summary, run_id, name, key)
    summary.reports_linked += link_unlinked_reports(catalog, report_ids=written)
    _warn_unlinked_csv(catalog, csv_reports, summary, run_id)


def link_unlinked_reports(catalog: Catalog, *, image_names: Iterable[str] | None = None,
                          report_ids: Iterable[str] | None = None) -> int:
    """Give the reports still waiting for their images the study of a catalogued image they name; returns how many.

    Waiting: no study, or a study of its own, with no image and no other report (made for the report from its
    ``study_id``, a key its images may never carry: a hospital's study number beside PNGs).  This is the rule
    :func:`write_reports` applies when the images come first (a study the catalog has decides, else the image
    named), so the order of the two ingests does not matter; ``ingest_paths`` calls it after writing images as
    well as after each report file.

    Args:
        image_names: external ids of the images an ingest added: only the reports naming one of them are looked
            at (``report_image_names`` index), so the work follows the ingest, not the reports waiting.
        report_ids: only these reports are looked at (those a report file wrote).
            With neither, every waiting report that names a catalogued image (one indexed join).
    """
    linked = 0
    with catalog.session() as session:
        if image_names is not None:
            scope: list[str] | None = sorted({
                report_id for part in chunked(sorted(set(image_names))) for report_id in session.scalars(
                    select(ReportImageName.report_id).where(ReportImageName.external_id.in_(part)))})
        else:
            scope = None if report_ids is None else sorted(
                report_ids if isinstance(report_ids, (set, frozenset)) else set(report_ids))
        left: set[str] = set()  # the studies the linked reports leave
        for waiting in _waiting_pages(session, scope):  # a page at a time: memory follows the page, not the reports
            names = sorted({name for row in waiting for name in row.image_external_ids})
            study_of: dict[str, str] = {}
            for part in chunked(names):
                for external_id, study_id in session.execute(select(Image.external_id, Image.study_id).where(
                        Image.external_id.in_(part)).order_by(Image.id)):
                    study_of.setdefault(external_id, study_id)
            for row in waiting:
                study = next((study_of[name] for name in row.image_external_ids if name in study_of), None)
                if study and study != row.study_id:
                    session.get(Report, row.id).study_id = study
                    linked += 1
                    if row.study_id:
                        left.add(row.study_id)
        remove_empty_studies(session, left)
    return linked


def _waiting_pages(session, scope: list[str] | None) -> Iterator[list]:
    """``(id, study_id, image_external_ids)`` of the waiting reports among ``scope`` (sorted ids; None: all of
    them that name a catalogued image), those naming at least one image, a page of ids at a time.  Linking a
    page's reports changes no other report's waiting (a report waits alone in its study)."""
    other = aliased(Report)
    has_images = select(Image.id).where(Image.study_id == Report.study_id).exists()
    shared = select(other.id).where(other.study_id == Report.study_id, other.id != Report.id).exists()
    query = select(Report.id, Report.study_id, Report.image_external_ids).where(
        or_(Report.study_id.is_(None), ~has_images & ~shared))
    if scope is None:
        named = (select(ReportImageName.report_id)
                 .join(Image, Image.external_id == ReportImageName.external_id))
        last = ""
        while rows := session.execute(query.where(Report.id.in_(named), Report.id > last)
                                      .order_by(Report.id).limit(BATCH)).all():
            last = rows[-1].id
            yield [row for row in rows if row.image_external_ids]
    else:
        for ids in chunked(scope, BATCH):
            yield [row for row in session.execute(query.where(Report.id.in_(ids))) if row.image_external_ids]


def remove_empty_studies(session, study_ids: Iterable[str]) -> int:
    """Delete those of ``study_ids`` that nothing refers to any more (no image, no report: no row of any table
    with a foreign key to ``studies``), in the caller's transaction; returns how many.

    A study made for a report whose images were still to come (its ``study_id`` a key they never carry, e.g. a
    hospital's study number beside PNGs) is empty once the report joins its images' study: left, it was one
    study too many in ``radloop info`` and in every per-study count.
    """
    study_ids = sorted(set(study_ids))
    if not study_ids:
        return 0
    session.flush()  # the reports' new studies first
    referring = [column for table in Base.metadata.tables.values() for key in table.foreign_keys
                 if key.column.table.name == Study.__tablename__ for column in [key.parent]]
    removed = 0
    for start in range(0, len(study_ids), BATCH):
        unused = [~select(column).where(column == Study.id).exists() for column in referring]
        removed += session.execute(delete(Study).where(
            Study.id.in_(study_ids[start:start + BATCH]), *unused)).rowcount or 0
    return removed


#: how a CSV report reaches its images (said in the warning about a CSV that reaches none)
CSV_LINK_RULE = ("a CSV report links to images through its study_id column (the StudyInstanceUID of DICOM "
                 "images) or its image column (the file name or stem of an ingested image)")


def _warn_unlinked_csv(catalog: Catalog, csv_reports: dict[str, list[str]], summary: IngestSummary,
                       run_id: str) -> None:
    """One warning per CSV file none of whose reports reaches a catalogued image, when the catalog has images
    (a report-only workspace has nothing to link to: no warning then)."""
    if not csv_reports:
        return
    with catalog.session() as session:
        images = session.scalar(select(func.count()).select_from(Image)) or 0
        if not images:
            return
        for source, ids in csv_reports.items():
            ids = list(dict.fromkeys(ids))
            if any(session.scalars(select(Report.id).join(Image, Image.study_id == Report.study_id)
                                   .where(Report.id.in_(ids[start:start + BATCH])).limit(1)).first()
                   for start in range(0, len(ids), BATCH)):
                continue
            reason = (f"none of the {len(ids)} reports of {Path(source).name} links to any of the {images} "
                      f"catalogued images: {CSV_LINK_RULE}")
            session.add(IngestError(run_id=run_id, path=source, stage="link", reason="warning: " + reason))
            summary.record_problem(source, "link", reason, warning=True)


def _dataset_name(path: Path) -> str:
    """Dataset of a report source: a folder's name (a folder is read as one source), an archive's or CSV's
    name without its suffix.  An Open-i XML file named on its own (one report each: ``ingest dir/*.xml``)
    gets the folder it sits in when that folder holds other XML reports, as the folder would, else its stem."""
    if path.is_dir():
        return path.resolve().name or str(path)
    name = path.name
    if path.is_file() and name.lower().endswith(".xml") and _in_xml_folder(path):
        return path.parent.resolve().name or name[: -len(".xml")]
    for suffix in (".tar.gz", ".tgz", ".tar", ".xml", ".csv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _in_xml_folder(path: Path) -> bool:
    try:
        return any(other.suffix.lower() == ".xml" and other.name != path.name and other.is_file()
                   for other in path.parent.iterdir())
    except OSError:
        return False


def _write_batch(catalog: Catalog, batch: list, summary: IngestSummary, run_id: str, dataset: str,
                 key: bytes) -> set[str]:
    """Write one batch; returns the ids of the other reports of the studies its updated reports left (one of
    them may be waiting for its images now that it no longer shares its study)."""
    if not batch:
        return set()
    left: set[str | None] = set()  # studies that updated reports moved away from
    names: dict[str, list[str]] = {}  # report id -> the image names it gives now (reports added or changed)
    with catalog.session() as session:
        # the batch's reports already catalogued, in one query (not one per report); the new ones join as added
        ids = sorted({item.report_id for item in batch if isinstance(item, ParsedReport)})
        known = {report.id: report for part in chunked(ids)
                 for report in session.scalars(select(Report).where(Report.id.in_(part)))}
        studies = _studies_for(session, batch, key, dataset)
        for position, item in enumerate(batch):
            if isinstance(item, ReportProblem):
                warning = item.severity == "warning"
                session.add(IngestError(run_id=run_id, path=item.path, stage=item.stage,
                                        reason=("warning: " if warning else "") + item.reason))
                summary.record_problem(item.path, item.stage, item.reason, warning=warning)
                continue
            if item.encoding != "utf-8":
                reason = f"warning: report {item.report_id} is not valid UTF-8; decoded as {item.encoding}"
                session.add(IngestError(run_id=run_id, path=item.source, stage="encoding", reason=reason))
                summary.record_problem(item.source, "encoding", reason, warning=True)
            study_id, via_images = studies[position]
            left.add(_upsert(session, item, study_id, dataset, summary, via_images=via_images, names=names,
                             known=known))
        _store_image_names(session, names)
        left.discard(None)
        others = {report_id for studies in chunked(sorted(left)) for report_id in session.scalars(
            select(Report.id).where(Report.study_id.in_(studies)))}
        remove_empty_studies(session, left)
    return others


def _store_image_names(session, names: dict[str, list[str]]) -> None:
    """Replace the ``report_image_names`` rows of the reports in ``names`` (report id -> image names)."""
    session.flush()  # the reports first
    table = ReportImageName.__table__
    for ids in chunked(sorted(names)):
        session.execute(delete(table).where(table.c.report_id.in_(ids)))
    rows = [{"report_id": report_id, "external_id": name} for report_id, given in names.items()
            for name in dict.fromkeys(given)]
    for part in chunked(rows):
        session.execute(insert(table), part)


def _studies_for(session, batch: list, key: bytes, dataset: str) -> dict[int, tuple[str | None, bool]]:
    """Each report's study (by its position in ``batch``) and whether it came from an image the report names.

    A study key (Open-i uid, CSV ``study_id``) whose study is catalogued decides.  One that is not (e.g. a
    hospital's own study number beside PNG images, which carry no StudyInstanceUID) gives way to the study of
    a catalogued image the report names; with no such image, the study is created for images still to come.
    The batch's studies and images are looked up in a few queries and the new studies flushed once (a query and
    a flush per report took 2.3 ms each: 100k reports with a study_id column took 227 s).
    """
    items = {position: item for position, item in enumerate(batch) if isinstance(item, ParsedReport)}
    keyed = {position: study_pseudonym(key, item.study_namespace, item.study_key)
             for position, item in items.items() if item.study_key and item.study_namespace}
    existing: set[str] = set()
    for part in chunked(sorted(set(keyed.values()))):
        existing.update(session.scalars(select(Study.id).where(Study.id.in_(part))))
    study_of_image: dict[str, str] = {}
    for part in chunked(sorted({name for item in items.values() for name in item.image_external_ids})):
        for external_id, study_id in session.execute(
                select(Image.external_id, Image.study_id).where(Image.external_id.in_(part))):
            study_of_image.setdefault(external_id, study_id)
    result: dict[int, tuple[str | None, bool]] = {}
    for position, item in items.items():
        by_image = next((study_of_image[name] for name in item.image_external_ids if name in study_of_image), None)
        study_id = keyed.get(position)
        if study_id is None:
            result[position] = (by_image, by_image is not None)
        elif study_id in existing:
            result[position] = (study_id, False)
        elif by_image is not None:
            result[position] = (by_image, True)
        else:
            region = "chest" if item.study_namespace == "openi" else None
            session.add(Study(id=study_id, dataset=dataset, body_region=region, split=split_for_study(study_id)))
            existing.add(study_id)
            result[position] = (study_id, False)
    session.flush()
    return result


def _upsert(session, item: ParsedReport, study_id: str | None, dataset: str, summary: IngestSummary, *,
            via_images: bool = False, names: dict[str, list[str]], known: dict[str, Report]) -> str | None:
    """Add or update the report (its image names into ``names`` when it is new or changed); returns the study it
    left (an updated report moved to another one), if any.  ``known``: the batch's catalogued reports by id (a
    report added here joins it, so that a repeated id later in the batch finds it)."""
    digest = item.content_hash
    existing = known.get(item.report_id)
    if via_images and (existing is None or existing.study_id is None):
        summary.reports_linked += 1
    meta = dict(item.meta, source=Path(item.source.split(":")[0]).name)
    if existing is None:
        known[item.report_id] = report = Report(
            id=item.report_id, study_id=study_id, content_hash=digest, dataset=dataset, text=item.text,
            sections=dict(item.sections), expert_codes=list(item.expert_codes),
            image_external_ids=list(item.image_external_ids), meta=meta, report_date=item.report_date)
        session.add(report)
        names[item.report_id] = list(item.image_external_ids)
        summary.reports_added += 1
    elif existing.content_hash == digest:
        if existing.study_id is None and study_id:
            existing.study_id = study_id
        if item.report_date is not None and existing.report_date != item.report_date:  # the date is no part of
            existing.report_date = item.report_date  # the hash: a source that gained or corrected one updates it
            summary.reports_updated += 1
        else:
            summary.reports_skipped_existing += 1
    else:  # the source changed: keep the newest text, remember the previous hash
        meta["previous_content_hash"] = existing.content_hash
        # its weak labels are those of the old text: drop them (and the meta that marks it labelled, replaced
        # below), so that the next `label-reports catalog` labels this report again, and it alone
        session.execute(delete(WeakLabel).where(WeakLabel.report_id == item.report_id))
        existing.text, existing.sections, existing.content_hash = item.text, dict(item.sections), digest
        existing.expert_codes, existing.image_external_ids = list(item.expert_codes), list(item.image_external_ids)
        previous, existing.study_id = existing.study_id, study_id or existing.study_id
        existing.meta = meta
        existing.report_date = item.report_date or existing.report_date
        names[item.report_id] = list(item.image_external_ids)
        summary.reports_updated += 1
        return previous if previous != existing.study_id else None
    return None
