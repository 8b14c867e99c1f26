"""Case search: the catalog images nearest to a query image or case, with thumbnails, labels and reports.

A query file that is a catalogued image (:func:`radloop.retrieval.query_match.match_catalog_file`: the same file bytes, or the same decoded
pixels in a re-saved / re-encoded copy) is searched as that case.  Any other query image (or a catalogued one
without an embedding yet) is embedded on the fly with the encoder the index was built from.  The index of an
encoder version is loaded from ``<workspace>/indexes/<version>/`` (memory-mapped), extended with embeddings added
since it was saved, or built and saved when there is none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from radloop.retrieval.index import IndexConfig, IndexManager, index_folder
from radloop.retrieval.query_match import match_catalog_file

#: Filter keys and the catalog column (on ``Image``) each one reads; ``finding`` is special.
FILTER_KEYS = ("body_region", "finding", "split", "dataset", "modality", "view", "laterality")
#: Laterality spellings that mean the same side: the vocabulary's words and DICOM's ImageLaterality codes.
LATERALITY_SYNONYMS = {"left": ("left", "l"), "right": ("right", "r"), "bilateral": ("bilateral", "b")}
EXCERPT_CHARS = 240

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseNeighbour:
    """One search hit.

    Attributes:
        rank: 1 = nearest.
        distance: 1 - cosine similarity (0 = identical direction).
        thumb_path / render_path: absolute paths of the thumbnail and the 8-bit render.
        labels: expert labels finding -> 0/1.
        report_labels: report weak labels finding -> positive/negative/uncertain.
        report_excerpt: start of the study's report (FINDINGS / IMPRESSION when sectioned).
    """

    rank: int
    image_id: str
    study_id: str
    distance: float
    thumb_path: str | None
    render_path: str | None
    body_region: str | None
    split: str | None
    labels: dict[str, int] = field(default_factory=dict)
    report_labels: dict[str, str] = field(default_factory=dict)
    report_excerpt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_filters(items: list[str] | None) -> dict[str, list[str]]:
    """``["body_region=wrist", "finding=fracture"]`` -> ``{"body_region": ["wrist"], ...}``.

    Raises:
        ValueError: an item without ``=`` or an unknown key (the valid keys are listed).
    """
    filters: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"filter {item!r} must look like key=value (keys: {', '.join(FILTER_KEYS)})")
        key, value = (part.strip() for part in item.split("=", 1))
        filters.setdefault(key, []).append(value)
    check_filters(filters)
    return filters


def check_filters(filters: dict[str, Any] | None) -> dict[str, list[str]]:
    """Normalise filter values to lists and reject unknown keys."""
    normalised = {}
    for key, value in (filters or {}).items():
        if key not in FILTER_KEYS:
            raise ValueError(f"unknown filter {key!r}; valid: {', '.join(FILTER_KEYS)}")
        normalised[key] = [str(item) for item in (value if isinstance(value, (list, tuple, set)) else [value])]
    return normalised


def _vocabulary(key: str) -> tuple[str, ...]:
    from radloop.core import vocabulary
    from radloop.core.splits import SPLITS

    return {"body_region": vocabulary.BODY_REGIONS, "finding": vocabulary.FINDINGS, "split": SPLITS,
            "laterality": vocabulary.LATERALITIES}.get(key, ())


def _stored_values(catalog, key: str) -> set[str]:
    """The distinct values the catalog holds for a filter key."""
    from radloop.core.schema import Annotation, Image, Study, WeakLabel

    columns = ([Study.split] if key == "split" else [WeakLabel.finding, Annotation.label] if key == "finding"
               else [getattr(Image, key)])
    with catalog.session() as session:
        return {value for column in columns for value in session.scalars(select(column).distinct())
                if value is not None and value != ""}


def resolve_filter_values(catalog, filters: dict[str, list[str]]) -> dict[str, list[str]]:
    """Map each filter value to the catalog values it matches, refusing values that match nothing known.

    A value is valid when it is in the vocabulary (``radloop.core.vocabulary``: body regions, findings,
    lateralities; ``radloop.core.splits.SPLITS``) or stored in the catalog (datasets, modalities, views and
    any other value ingest wrote).  Matching ignores case; laterality also takes DICOM's codes
    (``L`` / ``R`` / ``B`` for ``left`` / ``right`` / ``bilateral``).  A valid value that no image has yet
    matches nothing (no hits), not an error.

    Raises:
        ValueError: a value that is neither in the vocabulary nor in the catalog (the valid ones are listed).
    """
    resolved = {}
    for key, values in filters.items():
        stored = _stored_values(catalog, key)
        known = {value.lower(): value for value in (*_vocabulary(key), *sorted(stored))}
        matched = []
        for value in values:
            wanted = value.strip().lower()
            if key == "laterality":
                wanted_set = next((set(spellings) for spellings in LATERALITY_SYNONYMS.values()
                                   if wanted in spellings), {wanted})
            else:
                wanted_set = {wanted}
            if not wanted_set & set(known):
                if key == "laterality":
                    synonyms = {spelling for spellings in LATERALITY_SYNONYMS.values() for spelling in spellings}
                    valid = [f"{word} ({code.upper()})" for word, code in LATERALITY_SYNONYMS.values()] + sorted(
                        item for item in stored if item.lower() not in synonyms)
                else:
                    valid = sorted(set(known.values()), key=str.lower)
                if not _vocabulary(key):
                    raise ValueError(f"no image has {key} {value!r}; values in the catalog: "
                                     f"{', '.join(valid) or 'none'}")
                raise ValueError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")
            matched += sorted(item for item in stored if item.lower() in wanted_set)
            if key == "finding":  # expert labels and weak labels are looked up by the vocabulary name too
                matched += [known[name] for name in sorted(wanted_set) if name in known]
        resolved[key] = list(dict.fromkeys(matched))
    return resolved


def resolve_encoder_version(catalog, encoder: str | None = None) -> str:
    """The encoder version to search with: the one named, the current encoder, or the only one embedded.

    Raises:
        LookupError: none can be chosen (the message says what to run).
    """
    from radloop.core.embeddings import embedded_versions

    if encoder:
        path = Path(encoder)
        if path.is_dir() and (path / "encoder.json").is_file():
            from radloop.ssl import load_encoder

            return load_encoder(path).version
        from radloop.core.schema import Model

        with catalog.session() as session:
            registered = set(session.scalars(select(Model.version).where(Model.kind == "encoder")))
        known = registered | set(embedded_versions(catalog))
        if encoder not in known:
            raise LookupError(f"unknown encoder {encoder!r} (encoders: {', '.join(sorted(known)) or 'none yet'})")
        return encoder
    current = catalog.current_model("encoder", kind="encoder") or catalog.current_model("encoder")
    if current is not None:
        return current.version
    versions = embedded_versions(catalog)
    if len(versions) == 1:
        return next(iter(versions))
    if not versions:
        raise LookupError("no embeddings in the catalog: train or register an encoder and run `radloop embed`")
    raise LookupError(f"several encoder versions are embedded ({', '.join(sorted(versions))}) and none is "
                      "current: pass --encoder VERSION")


def load_index(catalog, model_version: str, config: IndexConfig | None = None) -> IndexManager:
    """The saved index of ``model_version``, brought up to date with the catalog's embeddings."""
    from radloop.core.embeddings import embedding_mark, load_embeddings
    from radloop.core.schema import Embedding

    folder = index_folder(catalog.workspace, model_version)
    if not (folder / "manifest.json").is_file():
        manager = IndexManager.from_catalog(catalog, model_version, config)
        manager.save(folder)
        return manager
    manager = IndexManager.load(folder, model_version=model_version)
    query = select(Embedding.image_id).where(Embedding.model_version == model_version)
    mark = manager.catalog_mark
    if mark and embedding_mark(catalog, model_version, mark["max_id"]) == mark:
        query = query.where(Embedding.id > mark["max_id"])  # the rows up to the mark are the ones indexed
    latest = embedding_mark(catalog, model_version)  # before reading: rows added meanwhile lie above it
    with catalog.session() as session:
        stored = set(session.scalars(query))
    missing = sorted(image_id for image_id in stored if image_id not in manager)
    if missing:
        new = load_embeddings(catalog, model_version, missing)
        manager.add(new.vectors, new.image_ids, model_version=model_version)
        manager.catalog_mark = latest  # every row up to it is indexed now
        manager.save(folder)
    return manager


