"""Selection queue page: the images the latest round picked, their scores and why they were chosen."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from radloop.app import boxes_view, next_steps, ui, views, views_rounds, views_search

THUMBNAILS = 8
GRID_COLUMNS = 4
#: The queue table's headers in a reader's words ("ls_task_id", "annotated" meant nothing to a radiologist).
QUEUE_COLUMNS = {
    "image_id": st.column_config.TextColumn("image"),
    "score": st.column_config.NumberColumn("score", format="%.4f", help="The strategy's score (higher: picked first)."),
    "reason": st.column_config.TextColumn("why selected", width="large"),
    "body_region": st.column_config.TextColumn("region"),
    "annotated": st.column_config.CheckboxColumn("answered", help="An expert answer for this round is in."),
    "ls_task_id": st.column_config.NumberColumn("Label Studio task", format="%d",
                                                help="The task's id in Label Studio, once the batch was pushed."),
}


@ui.safe_page
def render() -> None:
    """Render the selection queue."""
    st.title("Selection queue")
    catalog = ui.require_catalog(need_images=True)
    rounds = views_rounds.rounds_frame(catalog)
    if rounds.empty:
        ui.next_step(next_steps.NO_ROUND)
        return
    choices = {int(row.round_id): f"round {row.number} · {row.strategy} · {row.state}"
               for row in rounds.iloc[::-1].itertuples()}
    _follow_newest(choices)
    ui.kept_choice("queue_round", list(choices), lambda value: choices.get(value, "the round picked earlier"))
    round_id = st.selectbox("Round", list(choices), format_func=choices.get, key="queue_round")
    queue = views_rounds.selection_queue(catalog, round_id)
    info = queue.round
    is_open = info.state != "finished"
    columns = st.columns(4)
    columns[0].metric("Selected", len(queue.items))
    columns[1].metric("Awaiting labels" if is_open else "Never answered", queue.pending)
    columns[2].metric("Budget", info.budget)
    columns[3].metric("State", info.shown_state or info.state)
    for note in info.notes:
        st.caption(f"Note: {note}")
    if info.label_studio_url:
        st.caption(f"Pushed to Label Studio at {info.label_studio_url}.")
    elif info.tasks_file:
        hint = ("" if info.state == "finished"
                else " (import it into a Label Studio project, or finish the round with *Simulate*)")
        st.caption(f"Label Studio import file: `{catalog.workspace.absolute(info.tasks_file)}`{hint}.")
    if queue.items.empty:
        ui.next_step(f"Round {info.number} has not selected images yet: "
                     f"{next_steps.command('round_start')} resumes it.")
        return
    ui.table(queue.items, column_config=QUEUE_COLUMNS)
    if is_open and queue.pending:
        st.subheader(f"Next to label (top {min(THUMBNAILS, queue.pending)} of {queue.pending} awaiting)")
        ranked = queue.items[~queue.items["annotated"]].head(THUMBNAILS)
    else:  # a finished round (or one with every answer in): nothing waits, show what the round picked
        st.subheader(f"Selected by round {info.number} (top {min(THUMBNAILS, len(queue.items))} by rank)")
        ranked = queue.items.head(THUMBNAILS)
    cards = {card.image_id: card for card in views.case_cards(catalog, ranked["image_id"].tolist())}
    alts = views_search.image_descriptions(catalog, list(cards))
    rows = list(ranked.itertuples())
    for start in range(0, len(rows), GRID_COLUMNS):  # one st.columns row per line: tiles stay aligned
        for column, row in zip(st.columns(GRID_COLUMNS), rows[start:start + GRID_COLUMNS], strict=False):
            card = cards.get(row.image_id)
            with column:
                predicted = queue.predicted.get(row.image_id)
                if card is not None and predicted is not None:  # the model's boxes dashed, the catalog's solid
                    _image_with_predictions(card, alts.get(row.image_id, row.image_id), predicted)
                elif card is not None:  # finding boxes drawn on the thumbnail, counted in its caption
                    ui.case_image(card, alts.get(row.image_id, row.image_id))
                st.markdown(f"**#{row.rank}** `{row.image_id}`")
                score = f"score {row.score:.4g} · " if pd.notna(row.score) else ""  # 147, 0.4397: as stored
                st.caption(f"{score}{views.text_or(row.reason, '')}")
                if card is not None:
                    st.caption(f"{card.body_region or 'unknown region'} · {card.label_summary}")


def _image_with_predictions(card: views.CaseCard, alt: str, predicted: views_rounds.PredictedBoxes) -> None:
    """The thumbnail with the model's predicted boxes (the task's pre-annotations) dashed and the catalog's boxes
    solid, the caption counting both kinds."""
    described = boxes_view.both_caption(card.boxes, predicted.boxes, predicted.model_version)
    if card.thumb is None:
        st.caption(f"{described} (not drawn: no thumbnail)")
        return
    drawn = boxes_view.boxed_thumbnail(card.thumb, card.boxes, card.width, card.height, predicted=predicted.boxes)
    if drawn is None:  # no box at all, or the file cannot be read: the file as stored
        st.image(str(card.thumb), width="stretch", alt=f"{alt}; {described}")
        unread = card.boxes or predicted.boxes
        st.caption(f"{described} (not drawn: the thumbnail could not be read)" if unread else described)
        return
    st.image(drawn, width="stretch", output_format="PNG", alt=f"{alt}; {described} outlined",
             caption=boxes_view.both_caption(card.boxes, predicted.boxes, predicted.model_version, colours=True))


_NEWEST_KEY = "_queue_newest_round"


def _follow_newest(choices: dict[int, str]) -> None:
    """A page left on the newest round moves to a round started since (by another session or the CLI), and says
    so; an older round the user picked stays picked."""
    newest = next(iter(choices))
    previous = st.session_state.get(_NEWEST_KEY)
    st.session_state[_NEWEST_KEY] = newest
    if previous is not None and previous != newest and st.session_state.get("queue_round") == previous:
        st.session_state["queue_round"] = newest
        st.info(f"A newer round was started since this page was drawn: showing {choices[newest]} (the earlier "
                "round stays in the picker).", icon=":material/update:")


if __name__ == "__main__":
    render()
