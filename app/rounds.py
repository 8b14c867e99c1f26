"""Active-learning rounds: the loop's orchestration, shared by the CLI, the app and the demo.

A round moves through states, each step idempotent and recorded in the catalog, so that a crash at any
point is resumed by running the same command again::

    created -> selected -> pushed -> answered -> trained -> finished

``start_round`` embeds new images with the current encoder, refreshes the case-search index, pulls late
answers of earlier rounds, scores the unlabelled pool with the current model (:mod:`.round_pool`), selects a
batch with a strategy and hands it to annotators (Label Studio when configured, else an import file under
``rounds/``).  ``finish_round`` collects the answers (Label Studio, or the dataset's ground truth with
``simulate``), trains a calibrated linear probe on every label bought so far (never on an image of the
evaluation split, whose labels stay the held-out truth), evaluates it on the held-out split and records what
the round bought (``metric_before`` is the previous finished round's metric for the same task, see
:func:`_previous_metric`): the round's answered selections, counted in the catalog (an
earlier ``radloop round pull`` included).  Tasks still unanswered at that point are reported; a later
``radloop round pull --round N`` (or the next ``start_round``) collects them, and until then their images
stay out of new rounds' pools.  Label Studio being unreachable while pushing or finishing is a
:class:`RoundError` too: nothing is lost, rerunning the same command resumes.  The round's row is updated
under its lock (:func:`.round_record.update_round`), as pulls do.

The unit of labelling is an image-level finding (``task``, e.g. ``fracture``).  In simulation the dataset's
own expert annotations play the annotator: a label counts as *bought* only once a round revealed it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import func, select

from radloop.app.round_labels import (
    labelled_image_ids, late_answers_hint, open_task_notes, round_progress, simulate_answers, train_round_probe,
    without_pending,
)
from radloop.app.round_pool import (
    pool_images, pool_probabilities, pool_weak_labels, pull_late_answers, without_truth, without_unclear,
)
from radloop.app.round_record import (
    STATES, Progress, RoundConfig, RoundError, RoundReport, label_studio_server, load_round_config,
    open_round, report_of, round_id_for_number, round_server, update_round,
)
from radloop.core.catalog import ROUND_LOCK_KEY, Catalog, lock_for_write
from radloop.core.config import ConfigError, save_resolved_config
from radloop.core.schema import Round, Selection
from radloop.core.vocabulary import FINDINGS

logger = logging.getLogger(__name__)

__all__ = ["RoundConfig", "RoundError", "RoundReport", "STATES", "start_round", "finish_round", "round_status",
           "load_round_config", "labelled_image_ids", "label_studio_server", "round_id_for_number"]

# names from before the split that the demo and tests use
_pool, _open_round = pool_images, open_round


def _noop(_message: str, _fraction: float) -> None:
    return None


def _current_encoder(catalog: Catalog, config: RoundConfig):
    from radloop.core.registry import current_model, get_model
    from radloop.ssl.encoder_adapter import encoder_from_registry

    record = get_model(catalog, config.encoder) if config.encoder else current_model(catalog, "encoder")
    if record is None:
        raise RoundError("no encoder in the registry: run `radloop pretrain --config configs/ssl/simclr_cpu.yaml` "
                         "(or `radloop demo`) first, register an encoder folder with `radloop embed --encoder "
                         "FOLDER`, or pass --set encoder=<version>")
    return record.version, encoder_from_registry(catalog, record.version)


def _ensure_embeddings(catalog: Catalog, encoder_version: str, encoder: Any, progress: Progress) -> int:
    """Embed catalog images that have no embedding by ``encoder_version``; returns how many were added."""
    from radloop.ssl.embed import embed_catalog

    progress("embedding new images", 0.05)
    return int(embed_catalog(catalog, encoder, progress=False)["embedded"])


def _refresh_index(catalog: Catalog, encoder_version: str, progress: Progress) -> str | None:
    """Rebuild the case-search index of the encoder unless the saved one holds its embeddings already (a
    round without new images: rebuilding would give the same index, at minutes per million images); a failure
    is noted, not fatal."""
    progress("updating the case-search index", 0.2)
    try:
        from radloop.retrieval.index import IndexManager, index_folder

        if IndexManager.saved_is_current(catalog, encoder_version):
            return str(index_folder(catalog.workspace, encoder_version))
        manager = IndexManager.from_catalog(catalog, encoder_version)
        return str(manager.save(index_folder(catalog.workspace, encoder_version)))
    except Exception as error:  # the index serves case search; selection works from arrays
        logger.warning("index not updated: %s", error)
        return None


def start_round(catalog: Catalog, *, config: RoundConfig | None = None, progress: Progress | None = None,
                **overrides: Any) -> RoundReport:
    """Start a round (or resume the open one): embed, index, score, select, hand to annotators.

    Args:
        catalog: the workspace catalog.
        config: round settings; keyword ``overrides`` (e.g. ``strategy="margin", budget=50``) apply on top.
        progress: callback ``(message, fraction)`` for long steps.

    Earlier rounds with unanswered Label Studio tasks are pulled first, so that answers given since the last
    pull count (Label Studio unreachable: noted, and the round goes on with what the catalog has).  Images
    whose task in an earlier round is still unanswered, and unless ``reselect_unclear`` those an expert
    answered "cannot tell" for the task or skipped, are left out of the pool (the round's notes say how many).

    Raises:
        ConfigError: settings that do not validate (e.g. ``pool_split`` equal to ``eval_split``).
        RoundError: an unknown task, no encoder, an empty pool, a round open with other settings than the
            ones given (it is resumed when none differ, and the report's first note says so), or Label Studio
            unreachable while pushing (the selection is kept: rerunning pushes it).
    """
    from radloop.core.embeddings import load_embeddings
    from radloop.retrieval import get_strategy

    progress = progress or _noop
    given = {k: v for k, v in overrides.items() if v is not None}
    config = (config or RoundConfig()).model_copy(update=given)
    config = _validated(config)  # the overrides too
    if config.task not in FINDINGS:
        raise RoundError(f"unknown task {config.task!r}: a round labels one finding of the vocabulary; "
                         f"valid: {', '.join(FINDINGS)}")
    get_strategy(config.strategy, **config.strategy_params)  # unknown names / parameters fail here
    if config.budget < 1:
        raise RoundError(f"budget must be at least 1, got {config.budget}")

    row = open_round(catalog)
    if row is not None and row.state in ("selected", "pushed", "answered", "trained"):
        resumed = _resume_config(row, config, set(given))
        logger.info("round %s is open in state %s; resuming it", row.number, row.state)
        report = (_hand_out(catalog, row.id, resumed, progress) if row.state == "selected"
                  else report_of(row, catalog))
        report.notes.insert(0, f"resumed round {report.number} (open in state {row.state}), started with "
                               f"{_describe(_saved_settings(row))}: no new round was started; `radloop round "
                               "finish` closes it")
        return report
    encoder_version, encoder = _current_encoder(catalog, config)
    _ensure_embeddings(catalog, encoder_version, encoder, progress)
    _refresh_index(catalog, encoder_version, progress)

    notes = pull_late_answers(catalog, config, progress)
    pool_ids, regions = pool_images(catalog, config)
    if not pool_ids:
        raise RoundError(f"no images in the '{config.pool_split}' split to select from: run `radloop ingest` first")
    pool_ids, regions, truth_note = without_truth(catalog, config, pool_ids, regions)
    labelled = labelled_image_ids(catalog, config.task, simulate=config.simulate)
    pool_ids, regions, waiting_note = without_pending(catalog, pool_ids, regions)
    pool_ids, regions, unclear_note = without_unclear(catalog, config, pool_ids, regions, labelled)
    notes += [note for note in (truth_note, waiting_note, unclear_note) if note]
    if not pool_ids:
        raise RoundError(f"nothing to select: {'; '.join(notes) or 'every pool image waits in an earlier round'}; "
                         "collect the answers with `radloop round pull --round N` or ingest more images")
    progress("scoring the pool", 0.4)
    embedded = load_embeddings(catalog, encoder_version, pool_ids)
    order = {image_id: i for i, image_id in enumerate(embedded.image_ids)}
    keep = [i for i, image_id in enumerate(pool_ids) if image_id in order]
    not_embedded = len(pool_ids) - len(keep)
    pool_ids = [pool_ids[i] for i in keep]
    regions = [regions[i] for i in keep]
    vectors = embedded.vectors[[order[image_id] for image_id in pool_ids]]
    labelled_mask = np.array([image_id in labelled for image_id in pool_ids], dtype=bool)
    if labelled_mask.all():
        raise RoundError("every image of the pool is labelled already" + "".join(
            f"; {note}" for note in (truth_note, waiting_note, unclear_note) if note) + ": ingest more images")

    probabilities = pool_probabilities(catalog, encoder_version, vectors, config.task)
    weak_labels = pool_weak_labels(catalog, pool_ids, config.task)
    strategy_name = config.strategy
    if not_embedded:
        notes.append(f"{not_embedded} pool images are not embedded with {encoder_version} and were not "
                     f"considered: `radloop embed --encoder {encoder_version}` adds them")
    strategy = get_strategy(strategy_name, **config.strategy_params)
    missing = [name for name, value in (("probabilities", probabilities), ("weak_labels", weak_labels))
               if name in strategy.needs + strategy.uses and value is None]
    if missing:
        verb = "needs" if any(name in strategy.needs for name in missing) else "works from"
        # "cold start" only while the task has no model (no probabilities); a later round falls back
        fallback = (f"cold start with '{config.cold_start_strategy}'" if probabilities is None
                    else f"falls back to '{config.cold_start_strategy}'")
        notes.append(f"'{strategy_name}' {verb} {' and '.join(missing)}, which do not exist yet for "
                     f"'{config.task}' on encoder {encoder_version}: {fallback}")
        strategy_name = config.cold_start_strategy
        strategy = get_strategy(strategy_name)
    unlabelled = int((~labelled_mask).sum())
    if config.budget > unlabelled:
        notes.append(f"budget {config.budget} is more than the {unlabelled} unlabelled images of the pool: "
                     f"all {unlabelled} selected")
    progress(f"selecting {min(config.budget, unlabelled)} images with {strategy_name}", 0.6)
    picked = strategy.select(
        min(config.budget, unlabelled), embeddings=vectors, labeled_mask=labelled_mask,
        probabilities=probabilities, weak_labels=weak_labels,
        groups=np.array([region or "unknown" for region in regions], dtype=object),
        random_state=config.random_state)
    scores = getattr(strategy, "scores_", None)
    reasons = getattr(strategy, "reasons_", None)

    with catalog.session() as session:
        lock_for_write(session, ROUND_LOCK_KEY)  # two starts at once: one round, numbers never shared
        other = session.scalars(select(Round).where(Round.state != "finished").order_by(Round.id.desc())).first()
        if other is not None:
            raise RoundError(f"round {other.number} was started while this one was selecting; it is open now: "
                             "run `radloop round start` again to resume it (nothing of this selection was kept)")
        number = int(session.scalar(select(func.max(Round.number))) or 0) + 1
        new = Round(number=number, state="created", strategy=strategy_name, budget=config.budget,
                    task=config.task, model_version=encoder_version, config=json.loads(config.model_dump_json()),
                    meta={"notes": notes, "simulate": config.simulate})
        session.add(new)
        session.flush()
        for rank, index in enumerate(np.asarray(picked).tolist()):
            score = None if scores is None else float(np.asarray(scores)[rank])
            reason = "" if reasons is None else str(list(reasons)[rank])
            session.add(Selection(round_id=new.id, image_id=pool_ids[index], rank=rank + 1, score=score,
                                  strategy=strategy_name, reason=reason))
        new.state = "selected"
        new.meta = {**new.meta, "selected": len(picked), "pool": len(pool_ids),
                    "labelled_before": int(labelled_mask.sum())}
        round_id = new.id
    folder = catalog.workspace.rounds_dir / f"round-{number:03d}"
    save_resolved_config(config, folder / "config.yaml")
    return _hand_out(catalog, round_id, config, progress)


def _validated(config: RoundConfig) -> RoundConfig:
    """``config`` validated again (keyword overrides are set without validation).

    Raises:
        ConfigError: naming each setting that does not validate.
    """
    try:
        return RoundConfig.model_validate(config.model_dump())
    except ValidationError as error:
        problems = [_problem(item) for item in error.errors()]
        raise ConfigError(f"invalid round settings: {'; '.join(problems)}") from None


def _problem(item: dict[str, Any]) -> str:
    """One pydantic error as ``setting: message`` (a check across settings has no single one to name)."""
    where = ".".join(str(part) for part in item["loc"])
    message = item["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


#: the settings that make a round what it is: a start while a round is open may not change them
ROUND_DEFINING = ("task", "strategy", "strategy_params", "budget", "cold_start_strategy", "encoder", "dataset",
                  "pool_split", "eval_split", "simulate", "random_state", "probe_C", "reselect_unclear")


def _saved_settings(row: Round) -> dict[str, Any]:
    """The open round's settings as it was started (rows without a saved config: the row's own columns)."""
    saved = {name: value for name, value in (row.config or {}).items() if name in ROUND_DEFINING}
    saved.setdefault("task", row.task)
    saved.setdefault("budget", row.budget)
    saved.setdefault("simulate", bool((row.meta or {}).get("simulate", False)))
    return saved


def _describe(settings: dict[str, Any]) -> str:
    shown = [f"{name} {settings[name]!r}" for name in ("task", "strategy", "budget", "simulate") if name in settings]
    shown += [f"{name} {value!r}" for name, value in settings.items()
              if name not in ("task", "strategy", "budget", "simulate") and value != getattr(_DEFAULTS, name)]
    return ", ".join(shown)


_DEFAULTS = RoundConfig()


def _resume_config(row: Round, config: RoundConfig, overridden: set[str]) -> RoundConfig:
    """The config an open round resumes with: its own, with this call's handing-out settings (server, project,
    push).  Settings given explicitly (keyword overrides, or config values other than the defaults) that differ
    from the round's are refused: they would silently not apply.

    Raises:
        RoundError: naming the open round, its settings and what differs.
    """
    saved = _saved_settings(row)
    mine = json.loads(config.model_dump_json())
    defaults = json.loads(_DEFAULTS.model_dump_json())
    explicit = {name for name in ROUND_DEFINING if name in overridden or mine[name] != defaults[name]}
    differs = [f"{name} {mine[name]!r} (round {row.number}: {saved[name]!r})" for name in ROUND_DEFINING
               if name in explicit and name in saved and mine[name] != saved[name]]
    if differs:
        finish = "`radloop round finish --simulate`" if saved.get("simulate") else (
            "`radloop round finish` (or `radloop round finish --simulate`)")
        raise RoundError(f"round {row.number} is open (state {row.state}; {_describe(saved)}) and these options "
                         f"differ from it: {'; '.join(differs)}.  Nothing was started: finish round {row.number} "
                         f"first with {finish}, then start the new round; `radloop round start` without "
                         f"options resumes round {row.number}")
    if not row.config:
        return config
    own = _started_with(row)
    return own.model_copy(update={name: getattr(config, name)
                                  for name in ("label_studio_url", "label_studio_project", "push")})


def _hand_out(catalog: Catalog, round_id: int, config: RoundConfig, progress: Progress) -> RoundReport:
    """Push the batch to Label Studio, or write the import file when there is no server (idempotent)."""
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_tasks import export_tasks_json

    progress("handing the batch to annotators", 0.8)
    with catalog.session() as session:
        row = session.get(Round, round_id)
        number = row.number
    folder = catalog.workspace.rounds_dir / f"round-{number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    tasks_file = folder / "label_studio_tasks.json"
    export_tasks_json(catalog, round_id, tasks_file)
    meta: dict[str, Any] = {"tasks_file": catalog.workspace.relative(tasks_file)}
    url, source = (None, "simulated") if config.simulate else label_studio_server(catalog, config)
    if url:
        from radloop.labeling.ls_client import LabelStudioError

        try:
            client = ls_sync.client_from_env(url)
            pushed = dict(ls_sync.push_round(catalog, client, round_id, project=config.label_studio_project))
        except LabelStudioError as error:
            raise RoundError(f"round {number}: the batch could not be pushed to Label Studio at {url}: {error}\n"
                             f"Nothing was lost: the selection of round {number} is saved; rerun `radloop round "
                             "start` to push it (tasks already in Label Studio are not imported twice)") from error
        meta["label_studio"] = {"url": url, "source": source, "project": config.label_studio_project,
                                "pushed": pushed}
        handed = f"batch pushed to Label Studio at {url} (server from {source})"
    elif config.simulate:
        handed = None
    else:
        handed = (f"batch written to {meta['tasks_file']} ({source}); import it into Label Studio, or connect a "
                  f"server with `radloop ls init --url URL` and run `radloop round push --round {number}`")
    row = update_round(catalog, round_id, state="pushed", meta=meta, notes=lambda notes: [  # a rerun replaces
        note for note in notes if not note.startswith("batch ")] + ([handed] if handed else []))  # its note
    progress("round started", 1.0)
    return report_of(row, catalog)


def finish_round(catalog: Catalog, *, progress: Progress | None = None, simulate: bool | None = None) -> RoundReport:
    """Collect the answers of the open round, fine-tune, evaluate and record what the round bought.

    The round's answered selections in the catalog count, whether this call or an earlier ``radloop round
    pull`` brought them; ``labels_spent`` is their number (a pull records it under the round's lock).  Tasks
    still unanswered are reported in the round's notes (a later pull collects them).

    Raises:
        RoundError: no open round, no answers yet (Label Studio still labelling), or Label Studio unreachable
            (nothing is lost: rerunning resumes).
    """
    progress = progress or _noop
    row = open_round(catalog)
    if row is None:
        raise RoundError("no open round: start one with `radloop round start --budget 50`" + late_answers_hint(catalog))
    config = _started_with(row)
    if simulate is not None:
        config = config.model_copy(update={"simulate": simulate})
    elif config.simulate and row.state in ("selected", "pushed") and _in_label_studio(catalog, row.id):
        # a simulated round whose batch was pushed to Label Studio since (`radloop round push`): its answers are
        # the experts'; only an explicit --simulate answers it from the ground truth
        config = config.model_copy(update={"simulate": False})
    if row.state == "created":
        raise RoundError(f"round {row.number} has no selection yet: run `radloop round start` again to resume it")
    if row.state in ("selected", "pushed"):
        progress("collecting answers", 0.1)
        if config.simulate:
            simulate_answers(catalog, row.id, config.task)
        else:
            _pull_answers(catalog, row, config)
        tasks = round_progress(catalog, [row.id]).get(row.id, {})
        answered = tasks.get("answered", 0)
        if answered == 0 and not config.simulate and tasks.get("not_in_label_studio"):
            outside, total = tasks["not_in_label_studio"], sum(tasks.values())
            raise RoundError(f"round {row.number}: " + (f"its {outside}" if outside == total else
                                                        f"{outside} of its {total}") +
                             f" task(s) are not in Label Studio yet: push them with `radloop round push --round "
                             f"{row.number}` (or finish with --simulate)")
        if answered == 0 and not config.simulate:
            raise RoundError(f"round {row.number}: no annotations yet in Label Studio ({tasks.get('pending', 0)} "
                             "task(s) waiting); label the tasks, then rerun `radloop round finish`")
        open_tasks = [] if config.simulate else open_task_notes(row, tasks)
        # a Label Studio round's labels_spent is the pull's, stored under the lock: not this older count
        spent = {"labels_spent": answered} if config.simulate else {}
        row = update_round(catalog, row.id, state="answered", notes=lambda notes: notes + open_tasks, **spent)
    if row.state == "answered":
        result = train_round_probe(catalog, row, config, progress)
        previous, previous_note = _previous_metric(catalog, row, config, result.get("eval_images"))
        added = [note for note in (previous_note, result.get("note")) if note]
        row = update_round(catalog, row.id, state="trained", metric_name=f"auroc.{config.task}",
                           metric_before=previous, metric_after=result.get("metric"),
                           meta={"labels_total": result["labels_total"], "probe_version": result.get("model_version"),
                                 "eval_images": result.get("eval_images"),
                                 "labels_left_out": result.get("labels_left_out")},
                           notes=lambda notes: notes + added)
    if row.state == "trained":
        row = update_round(catalog, row.id, state="finished", finished_at=datetime.now(timezone.utc))
    progress("round finished", 1.0)
    return report_of(row, catalog)


def _in_label_studio(catalog: Catalog, round_id: int) -> bool:
    """Whether any of the round's tasks was pushed to a Label Studio project."""
    from radloop.labeling import ls_sync

    return ls_sync.pushed_binding(catalog, round_id) is not None


def _pull_answers(catalog: Catalog, row: Round, config: RoundConfig) -> None:
    """Pull the round's new annotations from Label Studio into the catalog."""
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_client import LabelStudioError

    binding = ls_sync.pushed_binding(catalog, row.id)  # where its tasks went, even if the workspace moved since
    url = binding.url if binding is not None else round_server(catalog, row, config)
    if not url:
        raise RoundError(f"round {row.number} went to an import file ({(row.meta or {}).get('tasks_file')}); "
                         "import it into Label Studio, then connect the workspace with `radloop ls init --url "
                         "URL` (or set LABEL_STUDIO_URL) and rerun, or finish with --simulate")
    try:
        ls_sync.pull_round(catalog, ls_sync.client_from_env(url), row.id, binding=binding,
                           project=None if binding is not None else config.label_studio_project)
    except LabelStudioError as error:
        raise RoundError(f"round {row.number}: the answers could not be pulled from Label Studio at {url}: "
                         f"{error}\nNothing was lost: round {row.number} stays open with what earlier pulls "
                         "brought; rerun `radloop round finish` to resume") from error


def _started_with(row: Round) -> RoundConfig:
    """The settings an open round was started with.

    A round started before ``pool_split == eval_split`` was refused still resumes and finishes: its probe
    never trains on the evaluation split's images (:func:`.round_labels.training_labels`), so its metric is a
    held-out one; new rounds with such settings are refused by :class:`RoundConfig`.
    """
    saved = row.config or {}
    try:
        return RoundConfig.model_validate(saved)
    except ValidationError:
        if saved.get("pool_split") is None or saved.get("pool_split") != saved.get("eval_split"):
            raise
    # every other setting validated as usual (with a stand-in eval split), then the saved split put back unchecked
    stand_in = next(split for split in ("test", "val", "train") if split != saved["pool_split"])
    config = RoundConfig.model_validate({**saved, "eval_split": stand_in})
    logger.warning("round %s was started with pool_split = eval_split = %r; it finishes without training "
                   "on that split", row.number, saved["eval_split"])
    return config.model_copy(update={"eval_split": saved["eval_split"]})


def _previous_metric(catalog: Catalog, row: Round, config: RoundConfig,
                     eval_images: int | None = None) -> tuple[float | None, str | None]:
    """``metric_before`` of a round: the ``metric_after`` of the latest finished round of the same task and
    metric, and a note when there is one but it is not comparable.

    An earlier round measured with another encoder (other features), on another evaluation split, or on
    another number of evaluation images (``eval_images``: images ingested since, another ``dataset``) scored
    on something else: ``metric_before`` is then left empty (not re-measured) and the note says what changed.
    Rounds of other tasks never count.
    """
    name = f"auroc.{config.task}"
    with catalog.session() as session:
        previous = session.scalars(select(Round).where(
            Round.number < row.number, Round.state == "finished", Round.task == config.task,
            Round.metric_name == name).order_by(Round.number.desc())).first()
        if previous is None:
            return None, None
        changed = _measured_otherwise(previous, row.model_version, config.eval_split, eval_images)
        if not changed:
            return previous.metric_after, None
        return None, (f"no metric before: round {previous.number}'s {name} was measured otherwise "
                      f"({'; '.join(changed)}), so it is not this round's starting point")


def _measured_otherwise(previous: Round, encoder: str | None, eval_split: str, eval_images: int | None) -> list[str]:
    """What differs between how ``previous`` measured its metric and how this round does (what each recorded)."""
    theirs = {"encoder": previous.model_version, "eval_split": (previous.config or {}).get("eval_split"),
              "eval_images": (previous.meta or {}).get("eval_images")}
    mine = {"encoder": encoder, "eval_split": eval_split, "eval_images": eval_images}
    return [f"{name} {theirs[name]!r} -> {mine[name]!r}" for name in theirs
            if theirs[name] is not None and mine[name] is not None and theirs[name] != mine[name]]


def round_status(catalog: Catalog) -> list[RoundReport]:
    """All rounds, oldest first, with their answered / skipped / pending task counts."""
    progress = round_progress(catalog)
    with catalog.session() as session:
        return [report_of(row, catalog, progress) for row in session.scalars(select(Round).order_by(Round.number))]
