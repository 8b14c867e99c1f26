"""`radloop demo`: the whole loop on the real data in ``../shared/data`` with embedded defaults.

ingest -> report weak labels (scored against the experts' MeSH coding) -> a short self-supervised
pretraining (or the latest / a given encoder) -> embeddings -> case-search index -> simulated
active-learning rounds (cold start, then uncertainty/diversity) with a probe fine-tuned each round ->
a random-selection baseline on the same label counts -> the next batch for Label Studio (import file,
or pushed when a server is configured) -> report + learning-curve plot.

Every step is a call of the same functions the CLI uses; the demo adds no logic of its own beyond
choosing small, fast defaults.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radloop.core.catalog import Catalog
from radloop.core.workspace import Workspace

logger = logging.getLogger(__name__)

__all__ = ["DemoOptions", "DemoResult", "run_demo"]

FRACTURE_COCO = "bone_fracture_xray_roboflow_v4/coco/train_annotations.coco.json"
FRACTURE_IMAGES = "bone_fracture_xray_roboflow_v4/yolo/train/images"
DICOMS = "dicom_radiographs"
OPENI_REPORTS = "iu_xray_reports/NLMCXR_reports_dev.tgz"
NEGBIO_GOLD = "negbio_openi_gold/examples/openi_gld_std14.csv"
EXTRA_IMAGES = ("iu_xray_images", "nih_cxr14_labels_samples/images")


@dataclass
class DemoOptions:
    """Knobs of the demo (the CLI exposes them; defaults run in a few minutes on 2 cores)."""

    data: Path
    limit: int | None = None  # fracture images to ingest (None: all 3,631 of the dev set)
    encoder: Path | None = None  # a trained encoder folder to use instead of pretraining
    pretrain_config: Path | None = None
    pretrain_minutes: float = 2.5
    rounds: int = 3
    budget: int = 40
    strategy: str = "kcenter"
    cold_start_strategy: str = "typiclust"
    random_seeds: int = 3
    label_studio_url: str | None = None
    workers: int | None = None
    seed: int = 0


@dataclass
class DemoResult:
    """What the demo did: one entry per step, per round, and the files it wrote."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    random_baseline: list[dict[str, Any]] = field(default_factory=list)
    next_batch: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "rounds": self.rounds, "random_baseline": self.random_baseline,
                "next_batch": self.next_batch, "files": self.files}


Say = Callable[[str], None]


