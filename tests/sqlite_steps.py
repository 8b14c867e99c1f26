"""The work a catalog call does, measured as SQLite virtual-machine steps (steady where wall time is not)."""

from __future__ import annotations

from sqlalchemy import event


def sqlite_steps(catalog, run, every: int = 10) -> int:
    """SQLite virtual-machine steps (in units of ``every``) that ``run`` makes the catalog take: the work done."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def watch(connection, *_args):
        connection.connection.dbapi_connection.set_progress_handler(count, every)

    event.listen(catalog.engine, "before_cursor_execute", watch)
    try:
        run()
    finally:
        event.remove(catalog.engine, "before_cursor_execute", watch)
        catalog.engine.dispose()  # no connection keeps the handler
    return steps[0]
