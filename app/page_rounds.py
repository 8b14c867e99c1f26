"""Round control page: start and finish active-learning rounds with progress.

The work is done by the round scripts (``radloop.app.rounds``), the same functions as
``radloop round start`` / ``radloop round finish``; this page only collects the parameters and shows progress.
"""

from __future__ import annotations

import streamlit as st

from radloop.app import next_steps, ui, views_control, views_rounds, views_search
from radloop.core.vocabulary import IMAGE_FINDINGS


def _progress_reporter(status, bar):
    """A ``progress(message, fraction)`` callback that drives the status box and the progress bar."""

    def report(message: str = "", fraction: float = 0.0) -> None:
        if not isinstance(message, str):  # tolerate (fraction, message)
            message, fraction = str(fraction or ""), float(message or 0.0)
        bar.progress(min(max(float(fraction or 0.0), 0.0), 1.0), text=message or None)
        if message:
            status.update(label=message)

    return report


_RESULT_KEY = "round_action_result"
#: The button clicked, as the page showed it: (action, round number). Set by the button's callback, which Streamlit
#: runs even when the rerun no longer draws that button (the rounds changed under the page).
_CLICK_KEY = "_round_click"


def _clicked(action: str, number: int | None) -> None:
    st.session_state[_CLICK_KEY] = (action, number)


def stale_click_message(action: str, number: int | None, open_number: int | None) -> str | None:
    """Why a click on a round button drawn before the rounds changed (another browser session, `radloop round`, a
    nightly job) does nothing now, or None when it still applies.  ``number``: the round the button named;
    ``open_number``: the round open now, if any."""
    meanwhile = "meanwhile (in another session or by a `radloop round` command)"
    if action == "start" and open_number is not None:
        return (f"Round {open_number} was started {meanwhile}: no new round was started. It is shown below: "
                "finish it before starting another.")
    if action in ("resume", "finish") and open_number != number:
        verb = "resumed" if action == "resume" else "finished"
        if open_number is None:
            return f"Round {number} was finished {meanwhile}: nothing was {verb}. Its outcome is shown below."
        return (f"Round {number} was finished and round {open_number} started {meanwhile}: nothing was {verb}. "
                f"Check round {open_number} below before you {action} it.")
    return None


def _run(action: str, function, catalog, *, hint: str | None = None, **kwargs) -> None:
    """Run a round step with live progress, keep its outcome and rerun the page, so that the header and the
    forms show the rounds as they are now (not as they were before the click).  ``hint``: an extra next step
    shown when the step fails."""
    with st.status(f"{action}…", expanded=True) as status:
        bar = st.progress(0.0)
        result = views_control.run_round_action(function, catalog, progress=_progress_reporter(status, bar),
                                               **kwargs)
    st.session_state[_RESULT_KEY] = (action, result.ok, result.summary, result.message, hint)
    st.rerun()


def _show_last_result() -> None:
    if _RESULT_KEY not in st.session_state:
        return
    action, ok, summary, message, hint = st.session_state.pop(_RESULT_KEY)
    if ok:
        st.success(f"{action}: done", icon=":material/check_circle:")
        if summary:
            st.json(summary, expanded=False)
    else:
        st.error(f"{action}: failed. {message}")
        ui.next_step(next_steps.ROUND_RESUMABLE)
        if hint:
            ui.next_step(hint)


