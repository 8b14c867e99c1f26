"""Case search: the catalog images nearest to a query image or case, with thumbnails, labels and reports.

A query file that is a catalogued image (:func:`radloop.retrieval.query_match.match_catalog_file`: the same file
bytes, or the same decoded pixels in a re-saved / re-encoded copy) is searched as that case.  Any other query image
(or a catalogued one without an embedding yet) is embedded on the fly with the encoder the index was built from.  The
index of an encoder version is loaded from ``<workspace>/indexes/<version>/`` (memory-mapped), extended with
embeddings added since it was saved, or built and saved when there is none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from radloop.retrieval.index import IndexConfig, IndexManager, index_folder
from radloop.retrieval.index_store import DISTANCES, metric_change_note, saved_metric
from radloop.retrieval.query_match import check_query_array, decode_failure, match_catalog_file, pil_pixels
from radloop.retrieval.search_filters import (FILTER_KEYS, LATERALITY_SYNONYMS, NULLABLE_KEYS, UNKNOWN_VALUE,
                                              allowed_image_ids, check_filters, parse_filters, resolve_filter_values)

if TYPE_CHECKING:  # annotations only: the catalog needs no more than sqlalchemy, an encoder needs torch
    from PIL.Image import Image as PILImage

    from radloop.core.catalog import Catalog
    from radloop.ssl.encoders import EncoderBundle

__all__ = ["DISTANCES", "EXCERPT_CHARS", "FILTER_KEYS", "LATERALITY_SYNONYMS", "NULLABLE_KEYS", "UNKNOWN_VALUE",
           "CaseNeighbour", "check_filters", "index_coverage", "index_folder_lock", "index_metric", "load_index",
           "metric_change_note", "parse_filters", "resolve_encoder_version", "resolve_filter_values",
           "resolve_search_encoder", "search_cases"]

EXCERPT_CHARS = 240

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseNeighbour:
    """One search hit.

    Attributes:
        rank: 1 = nearest.
        distance: by the index's ``metric``: 1 - cosine similarity (``cosine``, the default: 0 = identical
            direction) or Euclidean distance (``l2``, an index built with ``--set metric=l2``).
        metric: ``cosine`` or ``l2`` (:data:`DISTANCES` words them).
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
    metric: str = "cosine"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (``pandas.DataFrame([hit.to_dict() for hit in hits])`` tabulates a search)."""
        return dict(self.__dict__)


def resolve_encoder_version(catalog: Catalog, encoder: str | Path | EncoderBundle | None = None) -> str:
    """The encoder version to search with: the one named (a version, an encoder folder or a loaded encoder), the
    current encoder, or the only one embedded.

    Raises:
        LookupError: none can be chosen (the message says what to run).
    """
    return resolve_search_encoder(catalog, encoder)[0]


def resolve_search_encoder(catalog: Catalog, encoder: str | Path | EncoderBundle | None = None,
                           ) -> tuple[str, EncoderBundle | None]:
    """(the encoder version to search with, the encoder loaded from a folder or None): as
    :func:`resolve_encoder_version`, keeping the encoder an encoder folder was loaded for (a loaded
    ``EncoderBundle`` is taken as it is), so that no caller loads it twice.

    Raises:
        LookupError: none can be chosen (the message says what to run).
    """
    from radloop.core.embeddings import embedded_versions

    if encoder is not None and not isinstance(encoder, (str, Path)):  # an EncoderBundle loaded already
        if not _has_embeddings(catalog, encoder.version):
            raise LookupError(f"encoder {encoder.version} has no embeddings in this workspace: run `radloop embed` "
                              "with it first")
        return encoder.version, encoder
    if encoder:
        path = Path(encoder)
        if path.is_dir() and (path / "encoder.json").is_file():
            from radloop.ssl import load_encoder

            bundle = load_encoder(path)
            if not _has_embeddings(catalog, bundle.version):  # core's hint would name the version, unknown to `embed`
                raise LookupError(f"encoder {encoder} ({bundle.version}) has no embeddings in this workspace: run "
                                  f"`radloop embed --encoder {encoder}` first")
            return bundle.version, bundle
        encoder = str(encoder)
        from radloop.core.schema import Model

        with catalog.session() as session:
            registered = set(session.scalars(select(Model.version).where(Model.kind == "encoder")))
        known = registered | set(embedded_versions(catalog))
        if encoder not in known:
            raise LookupError(f"unknown encoder {encoder!r} (encoders: {', '.join(sorted(known)) or 'none yet'})")
        return encoder, None
    current = catalog.current_model("encoder", kind="encoder") or catalog.current_model("encoder")
    if current is not None:
        return current.version, None
    versions = embedded_versions(catalog)
    if len(versions) == 1:
        return next(iter(versions)), None
    if not versions:
        raise LookupError("no embeddings in the catalog: train or register an encoder and run `radloop embed`")
    raise LookupError(f"several encoder versions are embedded ({', '.join(sorted(versions))}) and none is "
                      "current: pass --encoder VERSION")


def _has_embeddings(catalog: Catalog, model_version: str) -> bool:
    from radloop.core.schema import Embedding

    with catalog.session() as session:
        return session.scalar(select(Embedding.id).where(Embedding.model_version == model_version).limit(1)) is not None


def load_index(catalog: Catalog, model_version: str, config: IndexConfig | None = None,
               progress: Callable[[str], None] | None = None) -> IndexManager:
    """The saved index of ``model_version``, brought up to date with the catalog's embeddings.

    ``progress`` is told when the index has to be built (the first search: a minute for a million images) or
    extended with embeddings added since it was saved.  Threads of one process that load the same index wait for
    each other (it is built or extended once); other processes are not locked out.
    """
    folder = index_folder(catalog.workspace, model_version)
    with index_folder_lock(folder):  # concurrent first searches (app sessions, notebook threads) build it once
        return _load_index(catalog, model_version, folder, config, progress)


_FOLDER_LOCKS: dict[str, threading.Lock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


def index_folder_lock(folder: Path) -> threading.Lock:
    """The lock of an index folder in this process (:func:`load_index` builds, extends and saves under it; other
    savers in the same process should too): two threads that both built and saved an index deleted each
    other's generation, leaving a manifest that names missing files."""
    with _FOLDER_LOCKS_GUARD:
        return _FOLDER_LOCKS.setdefault(str(Path(folder).absolute()), threading.Lock())


