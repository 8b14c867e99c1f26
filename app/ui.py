"""Streamlit helpers shared by the pages: the workspace, the cached catalog, and safe rendering.

Pages call :func:`require_catalog` first: in a workspace without a catalog it shows what to run and
stops the page.  :func:`safe_page` turns any unexpected error into a short message plus the next step,
so users never see a traceback (the full error goes to the server log).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from radloop.app import next_steps, views
from radloop.core.catalog import Catalog
from radloop.core.workspace import Workspace, resolve_workspace

__all__ = ["workspace", "require_catalog", "safe_page", "next_step", "cached_catalog", "sidebar_workspace",
           "keep_widget_state", "widget_default", "kept_choice", "table", "shown_missing", "case_image",
           "PAGE_WIDGET_PREFIXES", "MISSING", "REGION_COLUMNS"]

logger = logging.getLogger("radloop.app")


def workspace() -> Workspace:
    """The app's workspace: ``$RADLOOP_WORKSPACE``, else the CLI's default ``./radloop-workspace``."""
    return resolve_workspace()


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_catalog(root: str, database_url: str, created: str) -> Catalog:
    """One catalog handle per workspace for the whole server (a failed open is not cached).

    ``created`` (when the catalog's first migration ran) makes a re-created workspace, e.g. after a fresh
    ``radloop demo``, open a new handle instead of reading the deleted file through the old one.
    """
    return views.open_catalog(resolve_workspace(root))


def _catalog_created(ws: Workspace) -> str | None:
    """When the SQLite catalog was created ("" for a server database), None when there is no catalog file."""
    if not ws.database_url.startswith("sqlite"):
        return ""
    path = Path(ws.database_url.split("sqlite:///", 1)[-1])
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)) as connection:
            row = connection.execute("SELECT applied_at FROM schema_version WHERE version = 1").fetchone()
    except sqlite3.Error:  # not migrated yet (being created right now) or not a catalog
        return f"inode:{path.stat().st_ino}"
    return str(row[0]) if row else f"inode:{path.stat().st_ino}"


def open_catalog_or_none(ws: Workspace) -> Catalog | None:
    """The workspace's catalog, or None when it has none yet."""
    created = _catalog_created(ws)
    if created is None:
        return None
    try:
        return cached_catalog(str(ws.root), ws.database_url, created)
    except FileNotFoundError:
        return None


def next_step(message: str) -> None:
    """Show what the user should do next."""
    st.info(message, icon=":material/arrow_forward:")


def require_catalog(*, need_images: bool = False, need_reports: bool = False) -> Catalog:
    """The catalog, or show the next step and stop the page when the workspace has no (relevant) data."""
    ws = workspace()
    try:
        catalog = open_catalog_or_none(ws)
        counts = catalog.counts() if catalog is not None else None
    except Exception as error:  # noqa: BLE001 - a broken or newer catalog: say so instead of a traceback
        logger.exception("cannot open the catalog of %s", ws.root)
        if _server_unreachable(ws, error):
            st.error(f"The catalog database server cannot be reached: {_first_line(error)}")
            next_step(next_steps.DATABASE_UNREACHABLE)
        else:
            st.error(f"The catalog in `{ws.root}` cannot be opened: {type(error).__name__}: {error}")
            next_step(next_steps.BROKEN_CATALOG)
        st.stop()
    if catalog is None:
        st.warning(f"No radloop catalog in `{ws.root}`.")
        next_step(views.NEXT_STEP_EMPTY + " Point the app at another workspace with "
                  "`RADLOOP_WORKSPACE=/path/to/workspace streamlit run app/main.py`.")
        st.stop()
    if counts["images"] + counts["reports"] == 0:
        st.warning(f"The workspace `{ws.root}` has no images or reports yet.")
        next_step(views.NEXT_STEP_EMPTY)
        st.stop()
    if need_images and not counts["images"]:
        st.warning(f"The workspace `{ws.root}` has reports but no images yet.")
        next_step(next_steps.NO_IMAGES)
        st.stop()
    if need_reports and not counts["reports"]:
        st.warning(f"The workspace `{ws.root}` has images but no reports yet.")
        next_step(next_steps.NO_REPORTS)
        st.stop()
    return catalog


def _server_unreachable(ws: Workspace, error: Exception) -> bool:
    """True when ``error`` says a server catalog (PostgreSQL) did not answer: no connection, not a bad file."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    return not ws.database_url.startswith("sqlite") and isinstance(error, (OperationalError, InterfaceError))


def _first_line(error: Exception) -> str:
    """The driver's own first line ("connection to server at … failed: Connection refused"), without
    SQLAlchemy's SQL echo and background link."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


#: How a table cell without a value reads (Streamlit's own default is a grey "None", read as the text "None").
MISSING = "—"
#: Columns naming a body region: a missing one reads ``unknown``, as in the pickers, tiles and the overview.
REGION_COLUMNS = ("body_region", "region")


def shown_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as a table shows it: a missing region as ``unknown``, an empty text cell as :data:`MISSING` (as
    :func:`table` shows a null one); numbers and dates keep their types."""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype != object and not pd.api.types.is_string_dtype(shown[column].dtype):
            continue
        values = shown[column].astype(object)
        empty = values.isna() | values.map(lambda value: isinstance(value, str) and not value.strip())
        if column in REGION_COLUMNS:
            shown[column] = values.where(~empty, views.UNKNOWN_REGION)
        elif empty.any():
            shown[column] = values.where(~empty | values.isna(), MISSING)
    return shown


def table(frame: pd.DataFrame, **options: Any) -> None:
    """``st.dataframe`` of ``frame`` without its index, missing values as :data:`MISSING` (see
    :func:`shown_missing`)."""
    st.dataframe(shown_missing(frame), hide_index=True, width="stretch", placeholder=MISSING, **options)


def safe_page(render: Callable[[], Any]) -> Callable[[], Any]:
    """Decorate a page's ``render``: unexpected errors become a message, not a traceback."""

    @functools.wraps(render)
    def wrapper() -> Any:
        try:
            return render()
        except Exception as error:  # noqa: BLE001 - the page must never show a traceback
            if type(error).__module__.startswith("streamlit"):  # st.stop / st.rerun control flow
                raise
            logger.exception("page %s failed", render.__code__.co_filename)
            st.error(f"This page could not be shown: {type(error).__name__}: {error}")
            next_step(next_steps.PAGE_FAILED)
            return None

    return wrapper


def sidebar_workspace() -> None:
    """Sidebar: which workspace the app reads and its main counts."""
    ws = workspace()
    with st.sidebar:
        st.caption(f"Workspace: `{ws.root}`")
        try:
            catalog = open_catalog_or_none(ws)
            counts = catalog.counts() if catalog is not None else None
        except Exception:  # noqa: BLE001 - the page itself explains the problem
            st.caption("the catalog cannot be opened")
            return
        if catalog is None:
            st.caption("no catalog yet")
            return
        st.caption(" · ".join(f"{counts[name]:,} {name.replace('_', ' ')}"  # 3,639 as on the pages
                              for name in ("images", "reports", "annotations", "rounds")))


#: The widget keys of each page (by its url path): every key starting with the prefix.  Streamlit forgets the value
#: of a widget that a run did not draw, so a visit to another page reset the case search's filters, the report
#: picked, the queue's round, ...
PAGE_WIDGET_PREFIXES = {"search": "search_", "reports": "reports_", "queue": "queue_", "rounds": "round_",
                        "models": "models_"}
#: Widgets whose value Session State may not set (Streamlit refuses it): they start empty again.
UNSETTABLE_KEYS = frozenset({"search_upload"})
_PREFIXES = tuple(PAGE_WIDGET_PREFIXES.values())


def keep_widget_state() -> None:
    """Keep the widget values of every page across visits to the others.

    Streamlit's documented recipe for ``st.navigation`` apps ("interrupt the widget clean-up", run in the
    entrypoint): a value re-saved in a run is not dropped at its end.  It is re-saved on every run, the shown
    page's too: the browser's widgets start from their defaults on every page change, and only a value set
    through Session State in the run that draws a widget is sent to them (re-saving on the entering run only
    left the box at "all" while the search ran on "elbow", because the browser reruns the page once more).
    """
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith(_PREFIXES) and key not in UNSETTABLE_KEYS:
            st.session_state[key] = st.session_state[key]


def widget_default(key: str, value: Any, options: list | None = None) -> None:
    """Start widget ``key`` at ``value`` through Session State (kept while it is one of ``options``, when given).

    A widget drawn with its own default (``value=``, ``index=``) whose key :func:`keep_widget_state` re-saved made
    Streamlit log "created with a default value but also had its value set via the Session State API" with a
    stack trace on the server; a widget started here is drawn without one.
    """
    if key not in st.session_state or (options is not None and st.session_state[key] not in options):
        st.session_state[key] = value


def kept_choice(key: str, options: list, describe: Callable[[Any], str], *, context: Any = None) -> None:
    """Before drawing selectbox ``key``: when the value it kept (a case, a report, a round picked earlier) is no
    longer among ``options`` because the workspace changed under the page (another session, the CLI, a nightly
    ingest or relabel), say so instead of silently showing the first option in its place.

    ``context``: what ``options`` were listed for (the page's filter values); when the user changed it, a pick that
    left the list is the filter's doing and goes without a word.  ``describe(value)``: how the message names a
    value ("case `I-…`").
    """
    seen_key = f"_kept_choice_context_{key}"
    changed_filters = st.session_state.get(seen_key, context) != context
    st.session_state[seen_key] = context
    if key not in st.session_state or st.session_state[key] in options:
        return
    gone = st.session_state[key]
    # set, not dropped: only a value set through Session State is sent to the browser's widget (a dropped one left
    # the box showing the old pick while the page used the first option)
    if options:
        st.session_state[key] = options[0]
    else:
        del st.session_state[key]
    if changed_filters or gone is None:
        return
    replacement = f"showing {describe(options[0])} instead" if options else "nothing is left to show"
    named = describe(gone)
    st.warning(f"{named[:1].upper()}{named[1:]} is no longer listed: the workspace changed since this page was drawn "
               f"(another session or a command such as an ingest, a relabel or a round); {replacement}.",
               icon=":material/update:")


def case_image(card: views.CaseCard, alt: str) -> bool:
    """Show a case's thumbnail with its finding boxes outlined and a caption saying how many of what ("2 fracture
    boxes (red)"); a case without boxes shows the thumbnail file as stored.  False when it has no thumbnail."""
    from radloop.app.boxes_view import boxed_thumbnail, boxes_caption

    described = boxes_caption(card.boxes)
    if card.thumb is None:
        if described:
            st.caption(f"{described} (not drawn: no thumbnail)")
        return False
    drawn = boxed_thumbnail(card.thumb, card.boxes, card.width, card.height)
    if drawn is None:
        st.image(str(card.thumb), width="stretch", alt=alt)  # id, region and side for a screen reader
        if described:
            st.caption(f"{described} (not drawn: the thumbnail could not be read)")
        return True
    # PNG: a lossless outline (JPEG would smear the box's colour into the radiograph)
    st.image(drawn, width="stretch", caption=boxes_caption(card.boxes, colours=True), output_format="PNG",
             alt=f"{alt}; {described} outlined")
    return True