@ui.safe_page
def render() -> None:
    """Render round control."""
    st.title("Round control")
    catalog = ui.require_catalog(need_images=True)
    _show_last_result()
    current = views_rounds.latest_round(catalog)
    open_round = current is not None and current.state != "finished"
    click = st.session_state.pop(_CLICK_KEY, None)
    if click is not None and (stale := stale_click_message(*click, current.number if open_round else None)):
        st.warning(stale, icon=":material/update:")
        click = None
    if current is None:
        st.caption("No round yet.")
    else:
        columns = st.columns(4)
        columns[0].metric("Latest round", current.number)
        columns[1].metric("State", current.shown_state or current.state)
        columns[2].metric("Labels spent", current.labels_spent)
        if current.metric_after is not None:
            delta = (current.metric_after - current.metric_before if current.metric_before is not None else None)
            columns[3].metric(current.metric_name or "metric", f"{current.metric_after:.3f}",
                              None if delta is None else f"{delta:+.3f}")
        elif current.metric_before is not None:
            columns[3].metric(f"{current.metric_name or 'metric'} (before)", f"{current.metric_before:.3f}")

    # the server rounds push to: the one `radloop ls init` bound, else $LABEL_STUDIO_URL, else the default
    label_studio = views_control.label_studio_status(_round_server(catalog))
    if label_studio.reachable:
        st.success(label_studio.message, icon=":material/check_circle:")
    else:
        st.warning(label_studio.message, icon=":material/cloud_off:")

    api = views_control.rounds_api()
    if not api.available:
        ui.next_step(api.message)
        return

    readiness = views_search.search_readiness(catalog)
    encoder = readiness.encoder_version
    if encoder is None:  # none at all, or registered but none current (the message says which)
        ui.next_step(next_steps.NO_ENCODER_FOR_ROUNDS if readiness.message == next_steps.NO_ENCODER
                     else readiness.message)
    defaults = api.defaults
    strategies = views_control.strategy_names()
    tasks = list(IMAGE_FINDINGS)
    start_column, finish_column = st.columns(2)
    if open_round:
        # An open round resumes with its own settings: editable fields here would be refused by the round
        # scripts ("these options differ from it"), so show what it was started with instead.
        with start_column, st.form("resume_round"):
            st.subheader(f"Round {current.number} is open")
            answers = "simulated answers (dataset ground truth)" if current.simulate else "expert answers"
            st.markdown(f"Finding **{current.task or '?'}** · strategy **{current.strategy}** · budget "
                        f"**{current.budget}** · {answers}")
            st.caption(f"State *{current.shown_state or current.state}*. Resuming completes an interrupted selection or hand-out (Label "
                       "Studio, or the import file) and shows the round's summary. To start a round with other "
                       "settings, finish this one first.")
            st.form_submit_button(f"Resume round {current.number}", disabled=encoder is None,
                                  type="primary" if current.state == "selected" else "secondary",
                                  on_click=_clicked, args=("resume", current.number))
    else:
        with start_column, st.form("start_round"):
            st.subheader("Start a round")
            # defaults through Session State (ui.widget_default): no "default value but also ..." server warning
            ui.widget_default("round_task", defaults["task"] if defaults.get("task") in tasks else tasks[0], tasks)
            ui.widget_default("round_strategy", defaults["strategy"] if defaults.get("strategy") in strategies
                              else strategies[0], strategies)
            ui.widget_default("round_budget", int(defaults.get("budget") or 20))
            ui.widget_default("round_simulate", not label_studio.reachable)
            task = st.selectbox("Finding to label", tasks, key="round_task")
            strategy = st.selectbox("Strategy", strategies, key="round_strategy")
            budget = st.number_input("Budget (images to label)", min_value=1, max_value=10_000, step=5,
                                     key="round_budget")
            simulate = st.checkbox("Simulate the experts (answer from the dataset's ground truth)",
                                   key="round_simulate")
            st.form_submit_button("Start round", type="primary", disabled=encoder is None, on_click=_clicked,
                                  args=("start", None))
    with finish_column, st.form("finish_round"):
        st.subheader("Finish the round")
        st.caption("Pull the annotations, fine-tune, evaluate and record the metric before/after."
                   if open_round else "No round is open: start one first.")
        simulate_missing = st.checkbox("Simulate the answers (dataset ground truth)", value=False,
                                       key="round_finish_simulate")
        # once the batch is handed out, finishing is what the round waits for
        st.form_submit_button(f"Finish round {current.number}" if open_round else "Finish round",
                              type="primary" if open_round and current.state != "selected" else "secondary",
                              disabled=not open_round, on_click=_clicked,
                              args=("finish", current.number if open_round else None))
    action = click[0] if click is not None else None
    if action == "resume":  # no round-defining options: the round scripts resume it as it was started
        _run(f"Resuming round {current.number}", api.start, catalog,
             label_studio_url=label_studio.url if label_studio.reachable else None,
             push=bool(label_studio.reachable) or current.simulate)
    elif action == "start":
        if not simulate and not label_studio.reachable:
            st.info("No Label Studio: the round writes the Label Studio import file under `rounds/`; "
                    "import it by hand or tick *Simulate*.")
        _run("Starting round", api.start, catalog, task=task, strategy=strategy, budget=int(budget),
             simulate=simulate, label_studio_url=label_studio.url if label_studio.reachable and not simulate
             else None, push=bool(label_studio.reachable) or simulate)
    elif action == "finish":
        # the round scripts' message names the CLI's --simulate: say where that is on this page; ``number``: the
        # round scripts refuse when another round is open by the time they run (a race with another session)
        _run("Finishing round", api.finish, catalog, simulate=True if simulate_missing else None,
             number=current.number, hint=None if simulate_missing else next_steps.FINISH_SIMULATED)


def _round_server(catalog) -> str | None:
    try:
        from radloop.app.rounds import RoundConfig, RoundError, label_studio_server
    except ImportError:  # round scripts unavailable: the page says so elsewhere
        return None
    try:
        return label_studio_server(catalog, RoundConfig())[0]
    except RoundError as error:  # a damaged binding: the probe falls back to $LABEL_STUDIO_URL, the start says why
        st.warning(str(error))
        return None


if __name__ == "__main__":
    render()
