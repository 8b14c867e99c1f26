"""What the app tells users to run next: one place for every CLI command it names.

Keeping the commands in :data:`COMMANDS` lets a test check that each one exists in the ``radloop`` CLI,
so the guidance cannot drift from the real command names.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "EMPTY_WORKSPACE", "NO_IMAGES", "NO_REPORTS", "NO_WEAK_LABELS", "NO_ENCODER",
           "NO_ENCODER_FOR_ROUNDS", "NO_EMBEDDINGS", "NO_INDEX_HITS", "NO_FILTERED_HITS", "NO_MATCHING_REPORTS",
           "NO_RETRIEVAL", "NO_LABELER", "NO_ROUND", "NO_ROUND_SCRIPTS", "NO_METRIC", "NO_METRIC_FINISHED", "NO_MODELS",
           "SWITCH_MODELS",
           "ROUND_RESUMABLE", "FINISH_SIMULATED", "PAGE_FAILED", "BROKEN_CATALOG", "DATABASE_UNREACHABLE",
           "MISSING_SEARCH_FILE", "command", "no_embeddings", "no_current_encoder", "open_round"]

#: Purpose -> the command line (``radloop`` sub-command path first, then its arguments).
COMMANDS = {
    "demo": "radloop demo",
    "ingest": "radloop ingest PATH...",
    "ingest_reports": "radloop ingest --reports FILE",
    "labels": "radloop label-reports catalog --out labels.jsonl",
    "pretrain": "radloop pretrain --config configs/ssl/simclr_cpu.yaml",
    "embed": "radloop embed --encoder VERSION",
    "index": "radloop index build",
    "train": "radloop train --config configs/finetune/NAME.yaml",
    "round_start": "radloop round start --strategy NAME --budget N",
    "round_finish": "radloop round finish",
    "round_status": "radloop round status",
    "models_current": "radloop models set-current VERSION",
    "models_rollback": "radloop models rollback TASK",
}


def command(purpose: str) -> str:
    """The command for ``purpose`` as inline code."""
    return f"`{COMMANDS[purpose]}`"


EMPTY_WORKSPACE = (f"Run {command('demo')} for the whole loop on the bundled real data, or import your archive "
                   f"with {command('ingest')} (then {command('labels')} for weak labels from the reports).")
NO_IMAGES = f"No images yet: {command('ingest')} imports radiographs (DICOM, PNG, JPEG, COCO/YOLO sets)."
NO_REPORTS = (f"No reports yet: {command('ingest_reports')} imports them (Open-i XML tarball or folder, or a "
              f"CSV with report_id,text[,study_id,image,report_date]); then {command('labels')}.")
NO_WEAK_LABELS = f"The reports have no weak labels yet: run {command('labels')}."
NO_ENCODER = (f"No encoder is registered in this workspace. Pretrain one with {command('pretrain')} (or run "
              f"{command('demo')}), then embed the images with {command('embed')} and build the index with "
              f"{command('index')}.")
NO_ENCODER_FOR_ROUNDS = (f"A round embeds and scores images with the current encoder, and there is none yet: "
                         f"pretrain one with {command('pretrain')} (or run {command('demo')}).")
NO_EMBEDDINGS = (f"The images have no embeddings or no search index for the current encoder yet: run "
                 f"{command('embed')} and then {command('index')}.")


def no_embeddings(encoder_version: str) -> str:
    """:data:`NO_EMBEDDINGS` with the encoder's registry version filled in."""
    return NO_EMBEDDINGS.replace("VERSION", encoder_version)


def no_current_encoder(versions: list[str]) -> str:
    """No encoder is current although ``versions`` (newest first) are registered: say how to pick one."""
    listed = ", ".join(f"`{version}`" for version in versions)
    return (f"No encoder is marked current (registered: {listed}): make one current with "
            f"{command('models_current').replace('VERSION', versions[0])}.")


