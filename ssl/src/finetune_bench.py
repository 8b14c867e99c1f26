"""Label-efficiency benchmark (``radloop bench finetune``): heads x label fractions x encoder init.

For every head config (probe / fine-tuning / detection), label fraction (e.g. 1 %, 10 %, 100 % of the
training labels, stratified) and initialisation (the pretrained encoder vs the same architecture at random
init) one job is trained on the training split and measured on the held-out split; nothing is registered.
Figures: fracture AUROC, body-region balanced accuracy, box mAP@0.5, wall time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from radloop.core.catalog import Catalog
from radloop.core.config import StrictModel, config_lines, load_config
from radloop.ssl.finetune_config import TrainConfig

log = logging.getLogger(__name__)

__all__ = ["BenchConfig", "predict_latency", "run_bench"]

#: Figures copied from each job's metrics into the bench table.
FIGURES = ("auroc.fracture", "ap.fracture", "ece", "region_balanced_accuracy", "map50")


class BenchConfig(StrictModel):
    """``configs/finetune/bench_*.yaml``: job configs (paths relative to this file) and the grid."""

    heads: dict[str, str] = Field(default_factory=lambda: {"probe": "probe_cpu.yaml", "finetune": "finetune_cpu.yaml",
                                                           "detect": "detect_cpu.yaml"}, min_length=1)
    fractions: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(default_factory=lambda: [0.01, 0.1, 1.0],
                                                                    min_length=1)
    inits: list[Literal["pretrained", "random"]] = Field(default_factory=lambda: ["pretrained", "random"],
                                                         min_length=1)
    overrides: list[str] = Field(default_factory=list)  # applied to every job, e.g. data.max_eval_images=300
    seed: int = 0


def _job_config(folder: Path, name: str, file: str, fraction: float, init: str, bench: BenchConfig,
                extra: list[str], entries: list[str]) -> TrainConfig:
    """The job of one grid cell; ``entries`` names where each of ``bench.overrides`` came from."""
    path = Path(file) if Path(file).is_absolute() else folder / file
    grid = [f"data.label_fraction={fraction}", f"encoder.init={init}", f"data.seed={bench.seed}",
            "make_current=false", f"name=bench-{name}"]
    origins = [*entries, *[None] * len(extra), *[f"the bench grid's {setting}" for setting in grid]]
    return load_config(path, TrainConfig, [*bench.overrides, *extra, *grid], origins=origins)


def _override_entries(bench_file: Path, bench: BenchConfig, bench_overrides: list[str]) -> list[str]:
    """How messages name each of ``bench.overrides``: the bench file's ``overrides:`` entry and its line, or the
    ``--set bench.overrides=...`` that replaced them."""
    given = [o for o in bench_overrides if o.split("=", 1)[0].strip().startswith("bench.overrides")]
    if given:
        return [f"overrides entry {entry!r} (from --set {given[-1]})" for entry in bench.overrides]
    lines = config_lines(bench_file)
    return [f"overrides entry {entry!r} of bench file {bench_file}" + (
        f", line {lines[('overrides', index)]}" if ("overrides", index) in lines else "")
        for index, entry in enumerate(bench.overrides)]


def run_bench(catalog: Catalog, config_path: str | Path, overrides: list[str] | None = None, *,
              progress: bool = True) -> dict[str, Any]:
    """Run the grid; returns ``{"rows": [...], "figures": {"<head>.<init>.<fraction>.<metric>": value}}``.

    ``overrides`` with a ``bench.`` prefix change the bench config; the rest go to every job.  Interrupted (Ctrl-C),
    the grid stops and the rows measured so far come back with ``"interrupted": "during <job>"``.
    """
    from radloop.core.config import find_config
    from radloop.ssl.finetune_checkpoints import JobLockedError
    from radloop.ssl.finetune_jobs import run_training

    overrides = list(overrides or [])
    bench_overrides = [o for o in overrides if o.startswith("bench.")]
    bench = load_config(config_path, BenchConfig, bench_overrides, prefix="bench.")
    job_overrides = [o for o in overrides if not o.startswith("bench.")]
    bench_file = find_config(Path(config_path))
    folder = bench_file.resolve().parent  # the jobs lie beside the bench file it loaded
    entries = _override_entries(bench_file, bench, bench_overrides)
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    # every job's config is read before the first one trains: a missing job file or a bad override stops the bench
    # now, not after the jobs before it ran for minutes (their rows would be lost with the error)
    grid = [(head, init, fraction, _job_config(folder, head, file, fraction, init, bench, job_overrides, entries))
            for head, file in bench.heads.items() for init in bench.inits for fraction in bench.fractions]
    for head, init, fraction, job in grid:
        started = time.perf_counter()
        row: dict[str, Any] = {"head": head, "init": init, "fraction": fraction}
        try:
            result = run_training(catalog, job, register=False, progress=progress)
        except (ValueError, JobLockedError) as error:  # one class only, no boxes, the job running elsewhere...:
            # reported, the grid goes on
            row.update({"error": str(error), "seconds": round(time.perf_counter() - started, 1)})
            rows.append(row)
            log.warning("bench %s/%s/%s failed: %s", head, init, fraction, error)
            continue
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C (Lightning: sys.exit(1)): keep the rows measured
            log.warning("bench interrupted during %s/%s/%s", head, init, fraction)
            return {"config": str(config_path), "rows": rows, "figures": figures,
                    "interrupted": f"during {head}/{init}/{fraction:g}"}
        except Exception as error:  # noqa: BLE001 - a broken job (e.g. a missing package) must not
            # lose the rows already measured: report it with its traceback in the log, go on
            log.exception("bench %s/%s/%s crashed", head, init, fraction)
            row.update({"error": f"{type(error).__name__}: {error}",
                        "seconds": round(time.perf_counter() - started, 1)})
            rows.append(row)
            continue
        row.update({"train_images": result.train_summary["images"],
                    "eval_images": result.metrics.get("n_images"),
                    "seconds": round(time.perf_counter() - started, 1),
                    "encoder": result.predictor.encoder_version if head == "probe" else
                    getattr(result.predictor, "meta", {}).get("encoder_version")})
        for metric in FIGURES:
            if metric in result.metrics:
                row[metric] = result.metrics[metric]
                figures[f"{head}.{init}.{fraction:g}.{metric}"] = result.metrics[metric]
        rows.append(row)
        log.info("bench row %s", row)
    return {"config": str(config_path), "rows": rows, "figures": figures}


def predict_latency(catalog: Catalog, task: str = "findings", *, n_images: int = 50, threads: int = 2,
                    split: str = "test") -> dict[str, Any]:
    """Single-image latency of the task's current predictor (load once, then one image per call).

    Returns load time and p50/p95/max milliseconds over ``n_images`` held-out renders (first call excluded).

    Raises:
        ValueError: no current model for ``task`` or no images in ``split``.
    """
    import numpy as np
    import torch

    from radloop.core.targets import image_targets
    from radloop.ssl.predict import load_predictor

    torch.set_num_threads(threads)
    started = time.perf_counter()
    predictor = load_predictor(catalog, task)
    if predictor is None:
        raise ValueError(f"no current model for task {task!r}: train one with `radloop train`")
    load_seconds = time.perf_counter() - started
    targets = image_targets(catalog, split=split)[: n_images + 1]
    if not targets:
        raise ValueError(f"no images in split {split!r}")
    timings = []
    for target in targets:
        path = catalog.workspace.absolute(target.render_path)
        started = time.perf_counter()
        predictor.predict([path], original_sizes=[(target.width, target.height)])
        timings.append((time.perf_counter() - started) * 1000.0)
    timings = np.asarray(timings[1:] or timings)
    return {"model": predictor.model_version, "threads": threads, "load_s": round(load_seconds, 3),
            "n": int(len(timings)), "p50_ms": round(float(np.percentile(timings, 50)), 1),
            "p95_ms": round(float(np.percentile(timings, 95)), 1), "max_ms": round(float(timings.max()), 1)}
