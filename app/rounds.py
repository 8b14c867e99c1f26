"""Active-learning rounds: the loop's orchestration, shared by the CLI, the app and the demo.

A round moves through states, each step idempotent and recorded in the catalog, so that a crash at any
point is resumed by running the same command again::

    created -> selected -> pushed -> answered -> trained -> finished

``start_round`` embeds new images with the current encoder, refreshes the case-search index, pulls late
answers of earlier rounds, scores the unlabelled pool with the current model (:mod:`.round_pool`), selects a
batch with a strategy and hands it to annotators (Label Studio when configured, else an import file under
``rounds/``).  ``finish_round`` (:mod:`.round_finish`, re-exported here) collects the answers (Label Studio,
or the dataset's ground truth with ``simulate``), trains a calibrated linear probe on every label bought so
far (never on an image of the evaluation split, whose labels stay the held-out truth), evaluates it on the
held-out split and records what the round bought (``metric_before`` is the previous finished round's metric
for the same task, see :func:`.round_finish._previous_metric`): the round's answered selections, counted in
the catalog (an earlier ``radloop round pull`` included).  Tasks still unanswered at that point are reported;
a later ``radloop round pull --round N`` (or the next ``start_round``) collects them, and until then their
images stay out of new rounds' pools.  Label Studio being unreachable while pushing or finishing is a
:class:`RoundError` too: nothing is lost, rerunning the same command resumes.  The round's row is updated
under its lock (:func:`.round_record.update_round`), as pulls do.

The unit of labelling is an image-level finding (``task``, e.g. ``fracture``).  In simulation the dataset's
own expert annotations play the annotator: a label counts as *bought* only once a round revealed it.
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import func, select

from radloop.app.round_labels import (
    labelled_image_ids, round_progress, without_pending,
)
from radloop.app.round_pool import (
    pool_images, pool_probabilities, pool_weak_labels, pull_late_answers, without_truth, without_unclear,
)
from radloop.app.round_finish import finish_round
from radloop.app.round_record import (
    STATES, TOKEN_VARIABLES_HINT, Progress, RoundConfig, RoundError, RoundReport, label_studio_server,
    load_round_config, no_progress, open_round, report_of, round_id_for_number, shown_state, started_with,
    update_round,
)
from radloop.core.catalog import ROUND_LOCK_KEY, Catalog, lock_for_write
from radloop.core.config import ConfigError, did_you_mean, save_resolved_config
from radloop.core.schema import Round, Selection
from radloop.core.vocabulary import BODY_REGIONS, FINDINGS

logger = logging.getLogger(__name__)

__all__ = ["RoundConfig", "RoundError", "RoundReport", "STATES", "start_round", "finish_round", "round_status",
           "load_round_config", "labelled_image_ids", "label_studio_server", "round_id_for_number"]

# names from before the split that the demo and tests use
_pool, _open_round, _noop = pool_images, open_round, no_progress


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
    round without new images: rebuilding would give the same index, at minutes per million images), with the
    settings the saved one was built with (`radloop index build --set metric=l2` or a factory stay so; was: the
    defaults, so every round turned such an index into a cosine one); a failure is noted, not fatal."""
    progress("updating the case-search index", 0.2)
    try:
        from radloop.retrieval.index import IndexManager, index_folder
        from radloop.retrieval.index_store import saved_config

        folder = index_folder(catalog.workspace, encoder_version)
        config = saved_config(folder)
        if IndexManager.saved_is_current(catalog, encoder_version, config):
            return str(folder)
        manager = IndexManager.from_catalog(catalog, encoder_version, config)
        return str(manager.save(folder))
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

    Earlier Label Studio rounds that changed there since they were last read are pulled first
    (:func:`radloop.app.round_pool.pull_late_answers`), so that answers given or corrected since the last pull
    count (Label Studio unreachable: noted, and the round goes on with what the catalog has).  Images
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

    progress = progress or no_progress
    given = {k: v for k, v in overrides.items() if v is not None}
    config = (config or RoundConfig()).model_copy(update=given)
    config = _validated(config)  # the overrides too
    if config.task not in FINDINGS:
        raise RoundError(f"unknown task {config.task!r}: a round labels one finding of the vocabulary; "
                         f"valid: {', '.join(FINDINGS)}")
    get_strategy(config.strategy, **config.strategy_params)  # unknown names / parameters fail here
    _check_quota_regions(config.strategy_params.get("quotas") if config.strategy == "stratified" else None)
    if config.budget < 1:
        raise RoundError(f"budget must be at least 1, got {config.budget}")

    row = open_round(catalog)
    if row is not None and row.state in ("selected", "pushed", "answered", "trained"):
        resumed = _resume_config(row, config, set(given))
        logger.info("round %s is open in state %s; resuming it", row.number, row.state)
        report = (_hand_out(catalog, row.id, resumed, progress) if row.state == "selected"
                  else report_of(row, catalog))
        report.notes.insert(0, f"resumed round {report.number} (open in state {shown_state(report)}), started "
                               f"with {_describe(_saved_settings(row))}: no new round was started; `radloop round "
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
    with warnings.catch_warnings(record=True) as caught:  # the strategy's notes go to the round's notes, once
        warnings.simplefilter("always")
        picked = strategy.select(
            min(config.budget, unlabelled), embeddings=vectors, labeled_mask=labelled_mask,
            probabilities=probabilities, weak_labels=weak_labels,
            groups=np.array([region or UNKNOWN_REGION for region in regions], dtype=object),
            random_state=config.random_state)
    strategy_notes = list(getattr(strategy, "notes_", []))
    notes.extend(f"{strategy_name}: {note}" for note in strategy_notes)
    for warning in caught:  # anything else warned while selecting is shown as usual
        if str(warning.message) not in strategy_notes:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
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
#: the stratum of images without a body region (a ``stratified`` quota may name it)
UNKNOWN_REGION = "unknown"


def _check_quota_regions(quotas: Any) -> None:
    """A ``stratified`` round's strata are body regions: a quota naming none of the vocabulary's (a typo: 'wirst')
    fails before the pool is embedded and indexed, not after."""
    if not isinstance(quotas, dict):
        return
    valid = (*BODY_REGIONS, UNKNOWN_REGION)
    for key in quotas:
        if str(key) not in valid:
            raise RoundError(f"strategy 'stratified': quota stratum {key!r} is not a body region"
                             f"{did_you_mean(key, valid)}; valid: {', '.join(valid)}")


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
    own = started_with(row)
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
        from radloop.labeling.ls_client import AuthenticationError, LabelStudioError

        try:
            client = ls_sync.client_from_env(url)
            pushed = dict(ls_sync.push_round(catalog, client, round_id, project=config.label_studio_project))
        except LabelStudioError as error:
            # `round start` has no --token option: a refused (or missing) token is fixed in the environment
            fix = f"{TOKEN_VARIABLES_HINT}, then " if isinstance(error, AuthenticationError) else ""
            raise RoundError(f"round {number}: the batch could not be pushed to Label Studio at {url}: {error}\n"
                             f"Nothing was lost: the selection of round {number} is saved; {fix}rerun `radloop "
                             "round start` to push it (tasks already in Label Studio are not imported twice)"
                             ) from error
        meta["label_studio"] = {"url": url, "source": source, "project": config.label_studio_project,
                                "pushed": pushed}
        handed = f"batch pushed to Label Studio at {url} (server from {source})"
    elif config.simulate:
        handed = None
    else:
        handed = (f"batch written to {meta['tasks_file']} ({source}); import it into Label Studio, or connect a "
                  f"server with `radloop ls init --url URL` and run `radloop round push --round {number}`")
    row = update_round(catalog, round_id, state="pushed", meta=meta,  # a rerun replaces its note
                       notes=lambda notes: ls_sync.with_batch_note(notes, handed))
    progress("round started", 1.0)
    return report_of(row, catalog)


def round_status(catalog: Catalog) -> list[RoundReport]:
    """All rounds, oldest first, with their answered / skipped / pending task counts."""
    progress = round_progress(catalog)
    with catalog.session() as session:
        return [report_of(row, catalog, progress) for row in session.scalars(select(Round).order_by(Round.number))]
