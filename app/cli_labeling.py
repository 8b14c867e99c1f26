"""`radloop label-reports`, `radloop eval-reports` and `radloop bench label-reports`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from radloop.app.options import JsonOption, WorkspaceOption, check_output_file, console, emit, fail, open_catalog

InputArgument = Annotated[str, typer.Argument(
    help="Open-i XML tarball (.tgz) or folder, a CSV with columns report_id,text, or 'catalog' "
         "(the workspace's reports; labels are also stored there under the rules' version).")]
ProcessesOption = Annotated[int, typer.Option("--n-process", "-j", min=1, help="Worker processes.")]


def register(groups) -> None:
    """Attach the report-labelling commands to the CLI groups."""
    groups.root.command("label-reports")(label_reports_command)
    groups.root.command("eval-reports")(eval_reports_command)
    groups.bench.command("label-reports")(bench_label_reports_command)


def _pseudonym_key(workspace: Path | None) -> bytes:
    """The secret key of an existing workspace (made there on first use, as ingest does); exits with what to do
    when the workspace does not exist (a key made up in a new folder would be the only way to join the labels
    back, in a folder nobody asked for)."""
    from radloop.core.workspace import resolve_workspace

    resolved = resolve_workspace(workspace)
    if not resolved.root.is_dir():
        fail(f"--pseudonymize-ids: no workspace at {resolved.root} (its secret.key makes the pseudonyms); pass "
             "--workspace with the workspace these reports belong to, or create one with `radloop ingest`")
    return resolved.pseudonym_key


def _record(report_id: str, result) -> dict:
    record = {"report_id": report_id, "findings": [mention.to_json() for mention in result]}
    if result.error is not None:
        record["error"] = result.error
    return record


def _open_sources(source: str):
    from radloop.labeling.sources import iter_reports

    try:
        return iter_reports(source)
    except ValueError as error:
        fail(str(error))


def _progress(total: int | None = None, description: str = "labelling reports"):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="report", file=sys.stderr, disable=not sys.stderr.isatty(),
                dynamic_ncols=True)


def label_reports_command(
    source: InputArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output, one report per line ('-' = stdout).")] = Path("-"),
    n_process: ProcessesOption = 1,
    force: Annotated[bool, typer.Option("--force", help="catalog: relabel reports already labelled with these rules.")] = False,
    workspace: WorkspaceOption = None,
    pseudonymize_ids: Annotated[bool, typer.Option(
        "--pseudonymize-ids",
        help="Write 'R-' + 16 hex (HMAC-SHA256 with the workspace's secret.key) instead of each report id, which "
             "is often an accession number.  Needs an existing workspace (--workspace; also for a tarball or CSV "
             "input).  Off by default (earlier label files hold the plain ids); `eval-reports --labels F "
             "--pseudonymize-ids` with the same workspace scores such a file, and inside the workspace the pseudonym "
             "can be recomputed to join back.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Label radiology reports: findings with status, temporality, site, laterality, device type, evidence.

    The output holds each report's id as given (often an accession number) unless --pseudonymize-ids.
    """
    from radloop.core.deid import report_pseudonym
    from radloop.labeling import ReportLabeler

    to_stdout = str(out) == "-"
    if not to_stdout:
        check_output_file(out)
    key = _pseudonym_key(workspace) if pseudonymize_ids else None

    def written_id(report_id: str) -> str:
        return report_id if key is None else report_pseudonym(key, report_id)

    catalog = open_catalog(workspace) if source == "catalog" else None
    # the catalog's labeller is built by label_catalog only when a report needs labelling (a rerun with nothing
    # to do: seconds and ~900 MB less)
    labeler = ReportLabeler() if catalog is None else None
    rules_version = labeler.rules_version if labeler is not None else None
    # written next to --out and renamed at the end: an interrupted or failed run leaves the previous file whole
    partial = None if to_stdout else out.with_name(out.name + ".partial")
    if partial is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            handle = partial.open("w", encoding="utf-8")
        except OSError as error:
            fail(f"cannot write --out {out}: {error.strerror or error}")
    else:
        handle = sys.stdout
    counts = {"reports": 0, "errors": 0, "mentions": 0, "positive_findings": 0}
    progress = _progress()
    labelled_now: set[str] = set()

    def write(report_id: str, result) -> None:
        handle.write(json.dumps(_record(written_id(report_id), result)) + "\n")
        labelled_now.add(report_id)
        counts["reports"] += 1
        counts["errors"] += result.error is not None
        counts["mentions"] += len(result)
        counts["positive_findings"] += sum(m.status == "positive" and m.finding != "normal" for m in result)
        progress.update(1)

    completed = False
    try:
        if catalog is not None:
            from radloop.labeling import label_catalog
            from radloop.labeling.rules_loader import rules_version as current_rules
            from radloop.labeling.store import LabelRunInterrupted, count_to_label, stored_mentions

            try:
                progress.total = count_to_label(catalog, current_rules(), force=force)
                progress.refresh()
                try:
                    summary = label_catalog(catalog, None, n_process=n_process, force=force, on_result=write)
                except LabelRunInterrupted as interrupted:
                    progress.close()
                    fail(f"interrupted: {interrupted.summary.reports_labelled} report(s) labelled in this run are "
                         "kept in the catalog; run the same command again to label the rest", code=130)
                except KeyboardInterrupt:  # a second Ctrl-C while the last batch was being written
                    progress.close()
                    fail("interrupted: the reports labelled up to the last batch written are kept in the catalog; "
                         "run the same command again to label the rest", code=130)
                rules_version = summary.rules_version
                # reports labelled by an earlier run with these rules: their stored mentions, so that --out
                # always holds every labelled report (a rerun must not leave an empty file)
                from_catalog = 0
                for report_id, findings in stored_mentions(catalog, rules_version, exclude=labelled_now):
                    handle.write(json.dumps({"report_id": written_id(report_id), "findings": findings}) + "\n")
                    from_catalog += 1
                    counts["mentions"] += len(findings)
                    counts["positive_findings"] += sum(f["status"] == "positive" and f["finding"] != "normal"
                                                       for f in findings)
            finally:
                catalog.dispose()
            counts.update(stored_mentions=summary.mentions_written, skipped_already_labelled=summary.reports_skipped,
                          written_from_catalog=from_catalog)
            counts["reports"] += from_catalog
        else:
            reports = _open_sources(source)
            from collections import deque

            pending: deque = deque()

            def texts() -> Iterator[str | None]:
                for report in reports:
                    pending.append(report)
                    yield report.text

            for result in labeler.label_many(texts(), n_process=n_process):
                report = pending.popleft()
                if report.error and result.error is None:
                    result.error = report.error
                write(report.report_id, result)
            if counts["reports"] == 0:  # an empty folder or a header-only CSV: say so, keep an earlier --out
                raise ValueError(f"no reports in {source}: expected Open-i XML files (.xml) or CSV rows "
                                 "(report_id,text)")
        completed = True
    except ValueError as error:
        fail(str(error))
    finally:
        progress.close()
        if partial is not None:
            handle.close()
            try:
                if completed:
                    partial.replace(out)
            except OSError as error:
                fail(f"cannot write --out {out}: {error.strerror or error}")
            finally:
                partial.unlink(missing_ok=True)  # gone once renamed; else what a failed run wrote
    summary = {"input": source, "out": str(out), "rules_version": rules_version,
               "report_ids": "pseudonymized" if key is not None else "as given", **counts}
    if to_stdout:  # stdout holds the labels: the summary is one JSON line on stderr (not wrapped, no markup)
        console.print(json.dumps(summary), markup=False, highlight=False, soft_wrap=True)
    else:
        emit(summary, json_output, title="label-reports")


