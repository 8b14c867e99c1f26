"""`radloop demo`: the whole loop on the real data, into a fresh workspace."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.options import JsonOption, WorkspaceOption, console, emit, fail


def _default_data() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.exists():
            return candidate
    return Path("../shared/data")


def demo_workspace(path: str | Path | None):
    """The demo's workspace: always its own SQLite catalog (the demo deletes and rebuilds the folder, which must
    never leave a server database describing files that are gone). Returns (workspace, note or None)."""
    import os

    from radloop.core.workspace import local_workspace, resolve_workspace

    target = local_workspace(resolve_workspace(path).root)
    note = None
    if os.environ.get("RADLOOP_DATABASE_URL"):
        note = "the demo keeps its catalog in the workspace's SQLite file; RADLOOP_DATABASE_URL is not used"
    return target, note


DEMO_MARKER = ".radloop-demo"


def replaceable(root: Path, keep: bool) -> str | None:
    """Why the demo must not use ``root`` (None when it may). Without ``--keep`` the demo deletes and rebuilds
    its folder, which is only allowed for an empty folder or one an earlier demo made (it leaves a marker file):
    a real workspace (``$RADLOOP_WORKSPACE`` in the shell, say) is never wiped."""
    if not root.exists():
        return None
    if not root.is_dir():
        return f"{root} is a file, not a folder; choose another --workspace"
    if (root / DEMO_MARKER).exists() or not any(root.iterdir()):
        return None
    if keep and (root / "catalog.sqlite").exists():
        return (f"{root} is a workspace the demo did not make; --keep would add the demo's data to it: "
                "choose another --workspace")
    if (root / "catalog.sqlite").exists():
        return (f"{root} is a radloop workspace the demo did not make and the demo starts from an empty one: "
                "choose another --workspace (the demo never deletes a workspace it did not create)")
    return f"{root} exists and is not a radloop workspace; choose another --workspace"


def explore_command(root: Path) -> str:
    """The shell line that opens the demo's workspace in the app, from any folder: this interpreter runs
    Streamlit (``streamlit`` need not be on PATH) on the installed app's ``main.py`` by absolute path.  With a
    site ``RADLOOP_DATABASE_URL`` in the environment the app would read that database instead of the demo's
    SQLite file, so the line clears it."""
    import os
    import shlex
    import sys
    from importlib.resources import files

    clear = "RADLOOP_DATABASE_URL= " if os.environ.get("RADLOOP_DATABASE_URL") else ""
    app_main = Path(str(files("radloop.app").joinpath("main.py"))).resolve()
    return (f"{clear}RADLOOP_WORKSPACE={shlex.quote(str(Path(root).resolve()))} "
            f"{shlex.quote(sys.executable)} -m streamlit run {shlex.quote(str(app_main))}")


def register(groups) -> None:
    @groups.root.command("demo")
    def demo(data: Annotated[Optional[Path], typer.Option(help="Shared real-data folder (default ../shared/data).")] = None,
             limit: Annotated[Optional[int], typer.Option(min=50, help="Fracture images to ingest (default: all).")] = None,
             encoder: Annotated[Optional[Path], typer.Option(help="Use this encoder folder instead of pretraining.")] = None,
             pretrain_minutes: Annotated[float, typer.Option(min=0.1, help="Length of the short pretraining.")] = 2.5,
             rounds: Annotated[int, typer.Option(min=2, help="Simulated active-learning rounds.")] = 3,
             budget: Annotated[int, typer.Option(min=5, help="Images bought per round.")] = 40,
             strategy: Annotated[str, typer.Option(help="Strategy after the cold-start round (kcenter: best measured with a briefly pretrained encoder).")] = "kcenter",
             label_studio_url: Annotated[Optional[str], typer.Option(
                 help="Push the next batch to this Label Studio (token from LABEL_STUDIO_API_KEY).")] = None,
             keep: Annotated[bool, typer.Option("--keep", help=(
                 "Reuse the demo's workspace instead of starting fresh (without it the demo deletes and rebuilds "
                 "a folder an earlier demo made; it refuses any other non-empty folder)."))] = False,
             workers: Annotated[Optional[int], typer.Option(min=1, help="Ingest processes.")] = None,
             workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
        """Run the whole loop on real data: ingest, weak labels, pretraining, embeddings, index,
        simulated active-learning rounds with fine-tuning, the next batch, a report and a plot."""
        from radloop.app.demo import DemoOptions, run_demo
        from radloop.core.catalog import Catalog

        from radloop.app.demo import check_data

        data = (data or _default_data()).resolve()
        if not data.exists():
            fail(f"data folder {data} not found: pass --data /path/to/shared/data")
        try:
            check_data(data)
        except FileNotFoundError as error:
            fail(str(error))
        target, note = demo_workspace(workspace)
        if note:
            console.print(f"note: {note}", markup=False, highlight=False)
        problem = replaceable(target.root, keep)
        if problem:
            fail(problem)
        if target.root.exists() and not keep:
            shutil.rmtree(target.root)
        target.ensure()
        (target.root / DEMO_MARKER).write_text("made by `radloop demo`: the next demo may delete this folder\n")
        catalog = Catalog.open(target)
        options = DemoOptions(data=data, limit=limit, encoder=encoder, pretrain_minutes=pretrain_minutes,
                              rounds=rounds, budget=budget, strategy=strategy, label_studio_url=label_studio_url,
                              workers=workers)
        say = (lambda message: console.print(message, markup=False, highlight=False))
        from radloop.app.rounds import RoundError

        try:
            result = run_demo(catalog, options, say=say)
        except (FileNotFoundError, ValueError, LookupError, RoundError) as error:
            fail(str(error))
        if json_output:
            emit(result.to_json(), True)
        console.print(f"\nworkspace: {target.root}  (explore it: {explore_command(target.root)})",
                      markup=False, highlight=False)
