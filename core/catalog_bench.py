"""Catalog benchmark (`radloop bench catalog`): wall time and peak memory of the catalog-side commands at scale.

For each size a synthetic archive catalog is built (:mod:`radloop.core.catalog_synth`: studies, images, reports,
weak labels, boxes, expert labels, one encoder's embeddings) in a local SQLite workspace, then each operation
runs as its own process (the CLI, as a user runs it, or a Python snippet for the app's overview functions), so
that its peak resident memory is its own (``wait4``'s ``ru_maxrss``).  Two simulated rounds run: the first
cold-starts (no model yet), the second scores the pool with the first round's probe.  The workspaces are
deleted afterwards unless ``keep``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["OPERATIONS", "bench_catalog", "check_operations", "run_measured"]

#: Python run for the "overview" operation: what the app's overview page computes (app/page_overview.py)
OVERVIEW = """
import sys
from radloop.app import views, views_rounds
from radloop.core.catalog import Catalog
from radloop.core.workspace import local_workspace
catalog = Catalog.open(local_workspace(sys.argv[1]), create=False)
catalog.counts(); views.region_counts(catalog); views.finding_counts(catalog)
views.weak_label_coverage(catalog); views_rounds.rounds_frame(catalog)
"""

BUILD = """
import json, sys
from radloop.core.catalog import Catalog
from radloop.core.catalog_synth import build_synthetic_catalog, synthetic_workspace
catalog = Catalog.open(synthetic_workspace(sys.argv[1]))
print(json.dumps(build_synthetic_catalog(catalog, int(sys.argv[2]))))
"""

#: (name, arguments after ``radloop``; ``{case}`` is a catalog image id, ``{region}`` a body region)
OPERATIONS: list[tuple[str, list[str]]] = [
    ("info", ["info", "--json"]),
    ("overview", []),
    ("index build", ["index", "build", "--json"]),
    ("search", ["search", "--case", "{case}", "--k", "10", "--json"]),
    ("search --filter", ["search", "--case", "{case}", "--k", "10", "--filter", "body_region={region}", "--json"]),
    ("embed (nothing to do)", ["embed", "--accelerator", "cpu", "--json"]),
    ("round start 1", ["round", "start", "--simulate", "--budget", "50", "--json"]),
    ("round finish 1", ["round", "finish", "--simulate", "--json"]),
    ("round start 2", ["round", "start", "--simulate", "--budget", "50", "--json"]),
    ("round finish 2", ["round", "finish", "--simulate", "--json"]),
    ("round status", ["round", "status", "--json"]),
]


def check_operations(operations: list[str] | None) -> None:
    """Refuse operation names that are not in :data:`OPERATIONS` (a misspelt name would measure nothing).

    Raises:
        ValueError: unknown names (the message names them and lists the valid ones).
    """
    valid = [name for name, _ in OPERATIONS]
    unknown = [name for name in operations or () if name not in valid]
    if unknown:
        raise ValueError(f"unknown operation{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(name) for name in unknown)}; valid: {', '.join(valid)}")


def run_measured(command: list[str], *, env: dict | None = None, cwd: str | None = None) -> dict:
    """Run ``command``; its wall and CPU seconds (user + system: what a busy machine distorts less), peak
    resident memory (MiB), exit status and the end of its output."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "rc": process.returncode,
            "output": output.decode(errors="replace")[-2000:]}


def _radloop() -> list[str]:
    return [sys.executable, "-c", "from radloop.app.cli import main; main()"]


def _pick_case(root: Path) -> tuple[str, str]:
    """A query image id (the first by id) and a body region other than chest (a filtered search)."""
    from sqlalchemy import select

    from radloop.core.catalog import Catalog
    from radloop.core.schema import Image
    from radloop.core.workspace import local_workspace

    catalog = Catalog.open(local_workspace(root), create=False)
    try:
        with catalog.session() as session:
            case = session.scalar(select(Image.id).order_by(Image.id).limit(1))
    finally:
        catalog.dispose()
    return case, "wrist"


def bench_catalog(sizes: list[int], folder: Path, *, operations: list[str] | None = None,
                  keep: bool = False, progress=None) -> dict:
    """Build a synthetic catalog of each size under ``folder`` and measure each operation on it.

    Args:
        operations: names from :data:`OPERATIONS` to measure (default: all).

    Returns:
        ``{"sizes": {size: {"build": ..., "operations": {name: {wall_s, peak_rss_mb, rc}}}}}``.

    Raises:
        ValueError: an unknown operation name (before anything is built).
    """
    check_operations(operations)
    say = progress or (lambda _message: None)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200"}
    env.pop("RADLOOP_DATABASE_URL", None)  # never a site's database
    result: dict = {"sizes": {}}
    for size in sizes:
        root = Path(folder) / f"catalog-{size}"
        if root.exists():
            shutil.rmtree(root)
        say(f"building a synthetic catalog of {size:,} images in {root}")
        # in its own process: this one stays small (a child's peak memory counts its parent's at the fork)
        building = run_measured([sys.executable, "-c", BUILD, str(root), str(size)], env=env)
        if building["rc"] != 0:
            raise RuntimeError(f"building the synthetic catalog failed:\n{building['output']}")
        built = json.loads(building["output"].strip().splitlines()[-1])
        built["seconds"]["total"] = building["wall_s"]
        case, region = _pick_case(root)
        entry: dict = {"build": built, "operations": {}}
        for name, arguments in OPERATIONS:
            if operations and name not in operations:
                continue
            if name == "overview":
                command = [sys.executable, "-c", OVERVIEW, str(root)]
            else:
                command = _radloop() + [part.format(case=case, region=region) for part in arguments] + [
                    "--workspace", str(root)]
            measured = run_measured(command, env=env)
            say(f"{size:>9,} {name:24s} {measured['wall_s']:8.2f} s {measured['cpu_s']:8.2f} s CPU "
                f"{measured['peak_rss_mb']:8.1f} MiB"
                f"{'' if measured['rc'] == 0 else '  FAILED: ' + measured['output'][-300:]}")
            if measured["rc"] == 0:
                measured.pop("output")
            entry["operations"][name] = measured
        result["sizes"][size] = entry
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return result


if __name__ == "__main__":  # python -m radloop.core.catalog_bench FOLDER SIZE [SIZE ...]
    target, *counts = sys.argv[1:]
    print(json.dumps(bench_catalog([int(count) for count in counts], Path(target), keep=True, progress=print),
                     indent=1))
