"""`radloop pretrain`, `radloop embed`, `radloop bench ssl` and `radloop bench pretrain-throughput`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.options import JsonOption, OverrideOption, WorkspaceOption, emit, fail, progress_bars


def register(groups) -> None:
    """Attach the self-supervised encoder commands to the CLI groups."""
    groups.root.command("pretrain")(pretrain_command)
    groups.root.command("embed")(embed_command)
    groups.root.command("reexport-encoder")(reexport_command)
    groups.bench.command("ssl")(bench_ssl_command)
    groups.bench.command("pretrain-throughput")(bench_throughput_command)


def pretrain_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pretraining YAML, e.g. configs/ssl/simclr_cpu.yaml.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Run folder (default: <workspace>/models/runs/<config name>).")] = None,
    overrides: OverrideOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume", help="Continue from <out>/checkpoints/last.ckpt when present.")] = True,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Resume from this checkpoint.")] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Pretrain an encoder (MAE or SimCLR) on the workspace's images, export and register it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    # Lightning's notes on a resumed run's folders are wrong here ("previous log files will be deleted": the
    # earlier metrics.csv is moved aside first) or expected (checkpoints/ is where the resume comes from)
    warnings.filterwarnings("ignore", message=".*(exists and is not empty|LeafSpec).*")
    from radloop.core.catalog import Catalog
    from radloop.core.config import ConfigError, load_config
    from radloop.core.workspace import resolve_workspace
    from radloop.ssl.settings import PretrainConfig

    try:
        settings = load_config(config, PretrainConfig, overrides)
    except ConfigError as error:
        fail(str(error))
    if not progress_bars() and not any(item.split("=")[0].strip() == "trainer.enable_progress_bar"
                                       for item in overrides or []):
        # into a log file or pipe: no bar (unless --set asks for one), each update would be a carriage return
        trainer = settings.trainer.model_copy(update={"enable_progress_bar": False})
        settings = settings.model_copy(update={"trainer": trainer})
    if checkpoint is not None and not checkpoint.is_file():
        fail(f"--checkpoint {checkpoint} does not exist")
    from radloop.ssl.pretrain import PretrainStorageError, pretrain

    ws = resolve_workspace(workspace)
    try:
        catalog = Catalog.open(ws, create=False)
    except FileNotFoundError as error:
        fail(str(error))
    run_dir = out or ws.models_dir / "runs" / settings.name
    try:
        result = pretrain(catalog, settings, run_dir, resume=str(checkpoint) if checkpoint else resume)
    except ValueError as error:
        fail(str(error))
    except KeyboardInterrupt as error:
        fail(str(error) or "interrupted: rerun the same command to resume", code=130)
    except PretrainStorageError as error:  # a full disk while writing a checkpoint or the encoder: what is kept
        fail(str(error))
    if is_global_rank_zero():  # DDP re-runs this command once per extra device: one report, not one per process
        emit(result.to_json(), json_output, title="pretrain")


def is_global_rank_zero() -> bool:
    """False in the extra processes a multi-device run starts (Lightning's ddp re-runs the command; torchrun and
    srun start it once per rank): only global rank 0 prints the result and registers."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def embed_command(
    encoder: Annotated[str, typer.Option("--encoder", "-e", help=(
        "Encoder folder, a registered encoder version, or 'current' (the workspace's current encoder, e.g. "
        "the one `radloop pretrain` registered)."))] = "current",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 64,
    fp16: Annotated[bool, typer.Option("--fp16", help="Store float16 vectors (half the disk).")] = False,
    no_normalize: Annotated[bool, typer.Option("--no-normalize", help="Keep raw (not L2-normalized) vectors.")] = False,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Rows per shard file.")] = 4096,
    devices: Annotated[str, typer.Option("--devices", help="Lightning devices (e.g. 1, 4, auto).")] = "1",
    accelerator: Annotated[str, typer.Option("--accelerator", help="cpu | gpu | auto")] = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data loader processes.")] = 0,
    reembed_lost: Annotated[bool, typer.Option("--reembed-lost", help=(
        "Embed the images again even when every shard file of the encoder is missing (without it, embed stops and "
        "names the folder, which may only be moved or not mounted)."))] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Embed every catalog image not yet embedded by this encoder version (resumable, sharded)."""
    started = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    # Lightning's own deprecation note (its code, not the user's): a line in every cron mail and CI log
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace

    if not (devices.isdigit() or devices == "auto" or devices.replace(",", "").isdigit()):
        fail(f"--devices {devices!r}: a number of devices, a comma list of device indices, or auto")
    ws = resolve_workspace(workspace)
    try:
        catalog = Catalog.open(ws, create=False)
    except (FileNotFoundError, LookupError, ValueError) as error:
        fail(str(error))
    # an unknown accelerator name is refused below; a GPU that is absent is not needed for nothing to embed
    quick = accelerator.lower() in ("auto", "cpu", "gpu", "cuda", "mps") and not _maybe_extra_process()
    try:
        done = _nothing_to_embed(catalog, encoder, fp16=fp16, normalize=not no_normalize) if quick else None
    except OSError as error:  # a shard file that could not be read (permissions, I/O error)
        fail(_embed_error(error))
    if done is not None:  # answered from the catalog: torch, Lightning and the weights never loaded
        done["seconds"] = round(time.time() - started, 1)
        emit(done, json_output, title="embed")
        return
    from radloop.ssl.embed import embed_catalog, resolve_encoder

    try:
        bundle = resolve_encoder(catalog, encoder)
    except (FileNotFoundError, LookupError, ValueError) as error:
        fail(str(error))
    from radloop.ssl.pretrain import require_accelerator

    try:
        require_accelerator(accelerator)
    except ValueError as error:
        fail(str(error))
    from sqlalchemy.exc import IntegrityError

    parsed_devices: int | str = int(devices) if devices.isdigit() else devices
    try:
        summary = embed_catalog(catalog, bundle, batch_size=batch_size, fp16=fp16, normalize=not no_normalize,
                                shard_size=shard_size, devices=parsed_devices, accelerator=accelerator,
                                num_workers=workers, progress=not json_output and progress_bars(),
                                reembed_lost=reembed_lost)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into a graceful shutdown + sys.exit(1)
        if not is_global_rank_zero():  # an extra process of a multi-device run: rank 0 says it, once
            raise typer.Exit(130) from None
        fail("embedding interrupted: the shards written so far are kept; rerun the same command to embed the "
             "rest", code=130)
    except (OSError, IntegrityError) as error:  # an unreadable shard file, all shards lost, rows refused
        fail(_embed_error(error))
    except ValueError as error:  # --no-normalize against vectors stored normalized (or the reverse)
        fail(str(error))
    if not is_global_rank_zero():  # the summary counts every process's images already: rank 0 reports it
        return
    if Path(encoder).exists():  # a folder: register it so that rounds, search and training find it
        from radloop.ssl.encoder_adapter import ensure_encoder_registered

        summary["registry"] = ensure_encoder_registered(catalog, encoder, bundle, current_if_none=True)
    emit(summary, json_output, title="embed")


def _embed_error(error: Exception) -> str:
    """What `radloop embed` says for lost shards it may not forget, a file it could not read or write, or rows the
    catalog refused."""
    from radloop.core.embeddings import EmbeddingShardError

    if isinstance(error, EmbeddingShardError):
        return str(error)
    if isinstance(error, OSError):
        return (f"embedding stopped: {error} (no catalog row was forgotten, and the shards written so far are "
                "kept: rerun the same command once that is fixed)")
    return (f"the catalog refused the new embeddings ({getattr(error, 'orig', error)}): another run may have "
            "recorded the same images meanwhile; the shards written so far are kept: rerun the same command")


def _maybe_extra_process() -> bool:
    """Whether this may be an extra process of a multi-process run, asked without loading Lightning when it is not
    loaded yet (Lightning reads the rank from the same variables)."""
    if "lightning" in sys.modules:
        return not is_global_rank_zero()
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in os.environ:
            return os.environ[name].strip() != "0"
    return False


def _encoder_on_record(catalog, encoder: str) -> tuple[str, int, str | None] | None:
    """``(version, embedding length, registry note)`` of ``encoder``, found by the lookup behind
    :func:`radloop.ssl.embed.resolve_encoder` (:func:`radloop.core.registry.locate_encoder`) but read from the
    folder's ``encoder.json`` alone (no torch, no weights).  None where only loading the encoder tells: an unknown
    name, a missing or overwritten folder, a folder not registered yet (loading it reports what is wrong, or
    registers it)."""
    from radloop.core.registry import ENCODER_CONFIG_FILE, ENCODER_WEIGHTS_FILE, locate_encoder
    from radloop.core.schema import Model

    try:
        location = locate_encoder(catalog, encoder)
        config = json.loads((location.folder / ENCODER_CONFIG_FILE).read_text())
        version, dim = str(config["version"]), int(config["embed_dim"])
    except (LookupError, OSError, ValueError, KeyError, TypeError):
        return None
    if not (location.folder / ENCODER_WEIGHTS_FILE).is_file():
        return None
    if location.registered is not None:
        return (version, dim, None) if version == location.registered else None
    with catalog.session() as session:
        known = session.get(Model, version) is not None
    return (version, dim, "already registered") if known else None


def _nothing_to_embed(catalog, encoder: str, *, fp16: bool, normalize: bool) -> dict | None:
    """The summary of an ``embed`` run with nothing to do, from the catalog alone when the encoder's version is
    known without its weights; None when there is something to embed (lost shards included) or the encoder
    must be loaded to tell.  ``dtype`` and ``normalized`` say how the vectors are stored, whatever the flags."""
    from sqlalchemy import func, select

    from radloop.core.embeddings import lost_shards, missing_image_ids, stored_setting, stored_settings
    from radloop.core.schema import Image

    known = _encoder_on_record(catalog, encoder)
    if known is None:
        return None
    version, dim, registry = known
    if lost_shards(catalog, version) or missing_image_ids(catalog, version):
        return None
    with catalog.session() as session:
        total = session.scalar(select(func.count()).select_from(Image)) or 0
    normalized, dtypes = stored_settings(catalog, version)  # what is stored, not the flags (unless nothing is)
    summary = {"model_version": version, "embedded": 0, "skipped": 0, "shards": 0, "dim": dim,
               "dtype": stored_setting(dtypes, "float16" if fp16 else "float32"),
               "normalized": stored_setting(normalized, normalize), "already_embedded": total, "seconds": None}
    if registry is not None:
        summary["registry"] = registry
    return summary


def reexport_command(
    source: Annotated[Path, typer.Argument(help="Encoder folder (encoder.json + encoder.safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New, empty folder for the re-exported encoder.")],
    image_size: Annotated[Optional[int], typer.Option("--image-size", min=16, help="Embed at this side (px).")] = None,
    pooling: Annotated[Optional[str], typer.Option(
        "--pooling", help="default | avg_tokens | multiscale (see radloop.ssl.encoders.EncoderConfig).")] = None,
    flip_average: Annotated[Optional[bool], typer.Option(
        "--flip-average/--no-flip-average", help="Average each image's features with its mirror image's.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Re-export an encoder's weights with other embedding settings (a new version; the weights are untouched)."""
    from typing import get_args

    from radloop.ssl.encoders import reexport_encoder
    from radloop.ssl.settings import PoolingName

    if pooling is not None and pooling not in get_args(PoolingName):
        fail(f"unknown pooling {pooling!r}; valid: {', '.join(get_args(PoolingName))}")
    try:
        bundle = reexport_encoder(source, out, image_size=image_size, pooling=pooling, flip_average=flip_average)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        fail(str(error))
    config = bundle.config
    emit({"folder": str(out), "version": config.version, "image_size": config.image_size,
          "pooling": config.pooling, "flip_average": config.flip_average, "embed_dim": config.embed_dim},
         json_output, title="reexport-encoder")


