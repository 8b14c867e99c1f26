"""Walk 23h: case search while the workspace changes under an open page: a new current encoder (set between the
page's check and its search), a deleted index, a deleted thumbnail.  Embeddings are random vectors written as
`radloop embed` writes them (no encoder is run: case queries read stored vectors)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sqlalchemy import select, update

pytest.importorskip("streamlit")
pytest.importorskip("faiss")

from app_workspace import real_app_workspace  # noqa: E402
from radloop.core.catalog import Catalog  # noqa: E402
from radloop.core.embeddings import write_shard  # noqa: E402
from radloop.core.schema import Image, Model  # noqa: E402
from test_app_pages import open_page, texts  # noqa: E402
from test_walk23h_app_changes import ENCODER, other_process  # noqa: E402

SECOND = "enc-walk23h-second"


@pytest.fixture
def workspace(tmp_path_factory, test_catalog_url):
    """The app fixture, every image embedded by the current encoder and (all but two) by a second, registered one."""
    built = real_app_workspace(tmp_path_factory, test_catalog_url, "walk23h-search")
    catalog = Catalog.open(built, create=False)
    with catalog.session() as session:
        ids = sorted(session.scalars(select(Image.id)))
        session.add(Model(version=SECOND, kind="encoder", task="encoder", path="models/enc2", is_current=False))
    rng = np.random.default_rng(23)
    write_shard(catalog, ENCODER, ids, rng.normal(size=(len(ids), 16)).astype(np.float32), normalized=False)
    write_shard(catalog, SECOND, ids[2:], rng.normal(size=(len(ids) - 2, 16)).astype(np.float32), normalized=False)
    catalog.dispose()
    return built



def _set_current(session, version: str) -> None:
    session.execute(update(Model).where(Model.kind == "encoder").values(is_current=Model.version == version))


def _ids(outcome) -> list[str]:
    assert outcome.message is None, outcome.message
    return [card.image_id for card in outcome.neighbours]


def test_a_new_current_encoder_during_the_search_is_said_not_shown_under_the_old_name(workspace):
    """A nightly job sets another current encoder between the page's check (its caption names the encoder) and the
    search: the new encoder's neighbours are not shown under the name of the one checked; the outcome says so."""
    from radloop.app import views_search

    catalog = Catalog.open(workspace, create=False)
    try:
        with catalog.session() as session:
            query = sorted(session.scalars(select(Image.id)))[3]
        readiness = views_search.search_readiness(catalog)
        assert readiness.encoder_version == ENCODER
        named = _ids(views_search.find_similar(catalog, case_id=query, k=4))
        other_process(workspace, lambda session: _set_current(session, SECOND))
        assert _ids(views_search.find_similar(catalog, case_id=query, k=4)) != named  # the encoders disagree
        pinned = views_search.find_similar(catalog, case_id=query, k=4, readiness=readiness)
        assert pinned.message == views_search.encoder_changed_message(ENCODER, SECOND) and not pinned.neighbours
        assert _ids(views_search.find_similar(catalog, case_id=query, k=4)) != named  # the next search: the new one
    finally:
        catalog.dispose()


def test_search_page_after_a_new_encoder_a_deleted_index_and_thumbnail(workspace, env):
    app = open_page(workspace, "page_search.py", env)
    assert f"Encoder `{ENCODER}`" in texts(app) and not app.exception
    first = [item.value for item in app.markdown if str(item.value).startswith("**I-")]
    assert len(first) > 2, texts(app)
    # another process: the index folder and a neighbour's thumbnail are deleted
    shutil.rmtree(workspace.indexes_dir)
    neighbour = first[1].split("**")[1]
    catalog = Catalog.open(workspace, create=False)
    with catalog.session() as session:
        thumb = session.get(Image, neighbour).thumb_path
    catalog.dispose()
    workspace.absolute(thumb).unlink()
    app.run()
    assert not app.exception and not app.error, texts(app)
    assert [item.value for item in app.markdown if str(item.value).startswith("**I-")] == first  # index rebuilt
    assert "(no thumbnail)" in texts(app)
    # a new current encoder, two images not embedded by it: the page names it and searches its vectors only
    other_process(workspace, lambda session: _set_current(session, SECOND))
    app.run()
    assert not app.exception and f"Encoder `{SECOND}`" in texts(app), texts(app)
    shown = texts(app)
    assert "distance" in shown and ENCODER not in shown.split("Nearest cases", 1)[-1]