def _allowed_ids(catalog, filters: dict[str, list[str]]) -> list[str] | None:
    from radloop.core.schema import Image, Report, Study, WeakLabel
    from radloop.core.targets import image_labels

    if not filters:
        return None
    with catalog.session() as session:
        query = select(Image.id, Image.study_id).join(Study, Study.id == Image.study_id)
        for key, values in filters.items():
            if key == "split":
                query = query.where(Study.split.in_(values))
            elif key != "finding":
                query = query.where(getattr(Image, key).in_(values))
        rows = session.execute(query).all()
        allowed = {image_id for image_id, _ in rows}
        if "finding" in filters:
            wanted = set(filters["finding"])
            positive_studies = set(session.scalars(
                select(Report.study_id).join(WeakLabel, WeakLabel.report_id == Report.id)
                .where(WeakLabel.finding.in_(wanted), WeakLabel.status == "positive")))
            expert = image_labels(catalog, sorted(allowed))  # images without an expert label: absent
            allowed = {image_id for image_id, study_id in rows
                       if any(expert.get(image_id, {}).get(name) == 1 for name in wanted)
                       or (study_id in positive_studies
                           and not any(expert.get(image_id, {}).get(name) == 0 for name in wanted))}
    return sorted(allowed)


def _no_query_image(session, case_id: str) -> str:
    """Why ``case_id`` (neither an image id nor a study with images) cannot be a query."""
    from radloop.core.schema import Report, Study

    if session.get(Study, case_id) is None:
        return f"no image or study {case_id!r} in the catalog"
    has_report = session.scalars(select(Report.id).where(Report.study_id == case_id).limit(1)).first() is not None
    return (f"study {case_id!r} has no images" + (" (only a report)" if has_report else "")
            + ": there is nothing to search with; pass an image id of another study, or --image PATH")


