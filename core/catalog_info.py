"""Catalog overview for `radloop info` and the app: counts by table, region, dataset, split, recent ingest errors
and, apart from them as ingest counts them, ingest warnings, images still without a pixel hash (catalogued before
duplicates were recognised), images flagged BurnedInAnnotation (kept out of active-learning rounds)."""

from __future__ import annotations

from sqlalchemy import func, select

from radloop.core.catalog import Catalog
from radloop.core.schema import Annotation, Image, IngestError, Report, Study

__all__ = ["catalog_info"]

#: how ingest marks a warning in the ``ingest_errors`` table (``reason`` starts with it; see core/ingest_reports.py)
WARNING_PREFIX = "warning: "


def catalog_info(catalog: Catalog, *, recent_errors: int = 10) -> dict:
    """A JSON-able overview of the catalog; ``recent_errors`` caps both the recent errors and recent warnings."""
    result: dict = {"workspace": str(catalog.workspace.root), "schema_version": catalog.schema_version(),
                    "counts": catalog.counts()}
    with catalog.session() as session:
        def grouped(column, *where) -> dict:
            query = select(column, func.count()).where(*where).group_by(column).order_by(func.count().desc())
            return {str(key) if key is not None else "unknown": count for key, count in session.execute(query)}

        result["images_by_body_region"] = grouped(Image.body_region)
        result["images_by_dataset"] = grouped(Image.dataset)
        result["images_by_format"] = grouped(Image.source_format)
        # rows catalogued before pixel hashes: not recognised as duplicates until a re-ingest of their file
        result["images_without_pixel_hash"] = session.scalar(
            select(func.count()).select_from(Image).where(Image.pixel_hash.is_(None))) or 0
        # text in the pixels (possibly identifying): catalogued, never in a round
        result["images_with_burned_in_annotation"] = session.scalar(
            select(func.count()).select_from(Image)
            .where(Image.meta["burned_in_annotation"].as_boolean().is_(True))) or 0
        result["images_by_split"] = {
            split: count for split, count in session.execute(
                select(Study.split, func.count(Image.id)).join(Image, Image.study_id == Study.id)
                .group_by(Study.split))}
        result["studies_by_split"] = grouped(Study.split)
        result["reports_by_dataset"] = grouped(Report.dataset)
        result["reports_linked_to_study"] = session.scalar(
            select(func.count()).select_from(Report).where(Report.study_id.is_not(None))) or 0
        result["annotations_by_source"] = grouped(Annotation.source)
        result["annotations_by_label"] = grouped(Annotation.label)
        # ingest stores warnings (a report without text, BurnedInAnnotation, a duplicate) as rows of the same
        # table, their reason prefixed "warning: ", and counts them as warnings, not errors: so does this
        warning = IngestError.reason.startswith(WARNING_PREFIX)
        result["ingest_errors_by_stage"] = grouped(IngestError.stage, ~warning)
        result["ingest_warnings_by_stage"] = grouped(IngestError.stage, warning)
        # counts["ingest_errors"] is the table's row count, warnings included: split it as ingest does
        if "ingest_errors" in result["counts"]:
            result["counts"]["ingest_errors"] = sum(result["ingest_errors_by_stage"].values())
            result["counts"]["ingest_warnings"] = sum(result["ingest_warnings_by_stage"].values())
        result["last_error_run"] = session.scalars(
            select(IngestError.run_id).where(~warning).order_by(IngestError.id.desc()).limit(1)).first()
        result["last_warning_run"] = session.scalars(
            select(IngestError.run_id).where(warning).order_by(IngestError.id.desc()).limit(1)).first()

        def recent(*where) -> list[str]:
            rows = session.scalars(select(IngestError).where(*where).order_by(IngestError.id.desc())
                                   .limit(recent_errors)).all()
            return [f"[{row.run_id}] {row.stage}: {row.path}: {row.reason.removeprefix(WARNING_PREFIX)}"
                    for row in rows]

        result["recent_errors"] = recent(~warning)
        result["recent_warnings"] = recent(warning)
    return result