def _load_index(catalog, model_version: str, folder: Path, config: IndexConfig | None,
                progress: Callable[[str], None] | None) -> IndexManager:
    from radloop.core.embeddings import embedding_mark, load_embeddings
    from radloop.core.schema import Embedding

    say = progress or (lambda _message: None)
    if not (folder / "manifest.json").is_file():
        say(f"building the case-search index of {model_version}'s embeddings on first use "
            "(minutes for millions of images; saved for the next searches)")
        manager = IndexManager.from_catalog(catalog, model_version, config, progress)
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
        say(f"adding {len(missing):,} new embeddings to the case-search index of {model_version}")
        new = load_embeddings(catalog, model_version, missing)
        manager.add(new.vectors, new.image_ids, model_version=model_version)
        manager.catalog_mark = latest  # every row up to it is indexed now
        manager.save(folder)
    return manager


def _no_query_image(session, case_id: str) -> str:
    """Why ``case_id`` (neither an image id nor a study with images) cannot be a query."""
    from radloop.core.schema import Report, Study

    if session.get(Study, case_id) is None:
        return f"no image or study {case_id!r} in the catalog"
    has_report = session.scalars(select(Report.id).where(Report.study_id == case_id).limit(1)).first() is not None
    return (f"study {case_id!r} has no images" + (" (only a report)" if has_report else "")
            + ": there is nothing to search with; pass an image id of another study, or --image PATH")


