"""Walkthrough 24b: `radloop label-reports catalog` on a big catalog: the progress bar had no total (a count
going up, no ETA) and Ctrl-C exited 130 with no word of what was kept.  A fake labeller stands in for medspaCy."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from radloop.core.records import FindingMention
from radloop.labeling.labeler import LabelResult


class FakeLabeler:
    """One ``effusion`` mention per text that names it; Ctrl-C after ``stop_after`` texts."""

    stop_after: int | None = None

    def __init__(self, *args, **kwargs):
        from radloop.labeling.rules_loader import rules_version

        self.rules_version = rules_version()

    def label_many(self, texts, n_process=1):
        for seen, text in enumerate(texts):
            if self.stop_after is not None and seen == self.stop_after:
                raise KeyboardInterrupt
            yield LabelResult([FindingMention("effusion", "positive", evidence="effusion")] * ("effusion" in text))


class Bar:
    """Records what the command tells its progress bar."""

    made: list[Bar] = []

    def __init__(self, total=None, description=""):
        self.total, self.updates = total, 0
        Bar.made.append(self)

    def update(self, count=1):
        self.updates += count

    def refresh(self):
        pass

    def close(self):
        pass


@pytest.fixture
def labelled(tmp_path, monkeypatch):
    """A workspace of 30 reports (a third naming nothing), the fake labeller, the recording bar; runs the command."""
    import radloop.labeling.labeler as labeler_module
    from radloop.app.cli import build_app
    from radloop.core.catalog import Catalog
    from radloop.core.schema import Report
    from radloop.core.workspace import resolve_workspace

    workspace = resolve_workspace(tmp_path / "ws").ensure()
    catalog = Catalog.open(workspace)
    with catalog.session() as session:
        for index in range(30):
            session.add(Report(id=f"R{index:02d}", content_hash=f"h{index}",
                               text="FINDINGS: Small effusion." if index % 3 else "PA and lateral views."))
    catalog.dispose()
    import radloop.labeling

    # the package's lazy name keeps the first value read: patched first (reading the real one), so that the real
    # one is back afterwards
    monkeypatch.setattr(radloop.labeling, "ReportLabeler", FakeLabeler)
    monkeypatch.setattr(labeler_module, "ReportLabeler", FakeLabeler)
    monkeypatch.setattr("radloop.app.cli_labeling._progress", Bar)
    Bar.made = []
    monkeypatch.setattr(FakeLabeler, "stop_after", None)

    def run(*extra):
        command = ["label-reports", "catalog", "--workspace", str(workspace.root), "--out",
                   str(tmp_path / "l.jsonl"), *extra]
        return CliRunner().invoke(build_app(), command)

    return run


def test_the_progress_bar_is_given_the_number_of_reports_to_label(labelled, monkeypatch):
    FakeLabeler.stop_after = 12
    assert labelled().exit_code == 130
    FakeLabeler.stop_after = None
    result = labelled()  # the 18 left (the 4 of the 12 labelled with nothing found are not counted again)
    assert result.exit_code == 0, result.output
    assert (Bar.made[-1].total, Bar.made[-1].updates) == (18, 18)
    assert labelled().exit_code == 0 and Bar.made[-1].total == 0  # nothing new
    assert labelled("--force").exit_code == 0 and (Bar.made[-1].total, Bar.made[-1].updates) == (30, 30)


def test_ctrl_c_says_how_many_reports_were_labelled_and_kept_and_that_a_rerun_continues(labelled):
    FakeLabeler.stop_after = 12
    result = labelled()
    FakeLabeler.stop_after = None
    assert result.exit_code == 130
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1] == ("error: interrupted: 12 report(s) labelled in this run are kept in the catalog; run the "
                         "same command again to label the rest"), result.output
    rest = labelled()
    assert rest.exit_code == 0 and Bar.made[-1].updates == 18
