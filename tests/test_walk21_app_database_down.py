"""The app on a server catalog that cannot be reached says so and what to check (the database server, the
URL), not "upgrade radloop / rebuild the workspace", which fits a damaged SQLite file, not a server that is down."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("psycopg")

from radloop.app import next_steps  # noqa: E402
from test_app_pages import open_page, texts  # noqa: E402


@pytest.mark.parametrize("page", ["page_overview.py", "page_search.py"])
def test_unreachable_database_server_says_to_check_the_server(tmp_path, env, page):
    root = tmp_path / "ws"
    root.mkdir()
    env.setenv("RADLOOP_DATABASE_URL", "postgresql+psycopg://radloop:secret-word@127.0.0.1:9/radloop")
    app = open_page(root, page, env)
    assert "cannot be reached" in app.error[0].value
    assert next_steps.DATABASE_UNREACHABLE in texts(app)
    assert next_steps.BROKEN_CATALOG not in texts(app)
    assert "secret-word" not in texts(app)
