"""Catalog overview for `radloop info` and the app: counts by table, region, dataset, split, recent ingest errors
and, apart from them as ingest counts them, ingest warnings, images still without a pixel hash (catalogued before
duplicates were recognised), images flagged BurnedInAnnotation (kept out of active-learning rounds), and on request
the images whose render or thumbnail file is missing or damaged (one quick check per file: not by default, as a
catalog of a million images would take seconds to minutes)."""

from __future__ import annotations

from sqlalchemy import func, select

from radloop.core.catalog import Catalog
from radloop.core.render import render_problem
from radloop.core.schema import Annotation, Image, IngestError, Report, Study

__all__ = ["catalog_info"]

#: how many images with a render problem ``check_renders`` names (the count covers them all)
RENDER_SAMPLE_LIMIT = 10
#: how ingest marks a warning in the ``ingest_errors`` table (``reason`` starts with it; see core/ingest_reports.py)
WARNING_PREFIX = "warning: "


def catalog_info(catalog: Catalog, *, recent_errors: int = 10, check_renders: bool = False) -> dict:
    """A JSON-able overview of the catalog; ``recent_errors`` caps both the recent errors and recent warnings.

    ``check_renders`` adds ``images_with_render_problem`` (render or thumbnail file missing, empty, not a PNG or
    cut short: :func:`radloop.core.render.render_problem`) and ``render_problem_samples`` (the first ones by id,
    what is wrong and the source file ``radloop ingest`` restores them from); it reads every image's two files.
    """
    result: dict = {"workspace": str(catalog.workspace.root), "schema_version": catalog.schema_version(),
                    "counts": catalog.counts()}
    with catalog.session() as session:
        def grouped(column, *where) -> dict:
            query = select(column, func.count()).where(*where).group_by(column).order_by(func.count().desc())
            counts: dict = {}
            for key, count in session.execute(query):  # null and "" are both no value: one "unknown" group
                name = str(key) if key not in (None, "") else "unknown"
                counts[name] = counts.get(name, 0) + count
            return dict(sorted(counts.items(), key=lambda item: -item[1]))

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
    if check_renders:
        result.update(_render_problems(catalog))
    return result


def _render_problems(catalog: Catalog) -> dict:
    damaged, samples = 0, []
    query = select(Image.id, Image.source_path, Image.render_path, Image.thumb_path).order_by(Image.id)
    with catalog.session() as session:
        for row in session.execute(query.execution_options(yield_per=5000)):
            problems = [f"{relative} {problem}" for relative in (row.render_path, row.thumb_path)
                        if (problem := render_problem(catalog.workspace.absolute(relative)))]
            if problems:
                damaged += 1
                if len(samples) < RENDER_SAMPLE_LIMIT:
                    samples.append(f"{row.id}: {'; '.join(problems)} (source {row.source_path})")
    return {"images_with_render_problem": damaged, "render_problem_samples": samples}
