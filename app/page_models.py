"""Models page: the registry's versions, lineage and metrics."""

from __future__ import annotations

import streamlit as st

from radloop.app import next_steps, ui, views


@ui.safe_page
def render() -> None:
    """Render the model registry."""
    st.title("Models")
    catalog = ui.require_catalog()
    models = views.models_frame(catalog)
    if models.empty:
        ui.next_step(next_steps.NO_MODELS)
        return
    tasks = sorted(models["task"].dropna().unique())
    task = st.selectbox("Task", ["all", *tasks], key="models_task")
    shown = models if task == "all" else models[models["task"] == task]
    current = shown[shown["current"]]
    if not current.empty:
        st.caption("Current: " + ", ".join(f"`{row.version}` ({row.task or row.kind})"
                                           for row in current.itertuples()))
    st.dataframe(shown, hide_index=True, width="stretch")
    metric_columns = [column for column in shown.columns if column.startswith("metric:")]
    if metric_columns:
        metric = st.selectbox("Metric", metric_columns, key="models_metric")
        # Vega-Lite reads ":" and "." in a field name as type / nesting: plot under a plain name.
        plotted = shown[["version", metric]].dropna().rename(columns={metric: "value"})
        if not plotted.empty:
            st.bar_chart(plotted, x="version", y="value", sort="-value", horizontal=True, height=60 + 30 * len(plotted),
                         y_label=metric.removeprefix("metric:"))
    st.caption(next_steps.SWITCH_MODELS)


if __name__ == "__main__":
    render()