def open_round(number: int, state: str) -> str:
    """The latest round is not finished: what it waits on and the step that moves it on, by its state."""
    if state in ("created", "selected"):  # selection interrupted, or the batch not handed out yet
        return (f"Round {number} is open (*{state}*) and its batch is not handed out yet: resume it on the *Round "
                f"control* page (or rerun {command('round_start')} with its settings).")
    if state == "exported":  # `round start --no-push`: the batch is in an import file under rounds/
        return (f"Round {number}'s batch was written to a Label Studio import file (*exported*), not sent to a "
                f"server: import it into Label Studio (`radloop round status` names the file), or finish it with "
                f"{command('round_finish')} `--simulate` to answer from the dataset's ground truth.")
    if state in ("answered", "trained"):  # answers are in; training or evaluation was interrupted
        return (f"Round {number} has its answers (*{state}*): finish it on the *Round control* page or with "
                f"{command('round_finish')} to train and evaluate the model.")
    return (f"Round {number} is open (*{state}*): the *Selection queue* page shows the images it waits on; once "
            f"they are labelled, finish it on the *Round control* page or with {command('round_finish')} "
            "(`--simulate` answers from the dataset's ground truth when there are no experts).")


MISSING_SEARCH_FILE = ("A file the case search needs is missing from the workspace (was `embeddings/` or `indexes/` "
                       f"moved or deleted?). {command('index')} rebuilds a lost index from the embeddings; "
                       f"{command('embed')} embeds the images of lost embedding files again.")
NO_INDEX_HITS = f"The index returned no neighbours: rebuild it with {command('index')}."
NO_FILTERED_HITS = ("No case matches these filters among the nearest neighbours: widen them (another region or "
                    "finding, or no finding filter).")
NO_MATCHING_REPORTS = ("No report matches these filters: clear *Text contains*, or set *Finding* and *Status* back to "
                       "*any*.")
NO_RETRIEVAL = ("Case search is not available in this build (`radloop.retrieval.search_cases` is missing): "
                "install radloop with the `retrieval` extra (`pip install -e '.[all]'`).")
NO_LABELER = ("The report labeller is not available in this build (`radloop.labeling.ReportLabeler`): install "
              "the `labeling` extra. Showing the weak labels stored in the catalog instead.")
NO_ROUND = (f"No round yet: start one on the *Round control* page or with {command('round_start')} "
            "(`--simulate` answers from the dataset's ground truth when there are no experts).")
NO_ROUND_SCRIPTS = (f"Round control needs the round scripts (`radloop.app.rounds`), which this build does not "
                    f"have. Use the CLI: {command('round_start')} and {command('round_finish')}.")
NO_METRIC = f"No round has recorded a metric yet ({command('round_finish')} trains and evaluates the model)."
NO_METRIC_FINISHED = ("The finished rounds recorded no metric: a model needs labels of both classes, and its score "
                      "(AUROC) held-out images of both classes; the rounds' notes say which was missing "
                      f"({command('round_status')}).")
NO_MODELS = (f"No model registered yet: {command('pretrain')} registers an encoder, {command('train')} a "
             f"findings model (or run {command('demo')}).")
SWITCH_MODELS = f"Switch models with {command('models_current')} or {command('models_rollback')}."
ROUND_RESUMABLE = (f"Fix the cause above and press the button again: every round step is resumable. "
                   f"{command('round_status')} shows where the round stands.")
FINISH_SIMULATED = ("If the experts' answers are what is missing (no Label Studio, or the batch only written to the "
                    "import file), tick *Simulate the answers* in *Finish the round* and press *Finish round* again: "
                    "the dataset's ground truth answers the open tasks.")
BROKEN_CATALOG = (f"If the catalog was written by a newer radloop, upgrade radloop; if the file is damaged, "
                  f"rebuild the workspace ({command('demo')}, or {command('ingest')} into a new folder) or point "
                  "the app at another one with `RADLOOP_WORKSPACE=/path/to/workspace`.")
DATABASE_UNREACHABLE = ("Check that the database server is running and reachable from this machine, and that "
                        "`RADLOOP_DATABASE_URL` (read when the app starts) names it; reload the page once it "
                        "answers. Nothing is lost: the catalog lives on the server.")
PAGE_FAILED = (f"Check that the workspace was built by this radloop version ({command('demo')} builds a fresh "
               "one); the server log has the details.")
