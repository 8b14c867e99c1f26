"""Overview page: counts by body region and finding, weak-label coverage, rounds and the learning curve."""

from __future__ import annotations

import streamlit as st

from radloop.app import next_steps, ui, views, views_rounds


@ui.safe_page
def render() -> None:
    """Render the overview of the workspace."""
    st.title("Overview")
    catalog = ui.require_catalog()
    counts = catalog.counts()
    columns = st.columns(5)
    helps = {"annotations": "Annotation rows: every expert box and every expert answer (a round's label). The "
                            "Findings table counts images with an expert label instead (an exhaustively boxed "
                            "image without a box counts as absent there)."}
    for column, (label, name) in zip(columns, [("Studies", "studies"), ("Images", "images"),
                                              ("Reports", "reports"), ("Expert labels", "annotations"),
                                              ("Rounds", "rounds")], strict=True):
        column.metric(label, f"{counts[name]:,}", help=helps.get(name))

    left, right = st.columns(2)
    with left:
        st.subheader("Images by body region")
        regions = views.region_counts(catalog)
        if regions.empty:
            ui.next_step(next_steps.NO_IMAGES)
        else:
            st.bar_chart(regions, x="body_region", y="images", horizontal=True, sort="-images", height=260)
            ui.table(regions)
    with right:
        st.subheader("Findings")
        findings = views.finding_counts(catalog)
        if findings.empty:  # without reports, `label-reports` has nothing to label: say to ingest them first
            ui.next_step(next_steps.NO_WEAK_LABELS if counts["reports"] else next_steps.NO_REPORTS)
        else:
            st.caption("Reports with a positive / negative / uncertain mention (weak labels) and images "
                       "with an expert label.")
            ui.table(findings, column_config={
                "positive": st.column_config.NumberColumn("pos.", help="reports with a positive mention"),
                "negative": st.column_config.NumberColumn("neg.", help="reports with a negated mention"),
                "uncertain": st.column_config.NumberColumn("unc.", help="reports with an uncertain mention"),
                "expert_positive": st.column_config.NumberColumn("expert +", help="images labelled present"),
                "expert_negative": st.column_config.NumberColumn("expert −", help="images labelled absent")})

    st.subheader("Weak-label coverage")
    coverage = views.weak_label_coverage(catalog)
    first, second, third = st.columns(3)
    first.metric("Reports labelled", f"{coverage.reports_labelled:,} / {coverage.reports:,}",
                 help=f"{coverage.report_fraction:.0%} of the reports have at least one weak label")
    second.metric("Images with a report", f"{coverage.images_with_report:,} / {coverage.images:,}")
    third.metric("Images with weak labels", f"{coverage.images_labelled:,} ({coverage.image_fraction:.0%})",
                 help="Images whose study has a report with at least one weak label")
    if coverage.reports and coverage.images and not coverage.images_with_report:
        st.caption("No image belongs to a study with a report, so no weak label reaches an image yet (the demo's "
                   "Open-i reports come without their radiographs). Ingest links a report to its images through "
                   "their study: a reports CSV's `study_id` / `image` columns.")
    if coverage.rules_versions:
        st.caption("Rules version(s): " + ", ".join(f"`{version}`" for version in coverage.rules_versions))
    elif coverage.reports:
        ui.next_step(next_steps.NO_WEAK_LABELS)

    st.subheader("Active-learning rounds")
    rounds = views_rounds.rounds_frame(catalog)
    if rounds.empty:
        ui.next_step(next_steps.NO_ROUND)
        return
    curve = views_rounds.learning_curve(rounds, views_rounds.demo_baseline(catalog.workspace))
    if curve.empty:
        st.caption(next_steps.NO_METRIC_FINISHED if (rounds["state"] == "finished").any() else next_steps.NO_METRIC)
    else:
        st.caption("Metric against expert labels spent")
        st.altair_chart(_curve_chart(curve), width="stretch")
    ui.table(rounds.drop(columns=["round_id"]))
    latest = rounds.iloc[-1]
    if latest["state"] != "finished":  # the loop waits on this round: say so where the rounds are listed
        ui.next_step(next_steps.open_round(int(latest["number"]), str(latest["state"])))


def _curve_chart(curve):
    """Metric against labels, the y axis fitted to the values (AUROCs of 0.48–0.60 are flat lines on 0–1) and
    the legend below, so that long series names ("random selection (demo baseline)") are not cut; label counts are
    whole numbers on the x axis (no 10.5 ticks)."""
    import altair as alt

    return (alt.Chart(curve).mark_line(point=True)
            .encode(x=alt.X("labels:Q", title="expert labels", axis=alt.Axis(format="d", tickMinStep=1)),
                    y=alt.Y("metric:Q", title="metric", scale=alt.Scale(zero=False)),
                    color=alt.Color("metric_name:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=0)),
                    tooltip=["metric_name", "labels", alt.Tooltip("metric:Q", format=".3f")])
            .properties(height=280))


if __name__ == "__main__":
    render()
