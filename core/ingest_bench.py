"""Ingest benchmark: full ingest images/s vs. pydicom decode alone (the bound), same files, same workers.

``decode_bound_per_s`` is measured with the same number of worker processes as the ingest, each worker
doing only ``dcmread`` + ``pixel_array`` of its files (what any DICOM pipeline must pay), so ``ratio`` is
the share of the attainable throughput that the full pipeline (hash, window, render, thumbnail, catalog)
keeps.  Each figure is the best of ``repeat`` runs (the usual defence against a shared, noisy machine);
``cpu_ratio`` compares CPU seconds instead of wall time, which other load on the machine does not distort.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["bench_ingest", "decode_only"]


def decode_only(path: str) -> int:
    """Read and decode one DICOM's pixels (the bound); returns the pixel count (0 when undecodable)."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        return int(dataset.pixel_array.size)
    except Exception:
        return 0


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (pool workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _decode_all(paths: list[str], workers: int) -> float:
    started = time.perf_counter()
    if workers == 1:
        for path in paths:
            decode_only(path)
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            list(pool.imap_unordered(decode_only, paths, chunksize=1))
    return time.perf_counter() - started


def bench_ingest(path: Path, *, workers: int | None = None, repeat: int = 3, limit: int | None = None,
                 progress: bool = False) -> dict:
    """Measure full-ingest and decode-only throughput on the images under ``path``."""
    from radloop.core.catalog import Catalog
    from radloop.core.ingest import default_workers, ingest_paths
    from radloop.core.ingest_sources import discover
    from radloop.core.workspace import local_workspace

    workers = max(1, workers or default_workers())
    tasks = discover([Path(path)], limit=limit).image_tasks
    files = sorted((task.path for task in tasks), key=lambda file: -Path(file).stat().st_size)  # as ingest does
    result = {"path": str(path), "workers": workers, "repeat": repeat, "n_images": len(files)}
    if not files:
        return result
    decodable = sum(1 for file in files if decode_only(file) > 0)  # warm-up and count
    decode_seconds, ingest_seconds, ingest_summary = [], [], None
    decode_cpu, ingest_cpu = [], []
    for _ in range(repeat):
        cpu = _cpu_seconds()
        decode_seconds.append(_decode_all(files, workers))
        decode_cpu.append(_cpu_seconds() - cpu)
        scratch = Path(tempfile.mkdtemp(prefix="radloop-bench-"))
        try:
            catalog = Catalog.open(local_workspace(scratch / "workspace"))
            started, cpu = time.perf_counter(), _cpu_seconds()
            ingest_summary = ingest_paths(catalog, [Path(path)], workers=workers, progress=progress, limit=limit)
            ingest_seconds.append(time.perf_counter() - started)
            ingest_cpu.append(_cpu_seconds() - cpu)
            catalog.dispose()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    images_per_s = len(files) / min(ingest_seconds)
    decode_per_s = len(files) / min(decode_seconds)
    result.update(
        n_decodable=decodable,
        images_per_s=round(images_per_s, 3),
        decode_bound_per_s=round(decode_per_s, 3),
        ratio=round(images_per_s / decode_per_s, 3),
        images_per_s_per_worker=round(images_per_s / workers, 3),
        decode_bound_per_s_per_worker=round(decode_per_s / workers, 3),
        # CPU time is insensitive to other users of a shared machine: decode CPU / ingest CPU is the share
        # of the work that is the unavoidable decode (1.0 = ingest costs no more than decoding).
        cpu_ratio=round(min(decode_cpu) / min(ingest_cpu), 3) if min(ingest_cpu) > 0 else None,
        ingest_cpu_s_per_image=round(min(ingest_cpu) / len(files), 4),
        decode_cpu_s_per_image=round(min(decode_cpu) / len(files), 4),
        stage_cpu_seconds_per_image={stage: round(seconds / len(files), 4)
                                 for stage, seconds in ingest_summary.stage_seconds.items()},
        ingest_seconds=[round(s, 3) for s in ingest_seconds],
        decode_seconds=[round(s, 3) for s in decode_seconds],
        images_added=ingest_summary.images_added if ingest_summary else 0,
        errors=ingest_summary.errors if ingest_summary else 0,
    )
    return result
