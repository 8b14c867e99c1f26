"""Report explorer: report text with highlighted finding mentions, their ConText modifiers and statuses."""

from __future__ import annotations

import streamlit as st

from radloop.app import boxes_view, next_steps, ui, views, views_reports, views_search
from radloop.core.vocabulary import FINDINGS, STATUSES

REPORT_LIMIT = 200
IMAGES_SHOWN = 4
#: A report whose study has no image in the catalog ("0 image(s)" read as if the images had been lost).
NO_STUDY_IMAGES = "no images of this study in the catalog (the report was imported without them)"


def _labeler():
    """The report labeller (medspacy pipeline, built once per server in the background since the app started:
    see ``app/main.py``), or None when not installed; raises the build's error."""
    build = views_reports.labeler_build()
    if build.done():
        return build.result()
    with st.spinner("Loading the report rules…"):
        return build.result()


def _legend() -> str:
    return " ".join(f'<mark style="background:{colour};color:#111;padding:0 4px;border-radius:3px">{status}</mark>'
                    for status, colour in views_reports.STATUS_COLOURS.items())


#: Longest error text the page echoes (a rule file's error can print the whole rule set).
ERROR_CHARS = 200


def _short(error: Exception) -> str:
    """The first line of ``error``, cut to :data:`ERROR_CHARS`."""
    text = (str(error).strip().splitlines() or [""])[0]
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 1] + "…"


def _live_mentions(detail: views_reports.ReportDetail) -> tuple[list, str] | None:
    """The live rules' mentions of the report and their caption, or None (said why) to keep the stored ones."""
    try:
        labeler = _labeler()
    except Exception as error:  # noqa: BLE001 - a broken rules install must not hide the report and its labels
        # logged once, by the build (views_reports.labeler_build)
        st.warning(f"The report rules could not be loaded ({type(error).__name__}: {_short(error)}): the live "
                   "rules are unavailable until the app is restarted; showing the stored weak labels. The server "
                   "log has the details.")
        return None
    if labeler is None:
        ui.next_step(views_reports.NEXT_STEP_LABELER)
        return None
    if detail.rules_versions and labeler.rules_version not in detail.rules_versions:
        st.info(f"The rules changed since this report's weak labels were stored "
                f"({', '.join(detail.rules_versions)}; now `{labeler.rules_version}`): "
                f"{next_steps.command('labels')} relabels the catalog (older rows are kept per "
                "version).", icon=":material/update:")
    live, error = views_reports.live_mentions(labeler, detail.text)
    if error:
        st.warning(f"The labeller could not label this report ({error}); showing stored weak labels.")
        return None
    return live, f"Live rules `{labeler.rules_version}` (ConText modifiers in the table)"


def _mentions(detail: views_reports.ReportDetail, mentions: list, caption: str) -> None:
    """The report text with ``mentions`` highlighted, then the table of them."""
    st.html(views_reports.highlight_html(views_reports.highlight_segments(detail.text, mentions)))
    st.caption(caption)
    if mentions:
        ui.table(views_reports.mentions_frame(mentions))  # no laterality, site, ...: "—"
    else:
        st.caption("No finding mentioned in this report.")