def bench_ssl_command(
    encoders: Annotated[list[str], typer.Option("--encoder", "-e", help="Encoder folder or version (repeatable).")],
    fractions: Annotated[str, typer.Option("--fractions", help="Label fractions for the linear probe.")] = "0.01,0.1,1",
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Random label subsets per fraction < 1.")] = 5,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Skip random-init and raw-pixel baselines.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
    device: Annotated[str, typer.Option("--device", help="Where to embed: cpu, cuda, cuda:1 or auto.")] = "cpu",
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Linear probe (1/10/100% labels) and kNN precision@10 for each encoder vs random init and raw pixels.

    Tasks: fracture present (AUROC) and body region (balanced accuracy); labels from the train split,
    evaluation on the held-out val+test images (study-level split).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace
    from radloop.ssl.benchmark import benchmark_encoders
    from radloop.ssl.embed import resolve_encoder

    import torch

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {device}: no CUDA device here (use --device cpu or auto)")
    try:
        label_fractions = [float(value) for value in fractions.split(",") if value.strip()]
    except ValueError:
        fail(f"--fractions {fractions!r} must be comma-separated numbers in (0, 1]")
    if not label_fractions or any(not 0 < value <= 1 for value in label_fractions):
        fail(f"--fractions {fractions!r} must be comma-separated numbers in (0, 1]")
    ws = resolve_workspace(workspace)
    try:
        catalog = Catalog.open(ws, create=False)
        bundles = [resolve_encoder(catalog, name) for name in encoders]
        result = benchmark_encoders(catalog, bundles, fractions=label_fractions, repeats=repeats, seed=seed,
                                    baselines=not no_baselines, batch_size=batch_size, progress=progress_bars(),
                                    device=None if device == "auto" else device)  # tqdm: stderr
    except (FileNotFoundError, LookupError, ValueError) as error:
        fail(str(error))
    emit(result, json_output, title="bench ssl")


def bench_throughput_command(
    image_sizes: Annotated[Optional[list[int]], typer.Option("--image-size", help="Default: 224 and 448.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Per step (GPU).")] = 256,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps after warm-up.")] = 20,
    compile_model: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the MAE.")] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """MAE ViT-B/16 pretraining throughput (images/s) and peak GPU memory, bf16; tiny shape on CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from radloop.ssl.throughput import check_throughput_args, pretrain_throughput

    sizes = image_sizes or [224, 448]
    try:  # before a GPU model is built: a size such as 200 failed inside timm with a traceback
        check_throughput_args(sizes, batch_size=batch_size, steps=steps)
    except ValueError as error:
        fail(str(error))
    result = pretrain_throughput(sizes, batch_size=batch_size, steps=steps, compile_model=compile_model)
    emit(result, json_output, title="bench pretrain-throughput")