def _query_vector(catalog, model_version: str, image, case_id: str | None, match_file: bool = True,
                  say: Callable[[str], None] = lambda _message: None, bundle: Any = None,
                  ) -> tuple[np.ndarray, str | None]:
    """(vector (D,), catalog image id of the query or None); ``bundle``: the encoder already loaded, if any."""
    from radloop.core.embeddings import load_embeddings
    from radloop.core.schema import Image

    image_id, source = None, image
    if case_id is not None:
        with catalog.session() as session:
            row = session.get(Image, case_id) or session.scalars(
                select(Image).where(Image.study_id == case_id).order_by(Image.id)).first()
            if row is None:
                raise LookupError(_no_query_image(session, case_id))
            image_id = row.id
            source = catalog.workspace.absolute(row.render_path) if row.render_path else None
    elif isinstance(image, np.ndarray):
        check_query_array(image)
    elif isinstance(image, (str, Path)):
        path = Path(image)
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"  # the CLI's cwd may surprise
        if path.is_dir():
            raise FileNotFoundError(f"query image is a folder, not an image file: {path}{where}")
        if not path.is_file():
            raise FileNotFoundError(f"query image not found: {path}{where}")
        if path.stat().st_size == 0:
            raise ValueError(f"cannot read the query image {path}: the file is empty (0 bytes)")
        match = match_catalog_file(catalog, path.read_bytes()) if match_file else None
        if match is not None:  # the CLI's stderr; the app says it on the page (views_search)
            logger.warning("query %s: %s: searching as that case (its own study left out)", path, match.message)
            image_id = match.image_id
    if image_id is not None:
        try:
            return load_embeddings(catalog, model_version, [image_id]).vectors[0], image_id
        except LookupError:
            pass  # in the catalog but not embedded yet: embed it now
    if case_id is not None and (source is None or not Path(source).is_file()):
        raise FileNotFoundError(f"case {image_id} is not embedded with {model_version} and its render "
                                f"{source or '(none recorded)'} is missing, so it cannot be embedded now either")
    from radloop.ssl import embed_images
    from radloop.ssl.embed import resolve_encoder

    try:
        bundle = bundle if bundle is not None else resolve_encoder(catalog, model_version)
    except LookupError as error:  # embeddings written by an encoder that is not registered here (copied in)
        what = (f"case {image_id} is not embedded with {model_version}" if image_id is not None
                else f"the query image must be embedded with {model_version}")
        raise LookupError(f"{what}, and that encoder is not at hand to embed it ({error}); search a case embedded "
                          "with it, or with a registered encoder") from None
    say(f"embedding the query image with {model_version}" + (" (not embedded yet)" if image_id is not None else ""))
    try:
        return embed_images(bundle, [source])[0], image_id
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 (PIL, pydicom and radloop's own decode errors alike)
        # an array query is named by its shape: its values would flood the message (the app passes uploads so)
        named = (f"(an array of shape {source.shape}, dtype {source.dtype})" if isinstance(source, np.ndarray)
                 else source)
        detail = decode_failure(str(error).removeprefix(f"{source}: "))  # it may name the file again
        raise ValueError(f"cannot read the query image {named}: {detail} (PNG, JPEG or DICOM)") from None


def _study_images(catalog, image_id: str) -> list[str]:
    """Every catalog image of ``image_id``'s study (other views, copies of the same radiograph)."""
    from radloop.core.schema import Image

    with catalog.session() as session:
        study = session.scalar(select(Image.study_id).where(Image.id == image_id))
        if study is None:
            return [image_id]
        return list(session.scalars(select(Image.id).where(Image.study_id == study)))


def index_coverage(catalog: Catalog, model_version: str) -> tuple[int, int]:
    """(images embedded with ``model_version``, images in the catalog): search sees only the first."""
    from radloop.core.schema import Embedding, Image

    with catalog.session() as session:
        embedded = session.scalar(select(func.count(func.distinct(Embedding.image_id)))
                                  .where(Embedding.model_version == model_version)) or 0
        total = session.scalar(select(func.count(Image.id))) or 0
    return int(embedded), int(total)


def index_metric(catalog: Catalog, model_version: str) -> tuple[str, dict | None]:
    """(the distance metric of the saved index of ``model_version``, its ``metric_change`` or None): what the
    distances of a search with it are (:func:`~radloop.retrieval.index_store.saved_metric`)."""
    return saved_metric(index_folder(catalog.workspace, model_version))


def _describe(catalog, hits: list[tuple[str, float]], metric: str = "cosine") -> list[CaseNeighbour]:
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
            report_labels=weak.get(report.id, {}) if report is not None else {}, report_excerpt=excerpt,
            metric=metric))
    return result