def _query_vector(catalog, model_version: str, image, case_id: str | None,
                  match_file: bool = True) -> tuple[np.ndarray, str | None]:
    """(vector (D,), catalog image id of the query or None)."""
    from radloop.core.embeddings import load_embeddings
    from radloop.core.schema import Image

    image_id, source = None, image
    if case_id is not None:
        with catalog.session() as session:
            row = session.get(Image, case_id) or session.scalars(
                select(Image).where(Image.study_id == case_id).order_by(Image.id)).first()
            if row is None:
                raise LookupError(_no_query_image(session, case_id))
            image_id, source = row.id, catalog.workspace.absolute(row.render_path)
    elif isinstance(image, (str, Path)):
        path = Path(image)
        if path.is_dir():
            raise FileNotFoundError(f"query image is a folder, not an image file: {path}")
        if not path.is_file():
            raise FileNotFoundError(f"query image not found: {path}")
        match = match_catalog_file(catalog, path.read_bytes()) if match_file else None
        if match is not None:  # the CLI's stderr; the app says it on the page (views_search)
            logger.warning("query %s: %s: searching as that case (its own study left out)", path, match.message)
            image_id = match.image_id
    if image_id is not None:
        try:
            return load_embeddings(catalog, model_version, [image_id]).vectors[0], image_id
        except LookupError:
            pass  # in the catalog but not embedded yet: embed it now
    from radloop.ssl import embed_images
    from radloop.ssl.embed import resolve_encoder

    bundle = resolve_encoder(catalog, model_version)
    try:
        return embed_images(bundle, [source])[0], image_id
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 (PIL, pydicom and radloop's own decode errors alike)
        # an array query is named by its shape: its values would flood the message (the app passes uploads so)
        named = (f"(an array of shape {source.shape}, dtype {source.dtype})" if isinstance(source, np.ndarray)
                 else source)
        raise ValueError(f"cannot read the query image {named}: {error} (PNG, JPEG or DICOM)") from None


def _study_images(catalog, image_id: str) -> list[str]:
    """Every catalog image of ``image_id``'s study (other views, copies of the same radiograph)."""
    from radloop.core.schema import Image

    with catalog.session() as session:
        study = session.scalar(select(Image.study_id).where(Image.id == image_id))
        if study is None:
            return [image_id]
        return list(session.scalars(select(Image.id).where(Image.study_id == study)))


def index_coverage(catalog, model_version: str) -> tuple[int, int]:
    """(images embedded with ``model_version``, images in the catalog): search sees only the first."""
    from radloop.core.schema import Embedding, Image

    with catalog.session() as session:
        embedded = session.scalar(select(func.count(func.distinct(Embedding.image_id)))
                                  .where(Embedding.model_version == model_version)) or 0
        total = session.scalar(select(func.count(Image.id))) or 0
    return int(embedded), int(total)


def _describe(catalog, hits: list[tuple[str, float]]) -> list[CaseNeighbour]:
    from radloop.core.schema import Image, Report, Study, WeakLabel
    from radloop.core.targets import image_targets

    ids = [image_id for image_id, _ in hits]
    targets = {target.image_id: target for target in image_targets(catalog, image_ids=ids)}
    with catalog.session() as session:
        images = {row.id: row for row in session.scalars(select(Image).where(Image.id.in_(ids)))}
        studies = {image.study_id for image in images.values()}
        splits = dict(session.execute(select(Study.id, Study.split).where(Study.id.in_(studies))).all())
        reports = {}
        for report in session.scalars(select(Report).where(Report.study_id.in_(studies)).order_by(Report.id)):
            reports.setdefault(report.study_id, report)
        weak: dict[str, dict[str, str]] = {}
        report_ids = [report.id for report in reports.values()]
        for label in session.scalars(select(WeakLabel).where(WeakLabel.report_id.in_(report_ids))):
            weak.setdefault(label.report_id, {})
            if weak[label.report_id].get(label.finding) != "positive":
                weak[label.report_id][label.finding] = label.status
    result = []
    for rank, (image_id, distance) in enumerate(hits, start=1):
        image = images.get(image_id)
        if image is None:  # embedded but deleted from the catalog since
            continue
        report = reports.get(image.study_id)
        excerpt = ""
        if report is not None:
            sections = report.sections or {}
            excerpt = " ".join(filter(None, (sections.get("FINDINGS"), sections.get("IMPRESSION")))) or report.text
            excerpt = " ".join(excerpt.split())
            excerpt = excerpt if len(excerpt) <= EXCERPT_CHARS else excerpt[:EXCERPT_CHARS - 3] + "..."
        result.append(CaseNeighbour(
            rank=rank, image_id=image_id, study_id=image.study_id, distance=round(float(distance), 6),
            thumb_path=str(catalog.workspace.absolute(image.thumb_path)) if image.thumb_path else None,
            render_path=str(catalog.workspace.absolute(image.render_path)) if image.render_path else None,
            body_region=image.body_region, split=splits.get(image.study_id),
            labels=dict(targets[image_id].labels) if image_id in targets else {},
            report_labels=weak.get(report.id, {}) if report is not None else {}, report_excerpt=excerpt))
    return result


def search_cases(catalog, *, image: str | Path | np.ndarray | None = None, case_id: str | None = None,
                 k: int = 10, filters: dict[str, Any] | None = None, encoder: str | None = None,
                 index_config: IndexConfig | None = None, same_study: bool = False,
                 match_file: bool = True) -> list[CaseNeighbour]:
    """The ``k`` catalog cases nearest to a query image (file or 2-D array) or a catalog image/study id.

    The query case itself is never among its neighbours, nor (unless ``same_study``) the other images of its
    study: other views and copies of the same radiograph are not other cases.

    Args:
        catalog: the workspace catalog.
        image: query image file (PNG/JPEG/DICOM) or a 2-D array; a file that is a catalogued image (same bytes
            or same pixels, :func:`~radloop.retrieval.query_match.match_catalog_file`) is searched as that case,
            anything else embedded on the fly.
        case_id: a catalog image id (``I-...``) or study id (``S-...``, its first image).
        k: number of neighbours.
        filters: ``{"body_region": "wrist", "finding": "fracture", ...}`` (values may be lists: any of);
            values are checked against the vocabulary and the catalog (see ``resolve_filter_values``).
        encoder: encoder version (or folder); default the current encoder.
        index_config: used when the index must be built.
        match_file: look the query file up in the catalog first (False: the caller did, and it is none; the file
            is embedded without decoding it once more for its pixel hash).

    Raises:
        ValueError: neither or both of image/case_id, bad k, unknown filter key or value.
        LookupError: unknown case, no encoder or embeddings.
    """
    if (image is None) == (case_id is None):
        raise ValueError("give exactly one of image or case_id")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    checked = resolve_filter_values(catalog, check_filters(filters))
    version = resolve_encoder_version(catalog, encoder)
    manager = load_index(catalog, version, index_config)
    vector, query_id = _query_vector(catalog, version, image, case_id, match_file)
    allowed = _allowed_ids(catalog, checked)
    if allowed is not None and not allowed:
        return []
    excluded = None
    if query_id:
        excluded = [query_id] if same_study else _study_images(catalog, query_id)
    found = manager.search(vector, k, allowed_ids=allowed, exclude_ids=excluded, model_version=version)
    hits = [(image_id, float(distance)) for image_id, distance in zip(found.ids[0], found.distances[0])]
    return _describe(catalog, hits)