@ui.safe_page
def render() -> None:
    """Render the report explorer."""
    st.title("Report explorer")
    catalog = ui.require_catalog(need_reports=True)
    filter_columns = st.columns([1, 1, 2])
    finding = filter_columns[0].selectbox("Finding", ["any", *FINDINGS], key="reports_finding")
    status = filter_columns[1].selectbox("Status", ["any", *STATUSES], key="reports_status",
                                         disabled=finding == "any")
    text = filter_columns[2].text_input("Text contains", key="reports_text")
    filters = {"finding": None if finding == "any" else finding,
               "status": None if status == "any" or finding == "any" else status, "text": text or None}
    total = views_reports.count_reports(catalog, **filters)
    pages = max(1, -(-total // REPORT_LIMIT))
    page = 1
    if pages > 1:  # every report stays reachable, a page of REPORT_LIMIT at a time; other filters: page 1 again
        ui.widget_default(f"reports_page_of_{pages}", 1)
        page = int(filter_columns[2].number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1,
                                                  key=f"reports_page_of_{pages}"))
    reports = views_reports.list_reports(catalog, **filters, limit=REPORT_LIMIT, offset=(page - 1) * REPORT_LIMIT,
                                          with_dates=True)
    if reports.empty:
        ui.next_step(next_steps.NO_MATCHING_REPORTS if finding != "any" or text else views_reports.NEXT_STEP_WEAK)
        return
    if not views_reports.weak_label_total(catalog):
        ui.next_step(views_reports.NEXT_STEP_WEAK)
    labels = {row.report_id: " · ".join(part for part in (row.report_id, row.report_date, row.summary or "no mentions")
                                        if part) for row in reports.itertuples()}
    first = (page - 1) * REPORT_LIMIT + 1
    shown = f"{total:,} match" if pages == 1 else f"{first:,}–{first + len(reports) - 1:,} of {total:,}"
    # a relabel (new rules) or re-ingest meanwhile can take the picked report out of the filter's matches: say so
    ui.kept_choice("reports_id", list(labels), lambda value: f"report `{value}`",
                   context=(finding, status, text, page))
    report_id = st.selectbox(f"Report ({shown})", list(labels), format_func=labels.get, key="reports_id")
    detail = views_reports.report_detail(catalog, report_id)
    if detail is None:
        st.warning(f"Report {report_id} is no longer in the catalog.")
        return

    source = st.radio("Mentions", ["live rules (ConText modifiers)", "stored weak labels"], horizontal=True,
                      key="reports_source")
    notes = st.container()  # the labeller's messages, above the report
    st.markdown(f"**{detail.report_id}** · " + (f"{detail.report_date} · " if detail.report_date else "")
                + f"study `{detail.study_id or '—'}` · "
                + (f"{len(detail.image_ids)} image(s)" if detail.image_ids else NO_STUDY_IMAGES))
    st.html(_legend())
    # The stored weak labels first: the report is readable at once while the medspacy pipeline is still being
    # built (app/main.py starts it when the server starts; 10-20 s), and stays readable when it cannot be built.
    report = st.empty()
    with report.container():
        _mentions(detail, detail.stored, "Stored weak labels" + (
            f" (rules {', '.join(detail.rules_versions)})" if detail.rules_versions else ""))
    if source.startswith("live"):
        with notes:
            live = _live_mentions(detail)
        if live is not None:
            with report.container():
                _mentions(detail, *live)
    if detail.expert_codes:
        st.caption("Expert codes (MeSH): " + "; ".join(detail.expert_codes))
    cards = [card for card in views.case_cards(catalog, detail.image_ids[:IMAGES_SHOWN]) if card.thumb is not None]
    if cards:
        st.subheader("Images of this study")
        alts = views_search.image_descriptions(catalog, [card.image_id for card in cards])
        for column, card in zip(st.columns(IMAGES_SHOWN), cards, strict=False):
            with column:
                _study_image(card, alts.get(card.image_id, card.image_id))


def _study_image(card: views.CaseCard, alt: str) -> None:
    """A thumbnail of the study with the catalog's finding boxes outlined (as on Search and Queue), its caption
    naming the image, its region and how many boxes of what."""
    caption = f"{card.image_id} · {card.body_region or 'unknown'}"
    drawn = boxes_view.boxed_thumbnail(card.thumb, card.boxes, card.width, card.height)
    if drawn is None:  # no boxes, or the file cannot be read: the file as stored
        described = boxes_view.boxes_caption(card.boxes)
        st.image(str(card.thumb), caption=caption + (f" · {described} (not drawn)" if described else ""),
                 width="stretch", alt=alt)
        return
    # PNG: a lossless outline (JPEG would smear the box's colour into the radiograph)
    st.image(drawn, caption=f"{caption} · {boxes_view.boxes_caption(card.boxes, colours=True)}", width="stretch",
             output_format="PNG", alt=f"{alt}; {boxes_view.boxes_caption(card.boxes)} outlined")


if __name__ == "__main__":
    render()
