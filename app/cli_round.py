"""`radloop round start|status|finish`: the active-learning round scripts (logic in radloop.app.rounds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.options import JsonOption, OverrideOption, WorkspaceOption, console, emit, fail, open_catalog

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="Round config YAML "
                                                      "(default: configs/rounds/default.yaml values).")]


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console)
    task = bar.add_task("round", total=1.0)

    def update(message: str, fraction: float) -> None:
        bar.update(task, description=message, completed=fraction)

    return bar, update


def register(groups) -> None:
    @groups.round.command("start")
    def start(strategy: Annotated[Optional[str], typer.Option(help=(
                  "Selection strategy: random, least_confidence, margin, entropy, kcenter, typiclust, "
                  "cluster_margin, badge, report_disagreement, stratified (default: the config's, badge; "
                  "typiclust while the task has no model yet)."))] = None,
              budget: Annotated[Optional[int], typer.Option(min=1, help="Images to select.")] = None,
              task: Annotated[Optional[str], typer.Option(help="Image-level finding to label.")] = None,
              simulate: Annotated[bool, typer.Option("--simulate", help="Answer from the dataset's ground "
                                                     "truth instead of experts.")] = False,
              label_studio: Annotated[Optional[str], typer.Option(
                  "--label-studio", help="Label Studio URL to push to (default: the server `radloop ls init` "
                                         "bound, else $LABEL_STUDIO_URL).")] = None,
              no_push: Annotated[bool, typer.Option("--no-push", help="Only write the Label Studio import file, "
                                                    "even with a server configured.")] = False,
              config: ConfigOption = None, overrides: OverrideOption = None,
              workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
        """Start a round: embed new images, update the index, score, select, push to Label Studio.

        The batch goes to the server `radloop ls init` bound (or --label-studio / $LABEL_STUDIO_URL); without
        one, or with --no-push, it is written as a Label Studio import file under rounds/.
        Earlier rounds' tasks still unanswered are pulled first (Label Studio unreachable: noted, not fatal);
        images an expert answered "cannot tell" or skipped stay out (--set reselect_unclear=true offers them).
        Rerunning resumes an interrupted round.
        """
        from radloop.app.rounds import RoundError, load_round_config, start_round
        from radloop.core.config import ConfigError
        from radloop.labeling.ls_client import LabelStudioError

        catalog = open_catalog(workspace)
        try:
            settings = load_round_config(config, overrides)
            if label_studio:
                settings = settings.model_copy(update={"label_studio_url": label_studio})
            if no_push:
                settings = settings.model_copy(update={"push": False})
            bar, update = _progress()
            with bar:
                report = start_round(catalog, config=settings, progress=update, strategy=strategy, budget=budget,
                                     task=task, simulate=simulate or None)
        except LabelStudioError as error:
            fail(_label_studio_failed(error, "start"))
        except (RoundError, ConfigError, ValueError, LookupError, FileNotFoundError) as error:
            fail(_one_line(error))
        from radloop.app.round_record import shown_state

        resumed = bool(report.notes) and report.notes[0].startswith(f"resumed round {report.number} ")
        # the table says "exported" for a batch only written to an import file (stored, and in JSON, as "pushed")
        shown = report.to_json() if json_output else {**report.to_json(), "state": shown_state(report)}
        emit(shown, json_output, title=f"round {report.number}" + (" (resumed)" if resumed else ""))
        if not json_output and resumed:
            console.print(report.notes[0], markup=False, highlight=False)

    @groups.round.command("status")
    def status(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
        """Show every round: state, strategy, tasks answered / pending, labels spent, metric before/after.

        State "exported": the batch was only written to an import file (--no-push, or no server), not pushed.

        Answered and pending count what pulls brought into the catalog; `radloop round pull --round N` (N: the
        round column) collects answers given in Label Studio since; `radloop round start` pulls them first.
        """
        from radloop.app.options import listing_table, show
        from radloop.app.round_record import shown_state
        from radloop.app.rounds import round_status

        catalog = open_catalog(workspace)
        reports = round_status(catalog)
        # tasks written to an import file (or not pushed yet): waiting, though not "pending" in Label Studio
        outside = {r.round_id: r.not_in_label_studio for r in reports}
        if json_output:
            emit({"rounds": [{**report.to_json(), "not_in_label_studio": outside[report.round_id],
                              **({"hint": hint} if (hint := _import_hint(report, outside[report.round_id])) else {})}
                             for report in reports]}, True)
            return
        if not reports:
            console.print("no rounds yet: `radloop round start --budget 50` (cold start: typiclust)")
            return
        rows = [[r.number, shown_state(r), r.strategy, r.task, r.selected, r.answered, r.skipped, r.pending, r.deleted,
                 outside[r.round_id],
                 r.labels_spent, "" if r.labels_total is None else r.labels_total, r.metric_name or "", _fmt(r.metric_before), _fmt(r.metric_after)]
                for r in reports]
        # the task columns add up to "selected": answered + skipped + pending + deleted + not in Label Studio
        # the listing on stdout (`radloop round status | grep exported`), like `models list`; notes on stderr
        show(listing_table(["round", "state", "strategy", "task", "selected", "answered", "skipped", "pending",
                            "deleted", "not in Label Studio", "labels spent", "labels total", "metric", "before", "after"],
                           rows))
        for report in reports:  # what a round had to say (cold start, why no metric, ...)
            hint = _import_hint(report, outside[report.round_id])
            for note in report.notes:
                if hint and note.startswith("batch written to "):  # the hint says it again, with today's count
                    continue
                console.print(f"round {report.number}: {note}", markup=False, highlight=False)
            if hint:
                console.print(f"round {report.number}: {hint}", markup=False, highlight=False)
            if report.pending and report.state == "finished":
                console.print(f"round {report.number}: {report.pending} task(s) still unanswered in Label Studio "
                              f"now: `radloop round pull --round {report.number}` collects late answers",
                              markup=False, highlight=False)

    @groups.round.command("finish")
    def finish(simulate: Annotated[bool, typer.Option("--simulate", help="Answer from the dataset's ground "
                                                      "truth instead of pulling from Label Studio.")] = False,
               number: Annotated[Optional[int], typer.Option(
                   "--round", "-r", metavar="N", show_default=False,
                   help="Finish only if round N is the open one (a script's guard: refused when another round "
                        "was started meanwhile).")] = None,
               workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
        """Finish the open round: pull (or simulate) answers, fine-tune, evaluate, record what it bought.

        The round's answers in the catalog count, an earlier `radloop round pull` included.  Tasks still
        unanswered are reported; `radloop round pull --round N` collects their answers later.
        """
        from radloop.app.rounds import RoundError, finish_round
        from radloop.labeling.ls_client import LabelStudioError

        catalog = open_catalog(workspace)
        try:
            bar, update = _progress()
            with bar:
                report = finish_round(catalog, progress=update, simulate=simulate or None, number=number)
        except LabelStudioError as error:
            fail(_label_studio_failed(error, "finish"))
        except (RoundError, LookupError, FileNotFoundError) as error:  # e.g. an encoder folder deleted since
            fail(_one_line(error))
        emit(report.to_json(), json_output, title=f"round {report.number}")
        if not json_output:  # the table cuts long values: the notes (pending tasks, ...) in full
            for note in report.notes:
                console.print(f"round {report.number}: {note}", markup=False, highlight=False)


def _import_hint(report, outside: int) -> str | None:
    """What to do about an open round's ``outside`` tasks that are not in Label Studio (an import file's)."""
    if not outside or report.state == "finished":
        return None
    if report.state == "selected":  # the batch was never handed out (e.g. the push failed)
        return (f"{outside} task(s) not in Label Studio yet: rerun `radloop round start` to hand the batch out")
    where = f"the import file {report.tasks_file}" if report.tasks_file else "the round's import file"
    return (f"{outside} task(s) not in Label Studio yet: import {where} into a Label Studio project, or run "
            f"`radloop ls init --url URL` then `radloop round push --round {report.number}` (or answer them "
            f"from the ground truth with `radloop round finish --simulate`)")


def _label_studio_failed(error: Exception, command: str) -> str:
    return (f"{error}\nNothing was lost: what the round did so far is saved; rerun `radloop round {command}` "
            "to resume it.")


def _one_line(error: Exception) -> str:
    """The error's message (a KeyError's too, without its quotes), or its type when it has none."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
