"""`radloop train`, `radloop evaluate`, `radloop predict`, `radloop models list|set-current|rollback`,
`radloop bench finetune|predict`.  `predict` and its helpers live in :mod:`radloop.app.cli_predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.cli_predict import (  # noqa: F401  (re-exported: predict's home was this module)
    _current_head, _image_files, _predict_with_progress, _show_predictions, predict,
)
from radloop.app.options import (JsonOption, OverrideOption, WorkspaceOption, console, emit, fail, open_catalog,
                                 progress_bars)

DEFAULT_BENCH_CONFIG = Path("configs/finetune/bench_cpu.yaml")

BenchOverrideOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help=(
        "Override KEY=VALUE (repeatable). Plain keys go to every job config the bench runs, e.g. "
        "data.max_eval_images=300; keys prefixed 'bench.' change the bench file itself, e.g. "
        "bench.fractions=[1.0] or bench.inits=\\[pretrained] to shrink the grid (an unknown key is named).")),
]


def _quiet_lightning() -> None:
    import logging
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|num_workers|does not have many workers).*")
    # a rerun resumes its job's checkpoint on purpose (radloop.ssl.finetune_checkpoints says so in its messages)
    warnings.filterwarnings("ignore", message=".*(Checkpoint directory .* exists and is not empty|resuming from a "
                            "checkpoint that ended before the epoch ended).*")


def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Job config, e.g. configs/finetune/probe_cpu.yaml.")],
    overrides: OverrideOption = None,
    register: Annotated[bool, typer.Option("--register/--no-register", help=(
        "Save the model in the workspace and register it; --no-register only trains and measures it "
        "(nothing is saved, the version cannot be used later)."))] = True,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a head (probe, fine-tuning, detection) on expert labels; evaluate on the held-out split; register it.

    The version is a digest of the config, the encoder and the labelled images: a version registered already is
    refused before training (unless --no-register). Fine-tuning and detection keep a checkpoint in
    <workspace>/models/runs/<version>/checkpoints/ while they train: after a Ctrl-C (exit code 130) or a crash, the
    same command resumes there. The same job started in a second process stops at once naming the first one's pid
    (exit code 3).
    """
    from radloop.core.config import ConfigError, load_config
    from radloop.core.registry import RegistryError
    from radloop.ssl.finetune_checkpoints import JobLockedError
    from radloop.ssl.finetune_config import TrainConfig
    from radloop.ssl.finetune_jobs import run_training
    from radloop.ssl.pixels import UnreadableImage

    _quiet_lightning()
    try:
        job = load_config(config, TrainConfig, overrides)
    except ConfigError as error:
        fail(str(error))
    catalog = open_catalog(workspace)
    try:
        result = run_training(catalog, job, register=register, progress=progress_bars())
    except UnreadableImage as error:  # a render cut or corrupted on disk (missing ones are left out, with a message)
        fail(f"cannot read an image: {error}")
    except JobLockedError as error:  # the same job in another process: exit 3, as a second ingest
        fail(str(error), code=3)
    except (ValueError, RegistryError, FileNotFoundError) as error:
        fail(str(error))
    except KeyboardInterrupt as error:  # from Lightning's graceful shutdown: says which checkpoint a rerun resumes
        fail(str(error) or "training interrupted: no model was registered; rerun the same command to train it "
             "again", code=130)
    except SystemExit:  # Lightning turns Ctrl-C into a graceful shutdown + sys.exit(1)
        fail("training interrupted: no model was registered; rerun the same command to train it again", code=130)
    title = f"trained {result.version}" if register else "trained and measured (not saved: --no-register)"
    emit(result.to_json(), as_json, title=title)


def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model version.")],
    coco: Annotated[Optional[Path], typer.Option("--coco", help=(
        "External COCO file to evaluate on (its images not found under --images are left out and counted in notes).")
    )] = None,
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="Image folder of --coco (default: the COCO file's folder).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help=(
        "Catalog split: train, val or test (default: the job's eval split); a split the model trained, calibrated "
        "or chose its epoch on is refused. Not with --coco."))] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """AUROC / AP per finding, ECE, region accuracy and box mAP@0.5 of a model on held-out images."""
    from radloop.core.registry import RegistryError
    from radloop.ssl.finetune_evaluate import evaluate_model
    from radloop.ssl.pixels import UnreadableImage

    _quiet_lightning()
    if split is not None and split not in ("train", "val", "test"):
        fail(f"--split {split!r}: one of train, val, test")
    if coco is not None and split is not None:  # --split was ignored without a word
        fail(f"--split {split} and --coco {coco} each choose the images to evaluate on: give one of them")
    if images is not None and coco is None:  # ignored too: the catalog split was evaluated
        fail(f"--images {images} is the image folder of a --coco file: give --coco FILE too")
    catalog = open_catalog(workspace)
    try:
        result = evaluate_model(catalog, model, coco=coco, images=images, split=split, progress=progress_bars())
    except UnreadableImage as error:
        fail(f"cannot read an image: {error}")
    except (ValueError, RegistryError, FileNotFoundError) as error:
        fail(str(error))
    emit(result, as_json, title=f"evaluation of {model}")


