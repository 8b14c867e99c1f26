"""Case search for the app: readiness checks and a guarded call to ``radloop.retrieval.search_cases``.

Nothing here raises for a missing part: every problem comes back as a :class:`SearchOutcome` whose
``message`` says what to run next, so the page never shows a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from radloop.app import next_steps
from radloop.app.views import UNKNOWN_REGION, CaseCard, case_cards
from radloop.core.catalog import Catalog
from radloop.core.schema import Embedding, Image, Model, Study

if TYPE_CHECKING:
    from radloop.retrieval.query_match import CatalogMatch

__all__ = ["SearchReadiness", "SearchOutcome", "search_readiness", "find_similar", "neighbour_pairs", "decode_image",
           "check_dicom_upload_size",
           "query_preview", "catalog_image_count", "catalog_match_for_upload", "resolve_case", "shown_case_id",
           "unresolved_case_message", "image_descriptions", "encoder_changed_message",
           "NEXT_STEP_ENCODER", "NEXT_STEP_INDEX"]

logger = logging.getLogger(__name__)

NEXT_STEP_ENCODER = next_steps.NO_ENCODER
NEXT_STEP_INDEX = next_steps.NO_EMBEDDINGS
NEXT_STEP_RETRIEVAL = next_steps.NO_RETRIEVAL


@dataclass(frozen=True)
class SearchReadiness:
    """Whether case search can run: the current encoder and how many images it has embedded."""

    encoder_version: str | None
    embedded_images: int
    message: str | None

    @property
    def ready(self) -> bool:
        return self.message is None


def search_readiness(catalog: Catalog) -> SearchReadiness:
    """Check that an encoder is current and has embeddings (the index itself is checked by the search)."""
    encoder = _current_encoder(catalog)
    if encoder is None:
        with catalog.session() as session:
            registered = list(session.scalars(select(Model.version).where(Model.kind == "encoder")
                                              .order_by(Model.created_at.desc(), Model.version).limit(3)))
        message = next_steps.no_current_encoder(registered) if registered else NEXT_STEP_ENCODER
        return SearchReadiness(encoder_version=None, embedded_images=0, message=message)
    with catalog.session() as session:
        embedded = session.scalar(select(func.count(Embedding.id))
                                  .where(Embedding.model_version == encoder.version)) or 0
    return SearchReadiness(encoder_version=encoder.version, embedded_images=embedded,
                           message=None if embedded else next_steps.no_embeddings(encoder.version))


def encoder_changed_message(checked: str | None, now: str) -> str:
    """What the case search says when the current encoder changed while it ran (a nightly job, the CLI)."""
    return (f"The current encoder changed while searching (`{checked}` -> `{now}`, set in another session or by "
            "a command): no neighbours are shown under the old name. Search again (any click on the page) to "
            f"search with `{now}`.")


def _current_encoder(catalog: Catalog) -> Model | None:
    return catalog.current_model("encoder", kind="encoder") or catalog.current_model("encoder")


@dataclass(frozen=True)
class SearchOutcome:
    """Neighbours of a query (closest first), or the reason there are none and what to do next."""

    neighbours: list[CaseCard] = field(default_factory=list)
    message: str | None = None
    query_image_id: str | None = None
    #: what the cards' distances are: "distance (1 - cosine)" or "distance (L2)" (the index's metric)
    distance_label: str = "distance"
    #: the index was rebuilt with another metric than it was built with (what `radloop search` says too)
    metric_note: str | None = None


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, dict) and name in item:
            return item[name]
        if hasattr(item, name):
            return getattr(item, name)
    return None


def neighbour_pairs(result: Any) -> list[tuple[str, float | None]]:
    """Normalise what ``search_cases`` returns into ``(image_id, distance)`` pairs, closest first.

    Accepts a sequence of hits (objects or dicts with ``image_id`` and ``distance``/``score``), an object
    holding such a sequence under ``neighbours``/``hits``/``results``, or a DataFrame with those columns.
    """
    if hasattr(result, "to_dict") and hasattr(result, "columns"):  # a DataFrame
        result = result.to_dict("records")
    for name in ("neighbours", "neighbors", "hits", "results"):
        inner = _field(result, name)
        if inner is not None and not isinstance(result, (list, tuple)):
            result = inner
            break
    pairs = []
    for item in result or []:
        image_id = _field(item, "image_id", "id")
        if image_id is None:
            continue
        distance = _field(item, "distance", "score")
        pairs.append((str(image_id), None if distance is None else float(distance)))
    return pairs


def decode_image(data: bytes) -> np.ndarray:
    """An uploaded PNG/JPEG or DICOM file as a 2-D uint8 grey array (the query form ``search_cases`` embeds).

    DICOM (recognised by its ``DICM`` marker, whatever the file name) is windowed as ingest windows it.

    Raises:
        ValueError: the bytes are not an image PIL or the DICOM reader can read.
    """
    from radloop.core.dicom_io import is_dicom_bytes, read_dicom
    from radloop.core.render import decode_upload

    try:
        if is_dicom_bytes(data):
            check_dicom_upload_size(data)
            return read_dicom(data, as_uint8=True).pixels
        return decode_upload(data)
    except ValueError as error:
        raise ValueError(f"not a readable image ({error})") from None


def check_dicom_upload_size(data: bytes) -> None:
    """Refuse a DICOM upload whose header declares more pixels than Pillow decodes (twice its decompression-bomb
    limit, as for a PNG/JPEG), before its pixels are decoded: a few kilobytes of compressed (RLE, JPEG) data may
    declare 65535 x 65535 pixels, which the decoder would allocate (gigabytes) before finding out.

    Raises:
        ValueError: too many pixels; a header that cannot be read says why.
    """
    from PIL import Image as PILImage

    from radloop.core.dicom_io import header_values_unlogged, read_dataset

    with header_values_unlogged():
        dataset = read_dataset(data)
        try:
            pixels = (int(dataset.get("Rows") or 0) * int(dataset.get("Columns") or 0)
                      * int(dataset.get("SamplesPerPixel") or 1))
        except (TypeError, ValueError):
            return  # decoding reports a header that makes no sense
    limit = 2 * (PILImage.MAX_IMAGE_PIXELS or 0)
    if limit and pixels > limit:
        raise ValueError(f"image too large to decode safely ({dataset.get('Columns')} x {dataset.get('Rows')} "
                         f"pixels declared; at most {limit / 1e6:.0f} megapixels)")


def query_preview(pixels: np.ndarray, side: int = 256) -> np.ndarray:
    """An uploaded query image (H, W) uint8 fitted in a ``side`` x ``side`` box, each side at least one pixel.

    Streamlit scales an image to a requested width itself and fails on a very thin one ("height and width must
    be > 0" for a 10 x 5000 strip), which took the whole page down; the preview is also all the browser needs.
    """
    from PIL import Image as PILImage

    height, width = pixels.shape[:2]
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return pixels
    return np.asarray(PILImage.fromarray(pixels).resize(size, PILImage.Resampling.BILINEAR))


def catalog_match_for_upload(catalog: Catalog, data: bytes) -> CatalogMatch | None:
    """The catalog image an uploaded file is, by its bytes or else by its decoded pixels (a re-saved DICOM, a
    re-encoded PNG), with how it matched; None when it is none (or case search is not installed)."""
    try:
        from radloop.retrieval.query_match import match_catalog_file
    except ImportError:  # no case search in this build: find_similar says so
        return None
    from radloop.core.dicom_io import is_dicom_bytes

    if is_dicom_bytes(data):
        try:  # its pixel hash decodes the pixels: not those of a DICOM too large to decode safely
            check_dicom_upload_size(data)
        except Exception:  # noqa: BLE001 - as match_catalog_file: an unreadable file matches nothing
            return None
    return match_catalog_file(catalog, data)


def catalog_image_count(catalog: Catalog) -> int:
    """How many images the catalog holds (one indexed count: cheap enough for every page rerun)."""
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Image)) or 0


def resolve_case(catalog: Catalog, case_id: str) -> str | None:
    """A typed case id as a catalog image id: an image id (``I-...``), or a study id (``S-...``: its first image)."""
    case_id = case_id.strip()
    if not case_id:
        return None
    with catalog.session() as session:
        if session.get(Image, case_id) is not None:
            return case_id
        return session.scalar(select(Image.id).where(Image.study_id == case_id).order_by(Image.id).limit(1))


#: Longest typed case id echoed back: ids are ~20 characters, and a pasted report must not fill the page.
SHOWN_CASE_ID_CHARS = 60


def shown_case_id(case_id: str) -> str:
    """A typed case id as a message shows it: stripped, cut to :data:`SHOWN_CASE_ID_CHARS`, without backticks
    (it is shown as inline code)."""
    text = " ".join(case_id.split()).replace("`", "'")
    return text if len(text) <= SHOWN_CASE_ID_CHARS else text[:SHOWN_CASE_ID_CHARS - 1] + "…"


def unresolved_case_message(catalog: Catalog, case_id: str) -> str:
    """Why a typed case id resolved to no image: an unknown id, or a study without images (a report-only study,
    such as the demo's Open-i reports: "no image or study" read as if the id were mistyped)."""
    shown = shown_case_id(case_id)
    with catalog.session() as session:
        study = session.get(Study, case_id.strip()) if case_id.strip() else None
    if study is None:
        return f"No image or study `{shown}` in this catalog."
    return (f"Study `{shown}` has no images in this catalog (only its report was imported). Type an image id "
            "(`I-…`) or the id of a study with images, or pick a case.")


#: DICOM laterality codes (0020,0060 / 0020,0062) as words.
_SIDES = {"L": "left", "R": "right", "B": "both sides"}


def image_descriptions(catalog: Catalog, image_ids: list[str]) -> dict[str, str]:
    """What a screen reader says for each image (its ``alt`` text): "Radiograph I-…, elbow, left, PA view"; a
    missing region is ``unknown`` and a missing side ``side unknown``, so that every image says both."""
    with catalog.session() as session:
        rows = session.execute(select(Image.id, Image.body_region, Image.laterality, Image.view)
                               .where(Image.id.in_(list(image_ids)))).all()
    described = {}
    for image_id, region, laterality, view in rows:
        side = _SIDES.get((laterality or "").strip().upper(), "side unknown")
        parts = [f"Radiograph {image_id}", f"{(region or '').strip() or UNKNOWN_REGION} region", side]
        if view and view.strip():
            parts.append(f"{view.strip()} view")
        described[image_id] = ", ".join(parts)
    return described


def find_similar(catalog: Catalog, *, image: np.ndarray | None = None, case_id: str | None = None,
                 k: int = 8, filters: dict[str, Any] | None = None,
                 readiness: SearchReadiness | None = None) -> SearchOutcome:
    """The ``k`` cases nearest to an uploaded ``image`` (2-D uint8 array) or to catalog image ``case_id``.

    The query case itself is left out of its own neighbours.  Missing parts (retrieval not installed, no
    encoder, no embeddings or index) give an outcome with a ``message`` instead of raising.  ``readiness``: the
    page's own check (default: checked here): when another process sets a new current encoder meanwhile, the
    outcome says so instead of showing that encoder's neighbours under the name of the one checked.
    """
    if (image is None) == (case_id is None):
        return SearchOutcome(message="Upload an image or pick a case from the catalog.")
    readiness = readiness or search_readiness(catalog)
    if not readiness.ready:
        return SearchOutcome(message=readiness.message, query_image_id=case_id)
    try:
        from radloop.retrieval import search_cases
    except ImportError:
        return SearchOutcome(message=NEXT_STEP_RETRIEVAL, query_image_id=case_id)
    try:
        # One extra neighbour so that the query case can be dropped from its own results.
        result = search_cases(catalog, image=image, case_id=case_id, k=k + 1, filters=filters or None)
    except FileNotFoundError as error:
        logger.warning("case search: missing file: %s", error)
        return SearchOutcome(message=f"{error}. {next_steps.MISSING_SEARCH_FILE}", query_image_id=case_id)
    except LookupError as error:
        logger.info("case search unavailable: %s", error)
        return SearchOutcome(message=f"{error}. {next_steps.no_embeddings(readiness.encoder_version)}",
                             query_image_id=case_id)
    except (ValueError, RuntimeError, OSError) as error:
        logger.warning("case search failed", exc_info=True)
        return SearchOutcome(message=f"Case search failed: {error}", query_image_id=case_id)
    # Checked again after the search (as often as before: the page's check is passed in): another process may have
    # set a new current encoder since the page named one, and these would be its neighbours under the old name
    # (index and query vector are always of one version; the caption would not be).
    now = search_readiness(catalog).encoder_version
    if now is not None and now != readiness.encoder_version:
        return SearchOutcome(message=encoder_changed_message(readiness.encoder_version, now), query_image_id=case_id)
    pairs = [(image_id, distance) for image_id, distance in neighbour_pairs(result) if image_id != case_id][:k]
    if not pairs:
        message = next_steps.NO_FILTERED_HITS if filters else next_steps.NO_INDEX_HITS
        return SearchOutcome(message=message, query_image_id=case_id)
    cards = case_cards(catalog, [image_id for image_id, _ in pairs],
                       distances=[distance for _, distance in pairs])
    hits = [item for name in ("neighbours", "hits") for item in (getattr(result, name, None) or [])] \
        if not isinstance(result, (list, tuple)) else list(result)
    metric = next((value for item in hits if (value := _field(item, "metric"))), "cosine")
    note = None
    try:
        from radloop.retrieval.search import index_metric, metric_change_note

        _, change = index_metric(catalog, readiness.encoder_version)
        note = metric_change_note(readiness.encoder_version, change) if change else None
    except (ImportError, OSError, ValueError):  # the note is extra: a search result without it is still right
        logger.debug("index metric not read", exc_info=True)
    return SearchOutcome(neighbours=cards, query_image_id=case_id, metric_note=note,
                         distance_label="distance (L2)" if metric == "l2" else "distance (1 - cosine)")
