"""Case search page: upload a radiograph or pick a case; grid of nearest cases with labels and reports."""

from __future__ import annotations

import numpy as np
import streamlit as st

from radloop.app import ui, views, views_search
from radloop.app.views import CaseCard
from radloop.core.vocabulary import FINDINGS

GRID_COLUMNS = 4


def _card(card: CaseCard) -> None:
    if card.thumb is not None:
        st.image(str(card.thumb), width="stretch")
    else:
        st.caption("(no thumbnail)")
    title = f"**{card.image_id}**"
    if card.distance is not None:
        title += f" · distance {card.distance:.3f}"
    st.markdown(title)
    st.caption(f"{card.body_region or 'unknown region'} · {card.split or '?'} · {card.label_summary}")
    if card.report_snippet:
        st.caption(f"{card.report_id}: {card.report_snippet}")


def _decode(upload) -> np.ndarray | None:
    try:
        return views_search.decode_image(upload.getvalue())
    except ValueError as error:
        st.error(f"Could not read {upload.name!r}: {error}. Upload a PNG or JPEG radiograph.")
        return None


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
        regions = views.region_counts(catalog)["body_region"].tolist()
        region = st.selectbox("Body region", ["all", *regions], key="search_region")
        k = st.slider("Neighbours", min_value=1, max_value=24, value=8, key="search_k")
        same_region = st.checkbox("Neighbours from this body region only", value=False, key="search_same_region",
                                  disabled=region in ("all", views.UNKNOWN_REGION))
        finding = st.selectbox("Neighbours with finding", ["any", *FINDINGS], key="search_finding",
                               help="Expert label present, or a positive report mention without an expert "
                                    "label saying absent.")
    with query_column:
        upload = st.file_uploader("Upload a radiograph (PNG/JPEG)", type=["png", "jpg", "jpeg"],
                                  key="search_upload")
        cases = views.list_cases(catalog, body_region=None if region == "all" else region)
        labels = {row.image_id: f"{row.image_id} · {row.body_region or 'unknown'}" for row in cases.itertuples()}
        case_id = st.selectbox("…or pick a case", list(labels), key="search_case", format_func=labels.get)

    image = _decode(upload) if upload is not None else None
    if upload is not None and image is None:
        return
    query_id = None if image is not None else case_id
    st.subheader("Query")
    if image is not None:
        st.image(image, caption=upload.name, width=256)
    elif query_id is not None:
        cards = views.case_cards(catalog, [query_id])
        if cards:
            with st.container(width=320):
                _card(cards[0])
    filters = {}
    if same_region and region not in ("all", views.UNKNOWN_REGION):
        filters["body_region"] = region
    if finding != "any":
        filters["finding"] = finding
    outcome = views_search.find_similar(catalog, image=image, case_id=query_id, k=k, filters=filters)
    st.subheader("Nearest cases")
    if outcome.message:
        if outcome.message == readiness.message:
            st.caption("Not available yet: see the next step at the top of the page.")
        else:
            ui.next_step(outcome.message)
        return
    for start in range(0, len(outcome.neighbours), GRID_COLUMNS):
        for column, card in zip(st.columns(GRID_COLUMNS), outcome.neighbours[start:start + GRID_COLUMNS], strict=False):
            with column:
                _card(card)


if __name__ == "__main__":
    render()