def models_list(
    task: Annotated[Optional[str], typer.Option(
        "--task", help="Only this task (e.g. findings, fracture, detection, encoder).")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Registered models, newest first (current ones marked)."""
    from radloop.core.registry import list_models

    catalog = open_catalog(workspace)
    records = [record.to_json() for record in list_models(catalog, task=task)]
    if task and not records:
        tasks = sorted({record.task for record in list_models(catalog)})
        console.print(f"no models for task {task!r} (tasks in the registry: {', '.join(tasks) or 'none yet'})",
                      markup=False, highlight=False)
    elif not records:
        console.print("no models registered yet: `radloop pretrain --config configs/ssl/simclr_cpu.yaml` registers "
                      "an encoder, `radloop train --config configs/finetune/probe_cpu.yaml` a head on it",
                      markup=False, highlight=False)
    if as_json:
        emit({"models": records}, True)
        return
    from radloop.app.options import listing_table, show

    rows = []
    for record in records:
        shown = {k: v for k, v in record["metrics"].items() if k.startswith(("auroc.", "map50", "ece"))}
        rows.append([record["version"], record["kind"], record["task"], record["parent_version"] or "",
                     "*" if record["is_current"] else "", (record["created_at"] or "")[:19],
                     ", ".join(f"{k}={v:.3f}" for k, v in shown.items() if isinstance(v, float))])
    show(listing_table(["version", "kind", "task", "parent", "current", "created", "metrics"], rows, title="models",
                       whole=("version",)))


def models_set_current(
    version: Annotated[str, typer.Argument(help="Model version to make current for its task.")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version the current model of its task (the ML backend and the strategies use it)."""
    from radloop.core.registry import RegistryError, set_current

    try:
        record = set_current(open_catalog(workspace), version)
    except RegistryError as error:
        fail(str(error))
    emit(record.to_json(), as_json, title=f"current {record.task} model")


def models_rollback(
    task: Annotated[str, typer.Argument(help="Task to roll back (findings, detection, encoder).")] = "findings",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the version registered before the current one current again."""
    from radloop.core.registry import RegistryError, rollback

    try:
        record = rollback(open_catalog(workspace), task)
    except RegistryError as error:
        fail(str(error))
    emit(record.to_json(), as_json, title=f"rolled back {task}")


def bench_finetune(
    config: Annotated[Path, typer.Option("--config", "-c", help=(
        "Bench config; a relative configs/... path not found here is taken from radloop's own configs/."))
    ] = DEFAULT_BENCH_CONFIG,
    overrides: BenchOverrideOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Label efficiency: AUROC (fracture), region balanced accuracy, box mAP at 1/10/100 % labels, pretrained vs random.

    The grid (heads, label fractions, inits, overrides for every job) is the bench file's; nothing is registered,
    and a job that fails is a row with its error while the grid goes on.
    """
    from radloop.core.config import ConfigError, find_config
    from radloop.ssl.finetune_bench import run_bench

    _quiet_lightning()
    try:
        config = find_config(config)
    except ConfigError as error:
        fail(f"bench {error}")
    try:
        result = run_bench(open_catalog(workspace), config, overrides, progress=progress_bars())
    except (ConfigError, ValueError, FileNotFoundError) as error:
        fail(str(error))
    _show_bench(result, as_json)
    if result.get("interrupted"):
        fail(f"bench interrupted: {result['interrupted']}; the {len(result['rows'])} row(s) measured before it are "
             "shown above", code=130)
    rows = result.get("rows") or []
    if rows and all("error" in row for row in rows):  # nothing measured: a script must not take it for figures
        fail(f"every bench job failed ({len(rows)} of {len(rows)}); first error: {rows[0]['error']}", code=1)


def _show_bench(result: dict, as_json: bool) -> None:
    if as_json:
        emit(result, True)
        return
    from rich.table import Table

    from radloop.app.options import show

    table = Table("head", "init", "labels", "train", "AUROC frac", "region bal. acc", "mAP@0.5", "s",
                  title="radloop bench finetune (held-out split)")
    for row in result["rows"]:
        cells = [row.get(k) for k in ("auroc.fracture", "region_balanced_accuracy", "map50")]
        table.add_row(row["head"], row["init"], f"{row['fraction']:.0%}", str(row.get("train_images", "-")),
                      *[f"{c:.3f}" if isinstance(c, float) else ("error" if "error" in row else "-") for c in cells],
                      str(row.get("seconds")))
    show(table)  # 160 columns into a pipe or log (rich's 80 cut "pretrained" to "pretrai…")


def bench_predict(
    task: Annotated[Optional[str], typer.Option("--task", help=(
        "Registry task whose current model is timed. Default: findings, or the one task with a current model "
        "when the workspace has no findings model (e.g. only a detector), as `radloop predict`."),
        show_default=False)] = None,
    n_images: Annotated[int, typer.Option("--n", min=1, help="Held-out images, one per call.")] = 50,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads (1 is fastest on a busy 2-core host).")] = 1,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Single-image prediction latency (p50/p95 ms) of the current model, as the ML backend calls it."""
    from radloop.ssl.finetune_bench import predict_latency

    catalog = open_catalog(workspace)
    task = _current_head(catalog, task).task
    _quiet_lightning()
    try:
        result = predict_latency(catalog, task, n_images=n_images, threads=threads)
    except ValueError as error:
        fail(str(error))
    emit(result, as_json, title="prediction latency")


def register(groups) -> None:
    """Attach the commands to the CLI groups."""
    groups.root.command("train")(train)
    groups.root.command("evaluate")(evaluate)
    groups.root.command("predict")(predict)
    groups.models.command("list")(models_list)
    groups.models.command("set-current")(models_set_current)
    groups.models.command("rollback")(models_rollback)
    groups.bench.command("finetune")(bench_finetune)
    groups.bench.command("predict")(bench_predict)
