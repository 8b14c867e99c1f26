"""`radloop` command line.  Each part registers its commands from its own module (lazy heavy imports)."""

from __future__ import annotations

import codecs
import importlib
import logging
import os
import sys
from dataclasses import dataclass

import typer


@dataclass(frozen=True)
class CommandGroups:
    """The Typer groups command modules attach to."""

    root: typer.Typer
    bench: typer.Typer
    labelstudio: typer.Typer
    round: typer.Typer
    models: typer.Typer


#: Command modules, in help order.  Each defines ``register(groups: CommandGroups)``.
COMMAND_MODULES = (
    "radloop.app.cli_ingest",
    "radloop.app.cli_labeling",
    "radloop.app.cli_ssl",
    "radloop.app.cli_retrieval",
    "radloop.app.cli_bench",
    "radloop.app.cli_labelstudio",
    "radloop.app.cli_train",
    "radloop.app.cli_export",
    "radloop.app.cli_round",
    "radloop.app.cli_demo",
)


def _flags_without_type_in_help() -> None:
    """Rich help of typer 0.29 prints a type for every option, flags included (``--help  <bool>``), while its
    plain help (and click's) prints none for a flag or a counter: print none for those in rich help too."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - typer without its own option class
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "radloop_flags_untyped", False):
        return  # a typer without it (rich help asks click's metavar, flag-aware), or already done

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich.radloop_flags_untyped = True
    TyperOption.display_type_rich = display_type_rich


def build_app() -> typer.Typer:
    _flags_without_type_in_help()
    app = typer.Typer(name="radloop", no_args_is_help=True, add_completion=False,
                      help="Radiograph archive -> weak labels, self-supervised encoders, case search, "
                           "active learning with Label Studio, and fine-tuning.")
    groups = CommandGroups(
        root=app,
        bench=typer.Typer(no_args_is_help=True, help="Benchmarks: commands that print measured figures."),
        labelstudio=typer.Typer(no_args_is_help=True, help="Label Studio: create the workspace's project, connect "
                                                            "the ML backend, export a round's tasks."),
        round=typer.Typer(no_args_is_help=True, help="Active-learning rounds: start, push, pull, status, finish."),
        models=typer.Typer(no_args_is_help=True, help="Model registry: list, set current, roll back."),
    )
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:  # that part is not installed in this build
                continue
            raise
        module.register(groups)
    app.add_typer(groups.bench, name="bench")
    app.add_typer(groups.labelstudio, name="ls")
    app.add_typer(groups.round, name="round")
    app.add_typer(groups.models, name="models")
    return app


def _escape_unencodable(error: UnicodeError):
    """The bytes of an undecodable file name as they came (surrogateescape), any other character the stream's
    encoding lacks as an escape (``\\xe9``)."""
    try:
        return codecs.lookup_error("surrogateescape")(error)
    except UnicodeError:
        return codecs.lookup_error("backslashreplace")(error)


def _never_fail_on_encoding() -> None:
    """Print what an ASCII or Latin-1 stream cannot encode as escapes instead of failing with UnicodeEncodeError:
    with ``LC_ALL=C`` and UTF-8 mode off (``PYTHONUTF8=0``), a workspace path or report text with an accent
    printed a traceback.  UTF-8 streams (the usual case, and Python's default under ``LANG=C``) are left alone."""
    codecs.register_error("radloop-escape", _escape_unencodable)
    for stream in (sys.stdout, sys.stderr):
        encoding = codecs.lookup(getattr(stream, "encoding", None) or "utf-8").name
        if encoding != "utf-8" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="radloop-escape")
            except (ValueError, OSError):  # a closed or detached stream: nothing will be printed there anyway
                pass


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def main() -> None:
    _never_fail_on_encoding()
    logging.basicConfig(level=os.environ.get("RADLOOP_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("lightning.pytorch", "lightning.fabric"):  # they print through their own handler already
        logging.getLogger(name).propagate = False
    # Pillow logs image metadata (EXIF ImageDescription / Artist, PNG text: often a patient's name) at DEBUG
    logging.getLogger("PIL").setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
    # httpx logs every request's full URL at INFO: signed image URLs, Label Studio `?d=` local-file paths
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    if not _stderr_is_terminal():  # a log file or pipe: no bars, so long training says where it is once a minute
        from radloop.ssl import trainer_progress

        trainer_progress.LOG_LINES_WITHOUT_BAR = 60.0
    try:
        build_app()()
    except OSError as error:
        # a path the user gave that cannot be read or written (missing folder, a file where a folder belongs,
        # no permission): one clear line, not a traceback; RADLOOP_DEBUG=1 shows the traceback
        if not getattr(error, "filename", None) or os.environ.get("RADLOOP_DEBUG"):
            raise
        from radloop.app.options import console

        console.print(f"error: {error.strerror or error}: {error.filename}", markup=False, highlight=False,
                      soft_wrap=True)  # one line however narrow the terminal: scripts grep it
        raise SystemExit(2) from None
    except Exception as error:
        line = _database_failure(error)
        if line is None or os.environ.get("RADLOOP_DEBUG"):
            raise
        from radloop.app.options import console

        console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


#: what the catalog database said (SQLite / PostgreSQL) -> what to do about it
_DATABASE_HINTS = (
    (("disk is full", "No space left"), "the disk holding the catalog is full: free space and run the same command "
                                        "again (nothing of the failed write was kept)"),
    (("readonly database", "read-only"), "the catalog cannot be written here (read-only): run this command where "
                                         "the workspace is writable"),
    (("database is locked", "could not obtain lock", "lock timeout"),
     "another process held the catalog's write lock too long: run the same command again (or when the other "
     "radloop command has finished)"),
    (("could not connect", "Connection refused", "server closed the connection", "unable to open database"),
     "the catalog database cannot be reached: check RADLOOP_DATABASE_URL / the workspace folder and that the "
     "server runs"),
)


def _database_failure(error: BaseException) -> str | None:
    """One line for a database error the user's environment causes (disk full, read-only, a lock held too long,
    the server down): the driver's first line, without the SQL statement and its values, and what to do; None for
    any other error (a bug: its traceback is wanted)."""
    from sqlalchemy.exc import OperationalError

    if not isinstance(error, OperationalError):
        return None
    said = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else ""
    for needles, hint in _DATABASE_HINTS:
        if any(needle.lower() in said.lower() for needle in needles):
            return f"catalog database: {said}: {hint}"
    return None


if __name__ == "__main__":
    main()