class _Steps:
    """Times each step and records its summary."""

    def __init__(self, result: DemoResult, say: Say) -> None:
        self.result, self.say = result, say

    def run(self, name: str, function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.say(f"[{len(self.result.steps) + 1}] {name} ...")
        started = time.perf_counter()
        summary = function() or {}
        summary = {"step": name, "seconds": round(time.perf_counter() - started, 1), **summary}
        self.result.steps.append(summary)
        shown = {k: v for k, v in summary.items() if k not in ("step",) and not isinstance(v, (dict, list))}
        self.say("    " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        return summary


def check_data(data: Path) -> None:
    """Fail with the missing path before anything is touched when ``data`` lacks what the demo reads."""
    for relative in (FRACTURE_COCO, FRACTURE_IMAGES, OPENI_REPORTS):
        _require(data, relative)


def _require(data: Path, relative: str) -> Path:
    path = data / relative
    if not path.exists():
        raise FileNotFoundError(f"demo data missing: {path} (pass --data pointing at the shared data folder)")
    return path


def _ingest(catalog: Catalog, options: DemoOptions) -> dict[str, Any]:
    from radloop.core.ingest import ingest_paths

    data = options.data
    fracture = ingest_paths(catalog, [_require(data, FRACTURE_COCO)], images_dir=_require(data, FRACTURE_IMAGES),
                            dataset="fracture", workers=options.workers, limit=options.limit)
    others = [data / name for name in (DICOMS, *EXTRA_IMAGES) if (data / name).exists()]
    radiographs = ingest_paths(catalog, others, workers=options.workers, dataset="radiographs") if others else None
    reports = ingest_paths(catalog, [], reports=[_require(data, OPENI_REPORTS)], dataset="openi")
    errors = fracture.errors + reports.errors + (radiographs.errors if radiographs else 0)
    return {"fracture_images": fracture.images_added + fracture.images_skipped_existing,
            "boxes": fracture.annotations_added,
            "other_radiographs": (radiographs.images_added + radiographs.images_skipped_existing) if radiographs else 0,
            "reports": reports.reports_added + reports.reports_skipped_existing + reports.reports_updated,
            "ingest_errors": errors}


def _weak_labels(catalog: Catalog, options: DemoOptions) -> dict[str, Any]:
    from collections import defaultdict

    from sqlalchemy import select

    from radloop.core.schema import Report, WeakLabel
    from radloop.labeling import label_catalog
    from radloop.labeling.evaluate import read_negbio_table, score_reports

    run = label_catalog(catalog)
    with catalog.session() as session:
        majors = {report_id: codes for report_id, codes in session.execute(
            select(Report.id, Report.expert_codes).where(Report.dataset == "openi")) if codes}
        labels: dict[str, list[dict]] = defaultdict(list)
        for row in session.scalars(select(WeakLabel).where(WeakLabel.rules_version == run.rules_version)):
            labels[row.report_id].append({"finding": row.finding, "status": row.status, "site": row.site,
                                          "temporality": row.temporality, "evidence": row.evidence})
    negbio_file = options.data / NEGBIO_GOLD
    scores = score_reports(labels, majors, read_negbio_table(negbio_file) if negbio_file.exists() else None)
    summary: dict[str, Any] = {"reports_labelled": run.reports_labelled, "mentions": run.mentions_written,
                               "label_errors": run.errors, "scored_reports": scores["reports"],
                               "micro_f1_14_chest": round(scores["micro_f1"], 3)}
    for finding in ("fracture", "device", "foreign_body", "normal"):
        summary[f"f1_{finding}"] = round(scores["per_finding"][finding]["f1"], 3)
    return summary


def _encoder(catalog: Catalog, options: DemoOptions) -> dict[str, Any]:
    from radloop.core.config import load_config
    from radloop.core.registry import current_model
    from radloop.ssl.embed import resolve_encoder
    from radloop.ssl.pretrain import pretrain, register_encoder
    from radloop.ssl.settings import PretrainConfig

    if options.encoder:
        bundle = resolve_encoder(catalog, options.encoder)
        register_encoder(catalog, Path(options.encoder), bundle.version, bundle.config.model_dump(), {},
                         make_current=True)
        return {"encoder": bundle.version, "source": str(options.encoder)}
    existing = current_model(catalog, "encoder")
    if existing is not None:
        return {"encoder": existing.version, "source": "latest in workspace"}
    config_file = options.pretrain_config or _default_config("ssl/simclr_cpu.yaml")
    config = load_config(config_file, PretrainConfig, pretrain_overrides(options.pretrain_minutes))
    from radloop.app.options import progress_bars

    if not progress_bars():  # `radloop demo 2> log`: no bar (a line of carriage returns), a plain line a minute
        config = config.model_copy(update={"trainer": config.trainer.model_copy(update={"enable_progress_bar": False})})
    from radloop.ssl.pretrain_data import catalog_images

    data = config.data
    available = len(catalog_images(catalog, datasets=data.datasets, splits=data.splits, limit=data.limit))
    if available < 8:
        raise ValueError(f"only {available} images to pretrain on in the {data.splits} split(s): use a larger --limit")
    if available < data.batch_size:  # a small --limit: smaller batches rather than no encoder
        config = config.model_copy(update={"data": data.model_copy(update={"batch_size": available // 2 * 2})})
    run = pretrain(catalog, config, catalog.workspace.models_dir / "demo-pretrain", resume=False)
    final_loss = round(run.final_loss, 4) if run.final_loss is not None else None
    return {"encoder": run.version, "steps": run.steps, "final_loss": final_loss,
            "source": f"pretrained {run.seconds:.0f} s with {config_file.name}"}


def pretrain_overrides(minutes: float) -> list[str]:
    """Config overrides of the demo's short pretraining of ``minutes`` (fractions count: 0.1 is 6 s).

    ``max_steps`` assumes ~1 step/s (2 quiet cores at the demo's settings) and is the most the run takes; on a
    slower or busier machine ``trainer.fit_schedule_to_time`` ends the warm-up + cosine schedule at the steps that
    fit in ``max_time`` (measured over the warm-up), so the encoder is fully decayed rather than cut off at its
    peak LR.
    """
    seconds = max(1, math.ceil(minutes * 60))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    steps = max(20, int(minutes * 60))
    # the demo never resumes (it starts afresh): periodic checkpoints (~5 s each for a ResNet-18 here) only cost time
    return [f"trainer.max_steps={steps}",
            f"trainer.max_time={days:02d}:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
            "trainer.fit_schedule_to_time=true", f"trainer.checkpoint_every_n_steps={steps}", "trainer.loggers=[csv]"]


def _default_config(relative: str) -> Path:
    """A config shipped in the repository's configs/ folder."""
    here = Path(__file__).resolve()
    for root in (here.parents[1], Path.cwd()):
        candidate = root / "configs" / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"configs/{relative} not found next to the radloop sources or in the current folder")


def _embed_and_index(catalog: Catalog) -> dict[str, Any]:
    from radloop.app.options import progress_bars  # a bar only on a terminal: `radloop demo 2> log` stays readable
    from radloop.core.registry import current_model
    from radloop.retrieval.index import IndexManager, index_folder
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoder_adapter import encoder_from_registry

    version = current_model(catalog, "encoder").version
    summary = embed_catalog(catalog, encoder_from_registry(catalog, version), progress=progress_bars())
    added = summary["embedded"]
    manager = IndexManager.from_catalog(catalog, version)
    path = manager.save(index_folder(catalog.workspace, version))
    return {"embedded": int(added), "index_size": len(manager), "index": str(path)}


def _round_config(options: DemoOptions, **changes: Any):
    """The settings of the demo's rounds (simulated, fracture): its rounds, its next batch and its random
    baseline all read them from here (the baseline fits the rounds' probe, on their pool and held-out split)."""
    from radloop.app.rounds import RoundConfig

    return RoundConfig(task="fracture", budget=options.budget, simulate=True, dataset="fracture",
                       random_state=options.seed, cold_start_strategy=options.cold_start_strategy, **changes)


def _rounds(catalog: Catalog, options: DemoOptions, result: DemoResult, say: Say) -> dict[str, Any]:
    from radloop.app.rounds import finish_round, labelled_image_ids, start_round

    base = _round_config(options)
    for number in range(options.rounds):
        strategy = options.cold_start_strategy if number == 0 else options.strategy
        if number and _pool_exhausted(catalog, base, labelled_image_ids(catalog, "fracture", simulate=True)):
            say(f"    every pool image is labelled after {number} round(s): no more rounds (a larger --limit "
                "gives a larger pool)")
            break
        started = start_round(catalog, config=base.model_copy(update={"strategy": strategy}))
        finished = finish_round(catalog)
        entry = {"round": finished.number, "strategy": finished.strategy, "labels_spent": finished.labels_spent,
                 "labels_total": finished.labels_total, "auroc_before": finished.metric_before,
                 "auroc_after": finished.metric_after, "selected": started.selected}
        result.rounds.append(entry)
        say(f"    round {entry['round']}: {entry['strategy']:<10} +{entry['labels_spent']} labels "
            f"(total {entry['labels_total']}) fracture AUROC {_fmt(entry['auroc_before'])} -> "
            f"{_fmt(entry['auroc_after'])}")
    return {"rounds": len(result.rounds)}


def _pool_exhausted(catalog: Catalog, config, labelled: dict) -> bool:
    from radloop.app.rounds import _pool

    return all(image_id in labelled for image_id in _pool(catalog, config)[0])


def _random_baseline(catalog: Catalog, options: DemoOptions, result: DemoResult) -> dict[str, Any]:
    """Random selection at the same label counts (mean over seeds): what active learning is measured against.

    The probe, pool and held-out split are the rounds' own (:func:`_round_config`,
    :func:`radloop.app.round_labels.round_probe`): only the choice of images differs.
    """
    from sklearn.metrics import roc_auc_score

    from radloop.app.round_labels import round_probe
    from radloop.core.embeddings import load_embeddings
    from radloop.core.registry import current_model
    from radloop.core.targets import image_targets
    from radloop.ssl.probe import ProbeError

    config = _round_config(options)
    version = current_model(catalog, "encoder").version
    pool = [t for t in image_targets(catalog, dataset=config.dataset, split=config.pool_split)
            if t.fracture is not None]
    held = [t for t in image_targets(catalog, dataset=config.dataset, split=config.eval_split)
            if t.fracture is not None]
    if not pool or len({t.fracture for t in held}) < 2:  # a small --limit: no AUROC can be measured
        result.random_baseline.extend({"labels": entry["labels_total"], "auroc_mean": None, "auroc_std": None}
                                      for entry in result.rounds)
        return {"eval_images": len(held), "note": f"the held-out split has {len(held)} labelled fracture images "
                f"of {len({t.fracture for t in held})} class(es): no AUROC to compare (a larger --limit gives one)"}
    pool_set = load_embeddings(catalog, version, [t.image_id for t in pool])
    held_set = load_embeddings(catalog, version, [t.image_id for t in held])
    truth = {t.image_id: t.fracture for t in pool + held}
    pool_y = np.array([truth[i] for i in pool_set.image_ids])
    held_y = np.array([truth[i] for i in held_set.image_ids])
    pool_x, held_x = _unit(pool_set.vectors), _unit(held_set.vectors)
    for entry in result.rounds:
        count = entry["labels_total"]
        scores = []
        for seed in range(options.random_seeds):
            rng = np.random.default_rng(1000 + seed)
            picked = rng.choice(len(pool_y), size=min(count, len(pool_y)), replace=False)
            try:
                probe = round_probe(config, random_state=seed).fit(pool_x[picked], pool_y[picked, None],
                                                                   [config.task])
            except ProbeError:
                continue
            scores.append(roc_auc_score(held_y, probe.predict_proba(held_x)[:, 0]))
        result.random_baseline.append({"labels": count, "auroc_mean": float(np.mean(scores)) if scores else None,
                                       "auroc_std": float(np.std(scores)) if scores else None})
    return {"eval_images": len(held_y)}


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _next_batch(catalog: Catalog, options: DemoOptions) -> dict[str, Any]:
    from radloop.app.rounds import labelled_image_ids, start_round

    # the experts' batch: not simulated, so `radloop round finish` pulls their answers (or, with no server yet,
    # says how to hand the batch out); `radloop round finish --simulate` still answers it from the ground truth
    config = _round_config(options).model_copy(update={
        "strategy": options.strategy, "simulate": False, "label_studio_url": options.label_studio_url})
    if _pool_exhausted(catalog, config, labelled_image_ids(catalog, "fracture", simulate=config.simulate)):
        return {"note": "every pool image is labelled: no next batch (a larger --limit gives a larger pool)"}
    report = start_round(catalog, config=config)
    return {"round": report.number, "strategy": report.strategy, "selected": report.selected,
            "label_studio_import_file": report.tasks_file}


def _plot(workspace: Workspace, result: DemoResult) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    labels = [r["labels_total"] for r in result.rounds]
    axis.plot(labels, [r["auroc_after"] or np.nan for r in result.rounds], "o-", label="active learning")
    if result.random_baseline:
        means = np.array([b["auroc_mean"] or np.nan for b in result.random_baseline], dtype=float)
        spread = np.array([b["auroc_std"] or 0.0 for b in result.random_baseline], dtype=float)
        (line,) = axis.plot(labels, means, "s--", label="random selection (mean ± sd of seeds)")
        axis.fill_between(labels, means - spread, means + spread, alpha=0.2, color=line.get_color())
    axis.set_xlabel("expert labels bought")
    axis.set_ylabel("fracture AUROC (held-out)")
    axis.set_title("radloop demo: what the labels bought")
    axis.grid(alpha=0.3)
    axis.legend()
    path = workspace.rounds_dir / "learning_curve.png"
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def run_demo(catalog: Catalog, options: DemoOptions, say: Say = print) -> DemoResult:
    """Run the whole loop into ``catalog``'s workspace and return what happened."""
    result = DemoResult()
    steps = _Steps(result, say)
    steps.run("ingest radiographs, boxes and reports", lambda: _ingest(catalog, options))
    steps.run("weak labels from reports (medspacy rules) + score vs expert MeSH coding",
              lambda: _weak_labels(catalog, options))
    steps.run("encoder (self-supervised)", lambda: _encoder(catalog, options))
    steps.run("embed every image + case-search index", lambda: _embed_and_index(catalog))
    steps.run(f"{options.rounds} simulated active-learning rounds (probe fine-tuned each round)",
              lambda: _rounds(catalog, options, result, say))
    steps.run("random-selection baseline at the same label counts", lambda: _random_baseline(catalog, options, result))
    result.next_batch = steps.run("next batch for the experts", lambda: _next_batch(catalog, options))
    plot = _plot(catalog.workspace, result)
    result.files["learning_curve"] = str(plot)
    summary_file = catalog.workspace.rounds_dir / "demo_summary.json"
    summary_file.write_text(json.dumps(result.to_json(), indent=2, default=str))
    result.files["summary"] = str(summary_file)
    _print_report(result, say)
    return result


def _print_report(result: DemoResult, say: Say) -> None:
    say("")
    say("What the labels bought (fracture present, AUROC on the held-out split):")
    say(f"  {'round':>5}  {'strategy':<12}{'labels':>7}  {'active':>7}  {'random':>14}")
    for entry, baseline in zip(result.rounds, result.random_baseline or [{}] * len(result.rounds)):
        mean = baseline.get("auroc_mean")
        random_text = (f"{mean:.3f}±{baseline['auroc_std']:.3f}"
                       if mean is not None and math.isfinite(mean) else "-")
        say(f"  {entry['round']:>5}  {entry['strategy']:<12}{entry['labels_total']:>7}  "
            f"{_fmt(entry['auroc_after']):>7}  {random_text:>14}")
    if result.next_batch and result.next_batch.get("round") is None:
        say(f"Next batch: {result.next_batch.get('note', 'none')}")
    elif result.next_batch:
        say(f"Next batch: round {result.next_batch.get('round')} selected {result.next_batch.get('selected')} "
            f"images with {result.next_batch.get('strategy')}; Label Studio import file: "
            f"{result.next_batch.get('label_studio_import_file')}")
    for name, path in result.files.items():
        say(f"{name}: {path}")