def search_cases(catalog: Catalog, *, image: str | Path | np.ndarray | PILImage | None = None,
                 case_id: str | None = None, k: int = 10, filters: dict[str, Any] | None = None,
                 encoder: str | Path | EncoderBundle | None = None,
                 index_config: IndexConfig | None = None, same_study: bool = False,
                 match_file: bool = True, progress: Callable[[str], None] | None = None) -> list[CaseNeighbour]:
    """The ``k`` catalog cases nearest to a query image (file, 2-D array or PIL image) or a catalog image/study id.

    The query case itself is never among its neighbours, nor (unless ``same_study``) the other images of its
    study: other views and copies of the same radiograph are not other cases.

    Args:
        catalog: the workspace catalog.
        image: query image file (PNG/JPEG/DICOM), a 2-D array or a PIL image (its pixels); a file that is a
            catalogued image (same bytes or same pixels, :func:`~radloop.retrieval.query_match.match_catalog_file`)
            is searched as that case, anything else embedded on the fly.
        case_id: a catalog image id (``I-...``) or study id (``S-...``, its first image).
        k: number of neighbours (fewer come back when the index or the filters hold fewer cases).
        filters: ``{"body_region": "wrist", "finding": "fracture", ...}`` (values may be lists: any of;
            ``parse_filters("body_region=wrist")`` builds one from ``key=value`` strings);
            values are checked against the vocabulary and the catalog (see ``resolve_filter_values``);
            ``unknown`` (or ``None``) selects images without a body region, modality, view or laterality.
        encoder: encoder version, encoder folder or loaded ``EncoderBundle`` (see :func:`resolve_search_encoder`);
            default the current encoder.
        index_config: used when the index must be built.
        same_study: let the other images of the query's study be neighbours too.
        match_file: look the query file up in the catalog first (False: the caller did, and it is none; the file
            is embedded without decoding it once more for its pixel hash).
        progress: told when the index is built on first use or extended (see :func:`load_index`), and when the
            query image is embedded on the fly.

    Returns:
        :class:`CaseNeighbour` records, nearest first (``rank`` 1); ``[hit.to_dict() for hit in hits]`` for a
        ``pandas.DataFrame``.  Empty when no catalog image passes the filters.

    Raises:
        ValueError: neither or both of image/case_id, bad k, unknown filter key or value, an unreadable query image.
        LookupError: unknown case, no encoder or embeddings.
        FileNotFoundError: the query file (or the render of a case that must be embedded now) is missing.
    """
    if (image is None) == (case_id is None):
        raise ValueError("give exactly one of image or case_id")
    if isinstance(case_id, str):  # pasted from a spreadsheet or a report: ids never hold surrounding blanks
        case_id = case_id.strip()
    image = pil_pixels(image)  # a notebook's ``PIL.Image.open(...)``: its pixels
    if image is not None and not isinstance(image, (str, Path, np.ndarray)):
        raise ValueError(f"image must be a file path or a 2-D array, got {type(image).__name__}"
                         + (" (file bytes: decode them first, e.g. with PIL)" if isinstance(image, (bytes, bytearray))
                            else ""))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    checked = resolve_filter_values(catalog, check_filters(filters))
    version, bundle = resolve_search_encoder(catalog, encoder)  # a folder's encoder loaded once, kept for the query
    manager = load_index(catalog, version, index_config, progress)
    vector, query_id = _query_vector(catalog, version, image, case_id, match_file, progress or (lambda _message: None),
                                     bundle)
    allowed = allowed_image_ids(catalog, checked)
    if allowed is not None and not allowed:
        return []
    excluded = None
    if query_id:
        excluded = [query_id] if same_study else _study_images(catalog, query_id)
    found = manager.search(vector, k, allowed_ids=allowed, exclude_ids=excluded, model_version=version)
    hits = [(image_id, float(distance)) for image_id, distance in zip(found.ids[0], found.distances[0])]
    return _describe(catalog, hits, manager.config.metric)
