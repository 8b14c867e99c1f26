"""Options shared by every CLI command and the way commands print their results."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

WorkspaceOption = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", help="Workspace folder (default: $RADLOOP_WORKSPACE, else ./radloop-workspace).",
                 envvar="RADLOOP_WORKSPACE", show_envvar=True),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")]
OverrideOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help=("Config override KEY=VALUE, dotted for nested keys (repeatable); the keys "
                                      "are those of this command's config file (an unknown key is named).")),
]

console = Console(stderr=True)


def emit(result: dict[str, Any], as_json: bool, *, title: str | None = None) -> None:
    """Print a command's summary: JSON on stdout with ``--json``, else a readable table on stderr+stdout."""
    if as_json:
        sys.stdout.write(json.dumps(_json_ready(result), indent=2, default=str, allow_nan=False) + "\n")
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    # Text, not markup: keys and values hold paths and dataset names ("scans [/b]" ended in a MarkupError)
    table = Table(title=None if title is None else Text(title), show_header=False, box=None)
    for key, value in _flatten(result).items():
        table.add_row(Text(str(key), style="bold"), Text(_short(value)))
    show(table)


def _json_ready(value: Any) -> Any:
    """``value`` with NaN / infinity as null (``jq`` and most parsers refuse Python's ``NaN``) and NumPy scalars as
    the numbers they hold (``default=str`` made an ``np.float32`` a quoted string)."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def listing_table(headers: list[str], rows: list[list[Any]], *, title: str | None = None,
                  whole: tuple[str, ...] = ()):
    """A rich table whose cells wrap onto more lines instead of ending in "…" (narrow terminals, pipes, logs).

    Columns named in ``whole`` (versions and ids that users copy into the next command) are never broken.  Title
    and cells are plain text, never markup (file names, report text).
    """
    from rich.table import Table
    from rich.text import Text

    table = Table(title=None if title is None else Text(title))
    for index, header in enumerate(headers):
        keep = header in whole
        width = max([len(str(row[index])) for row in rows] + [len(header)]) if keep else None
        table.add_column(header, overflow="fold", no_wrap=keep, min_width=width)
    for row in rows:
        table.add_row(*[Text(str(cell)) for cell in row])
    return table


def show(renderable: Any, *, stderr: bool = False) -> None:
    """Print a table at the terminal's width, or up to 160 columns into a pipe or log (rich's default is 80)."""
    stream = sys.stderr if stderr else sys.stdout
    Console(stderr=stderr, width=None if stream.isatty() else 160).print(renderable)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and len(value) <= 40:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


def say(message: str) -> None:
    """A dim progress line on the console (stderr); the message is plain text (it may name files), not markup."""
    from rich.text import Text

    console.print(Text(message, style="dim"))


def note_large_images(paths: list[Path]) -> None:
    """One ``note:`` line for each PNG/JPEG over Pillow's decompression-bomb warning limit, instead of Pillow's
    two-line warning for each time the file is decoded (a search query is decoded twice)."""
    import warnings

    from radloop.core.render import PILLOW_SIZE_WARNING, large_image_note

    warnings.filterwarnings("ignore", message=PILLOW_SIZE_WARNING)
    for path in paths:
        note = large_image_note(path)
        if note is not None:
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print a clear error (no traceback) and exit.

    On a terminal the error starts on a line of its own: a progress bar stopped mid-run (an interrupted epoch)
    leaves the cursor at the end of its line, and the error read "Epoch 0:  0%|...error: ..."."""
    from rich.markup import escape

    start = "\n" if _is_terminal(sys.stderr) else ""
    console.print(f"{start}[bold red]error:[/bold red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def progress_bars() -> bool:
    """Whether to draw progress bars (on stderr): only on a terminal.  Into a file or a pipe (cron, CI logs) a bar
    redraws its line with a carriage return at every update: one log line thousands of updates long."""
    return _is_terminal(sys.stderr)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def check_output_file(path: Path, option: str = "--out") -> None:
    """Exit with one clear line when an output file option names an existing folder: checked before any work,
    as the write would otherwise fail only at the end."""
    if path.is_dir():
        fail(f"{option} {path} is a folder: give a file path")


def open_catalog(workspace: Path | None):
    """Open an existing workspace's catalog, or exit with what to run first."""
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace

    try:
        return Catalog.open(resolve_workspace(workspace), create=False)
    except FileNotFoundError as error:
        fail(str(error))
