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
    ui.kept_choice("models_task", ["all", *tasks], lambda value: f"task `{value}`")
    task = st.selectbox("Task", ["all", *tasks], key="models_task")
    shown = models if task == "all" else models[models["task"] == task]
    # metrics no version of this task has (an encoder's loss among probes' AUROCs) are empty columns: drop them
    shown = shown.drop(columns=[column for column in shown.columns
                                if column.startswith("metric:") and shown[column].isna().all()])
    current = shown[shown["current"]]
    if not current.empty:
        st.caption("Current: " + ", ".join(f"`{row.version}` ({row.task or row.kind})"
                                           for row in current.itertuples()))
    ui.table(shown)  # missing metrics and parents as "—", not a grey "None"
    metric_columns = [column for column in shown.columns if column.startswith("metric:")]
    if metric_columns:
        ui.widget_default("models_metric", metric_columns[default_metric(metric_columns)], metric_columns)
        metric = st.selectbox("Metric", metric_columns, key="models_metric")
        # Vega-Lite reads ":" and "." in a field name as type / nesting: plot under a plain name.
        plotted = shown[["version", metric]].dropna().rename(columns={metric: "value"})
        if not plotted.empty:
            st.altair_chart(_metric_chart(plotted, metric.removeprefix("metric:")), width="stretch")
    st.caption(next_steps.SWITCH_MODELS)


#: Metrics that say how good a model is, in the order the picker prefers them (the columns are sorted by name,
#: so without this a count such as ``eval_images`` came first).
QUALITY_METRICS = ("auroc", "map50", "region_balanced_accuracy", "ap", "balanced_accuracy", "loss")


def default_metric(columns: list[str]) -> int:
    """Index of the column the Metric picker starts on: the first quality metric by :data:`QUALITY_METRICS`'
    order (``metric:auroc.fracture`` before ``metric:ece.fracture`` and ``metric:eval_images``), else 0."""
    for prefix in QUALITY_METRICS:
        for index, column in enumerate(columns):
            name = column.removeprefix("metric:")
            if name == prefix or name.startswith((prefix + ".", prefix + "_")):
                return index
    return 0


#: Pixels per version bar: a fixed total height (axis included, as Streamlit fits the chart) overlapped the labels.
BAR_STEP = 28


def _metric_chart(plotted, title: str):
    """Horizontal bars, best first, with whole version names: they share long prefixes
    (``probe-fracture-r001-…``, ``-r002-…``) and a cut label made the rounds indistinguishable."""
    import altair as alt

    return (alt.Chart(plotted).mark_bar()
            .encode(x=alt.X("value:Q", title=title),
                    y=alt.Y("version:N", sort="-x", title=None, axis=alt.Axis(labelLimit=0)),
                    tooltip=["version", alt.Tooltip("value:Q", title=title)])
            .properties(height=alt.Step(BAR_STEP)))


if __name__ == "__main__":
    render()
