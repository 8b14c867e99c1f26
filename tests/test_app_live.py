"""The app driving the real round scripts and the real case search on a small workspace with an encoder.

The encoder is a randomly initialised ResNet-18 at 64 px (the registry's baseline architecture), so the
test checks the wiring (progress, catalog state, neighbour grid), not the quality of the embeddings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("timm")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_workspace import build_app_workspace  # noqa: E402
from conftest import DATA_ROOT, data_path  # noqa: E402
from radloop.core.vocabulary import BODY_REGIONS  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture(scope="module")
def live_workspace(tmp_path_factory):
    """The app test workspace (no open round) plus a registered random encoder."""
    import torch

    from radloop.core.catalog import Catalog
    from radloop.core.registry import register_model
    from radloop.ssl.encoders import build_backbone, save_encoder

    data_path("bone_fracture_xray_roboflow_v4", "yolo", "train")
    data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    workspace = build_app_workspace(tmp_path_factory.mktemp("live") / "ws", DATA_ROOT, negatives=4,
                                    open_round=False, registry=False)
    torch.manual_seed(0)
    folder = workspace.models_dir / "encoder-random"
    bundle = save_encoder(build_backbone("resnet18", 64), folder, timm_name="resnet18", image_size=64,
                          method="random")
    catalog = Catalog.open(workspace)
    register_model(catalog, bundle.config.version, "encoder", "encoder", folder, make_current=True)
    catalog.dispose()
    return workspace, bundle.config.version


@pytest.fixture
def app(live_workspace, monkeypatch):
    workspace, _ = live_workspace
    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    monkeypatch.setenv("RADLOOP_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    test = AppTest.from_file(MAIN, default_timeout=120)
    test.run()
    return test


def _metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_round_control_runs_a_simulated_round(app, live_workspace):
    pytest.importorskip("radloop.app.rounds")
    from sqlalchemy import select

    from radloop.core.catalog import Catalog
    from radloop.core.schema import Annotation, Round, Selection

    workspace, encoder_version = live_workspace
    app.switch_page("page_rounds.py").run()
    assert not app.exception, [item.value for item in app.exception]
    if not app.number_input:
        pytest.fail(f"round control shows no form: {[info.value for info in app.info]}")
    assert app.checkbox(key="round_simulate").value is True  # no Label Studio
    app.number_input(key="round_budget").set_value(2)
    app.button[0].click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    # the page reran after the step: its outcome is shown once, the header reads the rounds as they are now
    assert [success.value for success in app.success][-1] == "Starting round: done"
    assert {metric.label: metric.value for metric in app.metric}["State"] == "pushed"
    catalog = Catalog.open(workspace)
    try:
        with catalog.session() as session:
            round_ = session.scalars(select(Round).order_by(Round.number.desc())).first()
            assert round_.number == 3 and round_.state == "pushed" and round_.model_version == encoder_version
            assert len(session.scalars(select(Selection).where(Selection.round_id == round_.id)).all()) == 2
        assert (workspace.rounds_dir / "round-003" / "label_studio_tasks.json").is_file()

        # the next day, a fresh browser session: the open round (budget 2, not the form's default) resumes
        later = AppTest.from_file(MAIN, default_timeout=120)
        later.run()
        later.switch_page("page_rounds.py").run()
        assert later.button[0].label == "Resume round 3"
        later.button[0].click().run()
        assert not later.exception and not later.error, [error.value for error in later.error]
        assert [success.value for success in later.success][-1] == "Resuming round 3: done"
        assert "budget **2**" in "\n".join(str(markdown.value) for markdown in later.markdown)

        app.checkbox(key="round_finish_simulate").check()
        app.button[1].click().run()
        assert not app.exception and not app.error, [error.value for error in app.error]
        assert [success.value for success in app.success][-1] == "Finishing round: done"
        assert {metric.label: metric.value for metric in app.metric}["State"] == "finished"
        assert app.button[1].disabled  # nothing left to finish
        with catalog.session() as session:
            round_ = session.get(Round, round_.id)
            assert round_.state == "finished" and round_.labels_spent == 2
            answers = session.scalars(select(Annotation).where(Annotation.round_id == round_.id)).all()
            assert {answer.source for answer in answers} == {"simulate"}
    finally:
        catalog.dispose()
    app.switch_page("page_queue.py").run()
    assert _metrics(app)["Never answered"] == "0" and _metrics(app)["State"] == "finished"
    assert "Selected by round 3" in "\n".join(str(subheader.value) for subheader in app.subheader)


def test_case_search_finds_neighbours_with_the_real_index(app, live_workspace):
    retrieval = pytest.importorskip("radloop.retrieval")
    if not hasattr(retrieval, "search_cases"):
        pytest.skip("radloop.retrieval.search_cases is not available in this build yet")
    from radloop.core.catalog import Catalog
    from radloop.ssl.embed import embed_catalog
    from radloop.ssl.encoder_adapter import encoder_from_registry

    workspace, encoder_version = live_workspace
    catalog = Catalog.open(workspace)
    try:
        embed_catalog(catalog, encoder_from_registry(catalog, encoder_version), progress=False)
        from radloop.retrieval.index import IndexManager, index_folder

        IndexManager.from_catalog(catalog, encoder_version).save(index_folder(workspace, encoder_version))
    finally:
        catalog.dispose()
    app.switch_page("page_search.py").run()
    app.slider(key="search_k").set_value(3).run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    captions = "\n".join(str(markdown.value) for markdown in app.markdown)
    query = app.selectbox(key="search_case").value
    assert captions.count("· distance") == 3 and f"**{query}** · distance" not in captions
    assert len(app.image) == 1 + 3
    # Neighbours restricted to the query's body region (the fixture has two elbow images).
    app.selectbox(key="search_region").set_value("elbow").run()
    app.checkbox(key="search_same_region").check().run()
    regions = [str(caption.value).split(" · ")[0] for caption in app.caption
               if str(caption.value).split(" · ")[0] in BODY_REGIONS]
    assert regions == ["elbow", "elbow"]  # the query tile and its only same-region neighbour
    assert not app.error
    # Images without a body region: "unknown" restricts the neighbours to them too (the box was disabled for it)
    app.checkbox(key="search_same_region").uncheck().run()
    assert "unknown" in app.selectbox(key="search_region").options
    app.selectbox(key="search_region").set_value("unknown").run()
    assert not app.checkbox(key="search_same_region").disabled
    app.checkbox(key="search_same_region").check().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    shown = [str(caption.value).split(" · ")[0] for caption in app.caption]
    tiles = [region for region in shown if region in BODY_REGIONS or region == "unknown region"]
    assert len(tiles) >= 2 and set(tiles) == {"unknown region"}, shown  # the query tile and its neighbours
