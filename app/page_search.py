"""Case search page: upload a radiograph or pick a case; grid of nearest cases with labels and reports."""

from __future__ import annotations

import numpy as np
import streamlit as st

from radloop.app import ui, views, views_search
from radloop.app.views import CaseCard
from radloop.core.vocabulary import FINDINGS

GRID_COLUMNS = 4
#: Cases offered in the picker (newest first); any other one can be typed in.
CASE_LIMIT = 500


def _card(card: CaseCard, alt: str, distance_label: str = "distance") -> None:
    if not ui.case_image(card, alt):  # finding boxes drawn on it, counted in its caption
        st.caption("(no thumbnail)")
    title = f"**{card.image_id}**"
    if card.distance is not None:  # rounding can make a self-match slightly negative: never show "-0.000"
        title += f" · {distance_label} {max(card.distance, 0.0):.3f}"
    st.markdown(title)
    st.caption(f"{card.body_region or 'unknown region'} · {card.split or '?'} · {card.label_summary}")
    if card.report_snippet:
        st.caption(f"{card.report_id}: {card.report_snippet}")


def _decode(upload) -> np.ndarray | None:
    try:
        return views_search.decode_image(upload.getvalue())
    except ValueError as error:
        st.error(f"Could not read {upload.name!r}: {error}. Upload a PNG, JPEG or DICOM radiograph.")
        return None


def _upload_match(catalog, upload):
    """:func:`views_search.catalog_match_for_upload`, once per uploaded file and catalog state: the page reruns on
    every click, and a file that is no catalogued one is decoded for its pixel hash (up to ~1 s for a JPEG 2000
    DICOM).  The number of catalogued images is part of the key: an upload ingested meanwhile is matched again."""
    key = (getattr(upload, "file_id", None) or upload.name, upload.size, str(catalog.workspace.root),
           views_search.catalog_image_count(catalog))
    cached = st.session_state.get("_search_upload_match")
    if cached is None or cached[0] != key:
        cached = (key, views_search.catalog_match_for_upload(catalog, upload.getvalue()))
        st.session_state["_search_upload_match"] = cached
    return cached[1]


@ui.safe_page
def render() -> None:
    """Render the case search."""
    st.title("Case search")
    catalog = ui.require_catalog(need_images=True)
    readiness = views_search.search_readiness(catalog)
    if readiness.ready:
        st.caption(f"Encoder `{readiness.encoder_version}` · {readiness.embedded_images:,} images embedded")
    else:
        ui.next_step(readiness.message)

    query_column, options_column = st.columns([2, 1])
    with options_column:
        # null and "" (an older ingest's empty value) are both counted as "unknown": one option
        regions = list(dict.fromkeys(views.region_counts(catalog)["body_region"].tolist()))
        ui.kept_choice("search_region", ["all", *regions], lambda value: f"body region `{value}`")
        region = st.selectbox("Body region", ["all", *regions], key="search_region")
        ui.widget_default("search_k", 8)
        k = st.slider("Neighbours", min_value=1, max_value=24, key="search_k")
        same_region = st.checkbox("Neighbours from this body region only", value=False, key="search_same_region",
                                  disabled=region == "all")
        finding = st.selectbox("Neighbours with finding", ["any", *FINDINGS], key="search_finding",
                               help="Expert label present, or a positive report mention without an expert "
                                    "label saying absent.")
    with query_column:
        # No type filter: DICOM files from a PACS export often have no extension; decoding says what is wrong.
        upload = st.file_uploader("Upload a radiograph (PNG, JPEG or DICOM)", key="search_upload")
        cases = views.list_cases(catalog, body_region=None if region == "all" else region, limit=CASE_LIMIT)
        labels = {row.image_id: f"{row.image_id} · {views.text_or(row.body_region, views.UNKNOWN_REGION)}"
                  for row in cases.itertuples()}
        pick_column, typed_column = st.columns([3, 2])
        # a case removed, or pushed out of the newest CASE_LIMIT by an ingest, meanwhile: said, not swapped silently
        ui.kept_choice("search_case", list(labels), lambda value: f"case `{value}`", context=region)
        case_id = pick_column.selectbox("…or pick a case" + (f" (newest {CASE_LIMIT:,})" if len(cases) == CASE_LIMIT
                                                             else ""),
                                        list(labels), key="search_case", format_func=labels.get)
        typed = typed_column.text_input("…or type a case id", key="search_case_id", placeholder="I-… or S-…",
                                        help="An image id, or a study id (its first image); overrides the picker.")
    if typed.strip() and upload is None:  # an upload wins over both
        case_id = views_search.resolve_case(catalog, typed)
        if case_id is None:
            st.warning(views_search.unresolved_case_message(catalog, typed))
            return

    image = _decode(upload) if upload is not None else None
    if upload is not None and image is None:
        return
    query_id = None if image is not None else case_id
    match = _upload_match(catalog, upload) if image is not None else None
    st.subheader("Query")
    if image is not None:
        preview = views_search.query_preview(image)
        st.image(preview, caption=upload.name, width=int(preview.shape[1]),
                 alt=f"Uploaded query radiograph {upload.name}")
        if match is not None:
            if match.matched_by == "pixels":
                st.caption(f"Same pixels as catalogued image `{match.image_id}` (a re-saved or re-encoded copy): "
                           "searched as that case, its own study left out of the neighbours.")
            else:
                st.caption(f"This file is catalog case `{match.image_id}`: its own study is left out of the "
                           "neighbours.")
            image, query_id = None, match.image_id
    elif query_id is not None:
        cards = views.case_cards(catalog, [query_id])
        if cards:
            with st.container(width=320):
                _card(cards[0], views_search.image_descriptions(catalog, [query_id]).get(query_id, query_id))
    filters = {}
    if same_region and region != "all":  # "unknown": images without a region (the filter matches null)
        filters["body_region"] = region
    if finding != "any":
        filters["finding"] = finding
    with st.spinner("Searching (the first search loads the encoder and the index)…"):
        outcome = views_search.find_similar(catalog, image=image, case_id=query_id, k=k, filters=filters,
                                            readiness=readiness)  # the encoder named at the top of the page
    st.subheader("Nearest cases")
    if outcome.message:
        if outcome.message == readiness.message:
            st.caption("Not available yet: see the next step at the top of the page.")
        else:
            ui.next_step(outcome.message)
        return
    if outcome.metric_note:
        st.caption(outcome.metric_note)
    alts = views_search.image_descriptions(catalog, [card.image_id for card in outcome.neighbours])
    for start in range(0, len(outcome.neighbours), GRID_COLUMNS):
        for column, card in zip(st.columns(GRID_COLUMNS), outcome.neighbours[start:start + GRID_COLUMNS], strict=False):
            with column:
                _card(card, alts.get(card.image_id, card.image_id), outcome.distance_label)


if __name__ == "__main__":
    render()