def _eval_pseudonym_key(workspace: Path | None) -> bytes:
    """The key that wrote a pseudonymized labels file: an existing workspace's secret.key, never a new one (a
    fresh key would match nothing)."""
    from radloop.core.workspace import resolve_workspace

    root = resolve_workspace(workspace).root
    if not (root / "secret.key").is_file():
        fail(f"--pseudonymize-ids: no secret.key in {root}; pass --workspace with the workspace whose "
             "`label-reports --pseudonymize-ids` wrote the --labels file")
    return _pseudonym_key(workspace)


def _no_common_ids(labels: Path, reports: Path, count: int, pseudonymized: bool, workspace: Path | None) -> str:
    """Why a labels file matches none of the reports, with the likely cause (the file is read again, streamed)."""
    from radloop.core.workspace import resolve_workspace

    from radloop.labeling.label_files import iter_label_file, pseudonymized_ids

    looks_pseudonymized = pseudonymized_ids(report_id for report_id, _ in iter_label_file(labels))
    if looks_pseudonymized and not pseudonymized:
        return (f"--labels {labels} holds pseudonymized report ids (R-..., written by `label-reports "
                f"--pseudonymize-ids`), none of the {count} ids in {reports}: add --pseudonymize-ids and the "
                "--workspace that wrote the file")
    if looks_pseudonymized:
        return (f"--labels {labels}: none of its pseudonymized ids is the pseudonym of one of the {count} reports "
                f"in {reports} under the key of workspace {resolve_workspace(workspace).root}: the file was written "
                "with another workspace's secret.key (pass that one with --workspace) or for other reports")
    if pseudonymized:
        return (f"--labels {labels} holds plain report ids, not pseudonyms (R-...), and none matches the {count} "
                f"reports in {reports}: drop --pseudonymize-ids, or label these reports with `radloop label-reports`")
    return (f"--labels {labels} labels none of the {count} reports in {reports} (no report_id in common): label "
            "them with `radloop label-reports` first")


def eval_reports_command(
    reports: Annotated[Path, typer.Option("--reports", help="Open-i XML tarball or folder (with MeSH <major> coding).")],
    negbio: Annotated[Optional[Path], typer.Option("--negbio", help="NegBio openi_gld_std14.csv (14 chest findings).")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="labels.jsonl from label-reports (default: label now).")] = None,
    disagreements: Annotated[Optional[Path], typer.Option("--disagreements", help="Write disagreement rows (TSV) here.")] = None,
    n_process: ProcessesOption = 1,
    workspace: WorkspaceOption = None,
    pseudonymize_ids: Annotated[bool, typer.Option(
        "--pseudonymize-ids",
        help="The --labels file was written by `label-reports --pseudonymize-ids`: join it on the pseudonyms "
             "(R-...) of the reports' ids (and the NegBio table's) under the secret.key of the same workspace "
             "(--workspace).  Disagreement rows then name reports by pseudonym.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Score report labels against Open-i's manual MeSH coding and the NegBio table (P/R/F1, micro-F1)."""
    from radloop.labeling.evaluate import read_negbio_table, score_reports, write_disagreements

    for path, name in ((reports, "--reports"), (negbio, "--negbio"), (labels, "--labels")):
        if path is not None and not path.exists():
            fail(f"{name} not found: {path}")
    if pseudonymize_ids and labels is None:
        fail("--pseudonymize-ids joins a --labels file written by `label-reports --pseudonymize-ids`; without "
             "--labels eval-reports labels the reports itself and needs no pseudonyms")
    if disagreements is not None:
        check_output_file(disagreements, "--disagreements")
    key = _eval_pseudonym_key(workspace) if pseudonymize_ids else None
    sources = list(_open_sources(str(reports)))
    if not sources:
        fail(f"no Open-i reports in {reports}")

    def scored_id(report_id: str) -> str:
        from radloop.core.deid import report_pseudonym

        return report_id if key is None else report_pseudonym(key, report_id)

    majors = {scored_id(report.report_id): report.expert_codes for report in sources}
    if negbio is None and not any(majors.values()):
        fail(f"no expert coding in {reports}: eval-reports scores against Open-i XML's MeSH <major> terms "
             "(or a NegBio table with --negbio); these reports carry none")
    texts = {scored_id(report.report_id): report.text or "" for report in sources}
    unlabelled = 0
    if labels is not None:
        from radloop.labeling.label_files import read_label_file

        try:
            predicted = read_label_file(labels, report_ids=majors)  # streamed: only the reports scored are kept
            unlabelled = len([report_id for report_id in majors if report_id not in predicted])
            if unlabelled == len(majors):
                fail(_no_common_ids(labels, reports, len(majors), pseudonymize_ids, workspace))
        except ValueError as error:
            fail(str(error))
        rules = f"from labels file {labels}"
        if unlabelled:
            console.print(f"warning: --labels {labels} covers {len(majors) - unlabelled} of {len(majors)} reports; "
                          f"the other {unlabelled} are left out of the scores", markup=False, highlight=False)
            majors = {report_id: terms for report_id, terms in majors.items() if report_id in predicted}
    else:
        from radloop.labeling import ReportLabeler

        labeler = ReportLabeler()
        rules = labeler.rules_version
        progress = _progress(len(sources))
        predicted = {}
        for report, result in zip(sources, labeler.label_many((r.text for r in sources), n_process=n_process)):
            predicted[report.report_id] = [mention.to_json() for mention in result]
            progress.update(1)
        progress.close()
    try:
        table = read_negbio_table(negbio) if negbio is not None else None
    except (KeyError, ValueError) as error:
        fail(f"--negbio {negbio}: not a NegBio Open-i table ({error})")
    if table is not None and key is not None:
        table = {scored_id(report_id): positives for report_id, positives in table.items()}
    scores = score_reports(predicted, majors, table, texts)
    rows = scores.pop("disagreements")
    if disagreements is not None:
        disagreements.parent.mkdir(parents=True, exist_ok=True)
        write_disagreements(rows, disagreements)
    scores.update(rules_version=rules, reports_without_labels_excluded=unlabelled,
                  disagreements=len(rows),
                  disagreements_file=str(disagreements) if disagreements else None)
    if key is not None:
        scores["report_ids"] = "pseudonymized"
    if json_output:
        emit(scores, True)
        return
    _print_scores(scores)


def _print_scores(scores: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"eval-reports: {scores['reports']} reports")
    for column in ("finding", "precision", "recall", "F1", "TP", "FP", "FN"):
        table.add_column(column, justify="left" if column == "finding" else "right")
    for finding, values in scores["per_finding"].items():
        table.add_row(finding, f"{values['precision']:.3f}", f"{values['recall']:.3f}", f"{values['f1']:.3f}",
                      str(values["tp"]), str(values["fp"]), str(values["fn"]))
    output = Console()
    output.print(table)
    for key in ("micro_f1", "micro_f1_negbio_literal", "fracture_site_agreement", "fracture_old_agreement",
                "mesh_uncoded_excluded", "reports_without_labels_excluded", "disagreements", "disagreements_file", "rules_version"):
        output.print(f"[bold]{key}[/bold] {escape(str(scores.get(key)))}")  # a file name is not markup
    if "report_ids" in scores:
        output.print(f"[bold]report_ids[/bold] {scores['report_ids']}")


def bench_label_reports_command(
    source: InputArgument,
    n_process: Annotated[int, typer.Option("--n-process", "-j", min=1, help="Worker processes.")] = 2,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Stream the input this many times (memory must stay flat).")] = 1,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N reports of the input.")] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Measure labelling throughput (reports/s) and peak memory with the full rule set."""
    import itertools
    import os
    import resource

    import psutil

    from radloop.labeling import ReportLabeler

    if source == "catalog":
        from radloop.core.catalog import Catalog
        from radloop.core.workspace import resolve_workspace
        from radloop.labeling.store import iter_catalog_reports

        catalog = Catalog.open(resolve_workspace(workspace).ensure())
        try:
            texts = [text for _, text in itertools.islice(iter_catalog_reports(catalog), limit)]
        finally:
            catalog.dispose()
    else:
        texts = [report.text for report in itertools.islice(_open_sources(source), limit)]
    if not texts:
        fail(f"no reports in {source}")
    process = psutil.Process(os.getpid())
    started = time.perf_counter()
    labeler = ReportLabeler()
    build_seconds = time.perf_counter() - started
    rss_start = process.memory_info().rss
    stream = itertools.chain.from_iterable(itertools.repeat(texts, repeat))
    cpu_start = time.process_time()
    started = time.perf_counter()
    count = mentions = errors = 0
    for result in labeler.label_many(stream, n_process=n_process):
        count += 1
        mentions += len(result)
        errors += result.error is not None
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (time.process_time() - cpu_start) + (children.ru_utime + children.ru_stime if n_process > 1 else 0.0)
    emit({
        "input": source, "reports": count, "n_process": n_process, "seconds": round(seconds, 3),
        "reports_per_s": round(count / seconds, 1), "reports_per_cpu_s": round(count / max(cpu_seconds, 1e-9), 1),
        "peak_rss_mb": round(max(own.ru_maxrss, children.ru_maxrss) / 1024, 1),
        "rss_before_mb": round(rss_start / 2**20, 1), "rss_after_mb": round(process.memory_info().rss / 2**20, 1),
        "build_seconds": round(build_seconds, 2), "mentions": mentions, "errors": errors,
        "rules_version": labeler.rules_version, "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }, json_output, title="bench label-reports")
