"""Every page of the Streamlit app under ``streamlit.testing`` AppTest, on a small real workspace and an empty one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_workspace import real_app_workspace  # noqa: E402
from conftest import data_path  # noqa: E402
from radloop.app import next_steps  # noqa: E402
from radloop.core.workspace import Workspace  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
PAGES = ["page_overview.py", "page_search.py", "page_reports.py", "page_queue.py", "page_rounds.py",
         "page_models.py"]
TIMEOUT = 60


@pytest.fixture(scope="module")
def app_workspace(tmp_path_factory, test_catalog_url):
    return real_app_workspace(tmp_path_factory, test_catalog_url, "app")



def open_page(workspace: Path | Workspace, page: str, env) -> AppTest:
    """Open ``page`` on a workspace folder (catalog URL from the environment) or a Workspace (its own URL)."""
    if isinstance(workspace, Workspace):
        env.setenv("RADLOOP_DATABASE_URL", workspace.database_url)
        workspace = workspace.root
    env.setenv("RADLOOP_WORKSPACE", str(workspace))
    return run_page(page)


def run_page(page: str) -> AppTest:
    """Start the app as the environment sets it up, go to ``page`` and check that no exception was raised."""
    app = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    app.run()
    if page != PAGES[0]:
        app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def texts(app: AppTest) -> str:
    """Everything the page wrote, as one string (markdown, captions, alerts, titles, metrics)."""
    parts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
        parts += [str(element.value) for element in getattr(app, kind)]
    parts += [f"{metric.label}={metric.value}" for metric in app.metric]
    return "\n".join(parts)


def _add_chest_image(catalog) -> None:
    """Catalogue the real chest radiograph (test split): an image, no report, no encoder."""
    from app_workspace import _add_image

    with catalog.session() as session:
        _add_image(session, catalog.workspace, data_path("iu_xray_images", "CXR3_IM-1384-1001.png"),
                   dataset="iu_xray", body_region="chest", split="test", meta={})


def test_app_workspace_catalog_is_the_test_database(app_workspace):
    """Under ``make test-postgres`` the pages below read a PostgreSQL catalog, else the workspace's SQLite file."""
    postgres = os.environ.get("RADLOOP_TEST_DATABASE") == "postgres"
    assert app_workspace.database_url.startswith("postgresql" if postgres else "sqlite:///")
    assert (app_workspace.root / "catalog.sqlite").exists() is not postgres


def test_overview_counts_coverage_and_learning_curve(app_workspace, env):
    app = open_page(app_workspace, "page_overview.py", env)
    assert app.title[0].value == "Overview"
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Images"] == "9" and metrics["Reports"] == "6" and metrics["Rounds"] == "2"
    regions = app.dataframe[0].value
    assert {"chest", "elbow"} <= set(regions["body_region"])
    assert regions["images"].sum() == 9
    findings = app.dataframe[1].value.set_index("finding")
    assert findings.loc["fracture", "expert_positive"] == 8
    assert findings[["positive", "negative"]].to_numpy().sum() > 0
    assert metrics["Reports labelled"] == "6 / 6"
    assert "app-test-fixture" in texts(app)
    charts = app.get("vega_lite_chart")
    assert len(charts) == 2  # regions bar chart + learning curve
    assert not app.error


def test_search_page_says_what_to_do_without_embeddings(app_workspace, env):
    app = open_page(app_workspace, "page_search.py", env)
    assert app.title[0].value == "Case search"
    # Encoder registered, nothing embedded yet: the command names the encoder's version.
    assert next_steps.no_embeddings("enc-simclr-resnet18-0a1b2c3d") in texts(app)
    assert "radloop embed --encoder enc-simclr-resnet18-0a1b2c3d" in texts(app)
    assert app.selectbox(key="search_case").options  # cases to pick from
    assert app.image, "the picked query case shows its thumbnail"
    assert not app.error


def test_search_page_upload_and_neighbour_grid(app_workspace, env):
    """Upload a real radiograph; the grid shows the neighbours that search_cases returns, query excluded."""
    import radloop.retrieval
    from radloop.app import views_search

    picked = sorted(path for path in (app_workspace.root / "thumbs").glob("*.png"))
    ids = [path.stem for path in picked]
    calls = []

    def search_cases(catalog, *, image=None, case_id=None, k=8, filters=None):
        calls.append({"image": None if image is None else image.shape, "case_id": case_id, "k": k})
        return [{"image_id": image_id, "distance": 0.1 * rank} for rank, image_id in enumerate(ids)][:k]

    env.setattr(radloop.retrieval, "search_cases", search_cases, raising=False)
    env.setattr(views_search, "search_readiness", lambda catalog: views_search.SearchReadiness("enc-x", 9, None))
    app = open_page(app_workspace, "page_search.py", env)
    assert calls[-1]["case_id"] == app.selectbox(key="search_case").value
    app.slider(key="search_k").set_value(4).run()
    query = app.selectbox(key="search_case").value
    captions = texts(app)
    assert calls[-1] == {"image": None, "case_id": query, "k": 5}
    shown = [image_id for image_id in ids if f"**{image_id}** · distance" in captions]
    assert len(shown) == 4 and query not in shown
    assert len(app.image) == 1 + 4  # query tile + neighbour grid
    source = data_path("bone_fracture_xray_roboflow_v4", "yolo", "train", "images")
    jpeg = sorted(source.glob("*.jpg"))[-1]
    app.file_uploader(key="search_upload").upload(jpeg.name, jpeg.read_bytes(), "image/jpeg").run()
    assert calls[-1]["case_id"] is None and len(calls[-1]["image"]) == 2  # a 2-D grey array
    assert not app.error and not app.exception


def test_search_page_rejects_a_broken_upload(app_workspace, env):
    app = open_page(app_workspace, "page_search.py", env)
    app.file_uploader(key="search_upload").upload("scan.png", b"not a png at all", "image/png").run()
    assert "Could not read 'scan.png'" in app.error[0].value
    assert not app.exception


def test_search_page_without_encoder(catalog, env):
    from app_workspace import _add_image

    source = data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    with catalog.session() as session:
        _add_image(session, catalog.workspace, source, dataset="iu_xray", body_region="chest", split="test", meta={})
    app = open_page(catalog.workspace.root, "page_search.py", env)
    assert "No encoder is registered" in texts(app)
    assert next_steps.COMMANDS["pretrain"] in texts(app)
    assert not app.error


def test_report_explorer_highlights_mentions(app_workspace, env):
    app = open_page(app_workspace, "page_reports.py", env)
    assert app.title[0].value == "Report explorer"
    if _labeler_available():  # default: the live rules, with their ConText modifiers
        html = "\n".join(element.proto.body for element in app.get("html"))
        assert '<mark class="radloop-mention radloop-negative"' in html
        live = app.dataframe[0].value
        assert "NEGATED_EXISTENCE" in set(", ".join(live["modifiers"]).split(", "))
        assert "Live rules" in texts(app)
        # the fixture's weak labels carry another rules version than the live rules: the page says so
        assert "The rules changed since" in texts(app) and "app-test-fixture" in texts(app)
    else:
        assert "report labeller is not available" in texts(app)
    app.radio(key="reports_source").set_value("stored weak labels").run()
    html = "\n".join(element.proto.body for element in app.get("html"))
    assert '<mark class="radloop-mention radloop-negative"' in html
    mentions = app.dataframe[0].value
    assert {"finding", "status", "modifiers", "start", "end"} <= set(mentions.columns)
    assert set(mentions["status"]) <= {"positive", "negative", "uncertain"}
    # Filter: only reports with a negative pneumothorax mention remain selectable.
    app.selectbox(key="reports_finding").set_value("pneumothorax").run()
    app.selectbox(key="reports_status").set_value("negative").run()
    options = app.selectbox(key="reports_id").options
    assert options and all("pneumothorax" in option for option in options)
    assert not app.exception and not app.error


def _labeler_available() -> bool:
    try:
        from radloop.labeling import ReportLabeler  # noqa: F401
    except ImportError:
        return False
    return True


def test_selection_queue_shows_scores_and_reasons(app_workspace, env):
    app = open_page(app_workspace, "page_queue.py", env)
    assert app.title[0].value == "Selection queue"
    items = app.dataframe[0].value
    assert list(items["rank"]) == [1, 2, 3]
    assert items["score"].is_monotonic_decreasing
    assert items["reason"].str.contains("decision boundary").all()
    assert {metric.label: metric.value for metric in app.metric}["Awaiting labels"] == "3"
    assert "cold start with 'typiclust'" in texts(app)
    assert str(app_workspace.root / "rounds/round-002/label_studio_tasks.json") in texts(app)
    assert len(app.image) == 3
    assert not app.error


def test_round_control_without_label_studio(app_workspace, env):
    app = open_page(app_workspace, "page_rounds.py", env)
    assert app.title[0].value == "Round control"
    page = texts(app)
    assert "Label Studio is not reachable" in page and "Simulate" in page
    assert {metric.label: metric.value for metric in app.metric}["State"] == "selected"
    assert app.button[0].label == "Resume round 2"  # the open round resumes, no second one starts
    assert not app.error


def test_round_control_without_encoder(catalog, env):
    _add_chest_image(catalog)
    app = open_page(catalog.workspace.root, "page_rounds.py", env)
    assert next_steps.NO_ENCODER_FOR_ROUNDS in texts(app)
    assert app.button[0].disabled  # "Start round" waits for an encoder
    assert app.button[1].disabled and "No round is open" in texts(app)  # nothing to finish
    assert not app.error


def test_models_page_lists_versions_and_metrics(app_workspace, env):
    app = open_page(app_workspace, "page_models.py", env)
    assert app.title[0].value == "Models"
    models = app.dataframe[0].value
    assert list(models["version"]) == ["findings-probe-r2", "findings-probe-r1", "enc-simclr-resnet18-0a1b2c3d"]
    assert {"metric:auroc", "metric:fracture.auroc"} <= set(models.columns)
    app.selectbox(key="models_task").set_value("findings").run()
    assert len(app.dataframe[0].value) == 2
    assert not app.error


@pytest.mark.parametrize("page", PAGES)
def test_empty_workspace_says_what_to_do(tmp_path, env, page):
    app = open_page(tmp_path / "nothing-here", page, env)
    page_text = texts(app)
    assert "No radloop catalog" in page_text and "radloop demo" in page_text
    assert not (tmp_path / "nothing-here" / "catalog.sqlite").exists(), "the app must not create a catalog"
    assert not app.error


def test_recreated_workspace_is_read_afresh(tmp_path, env):
    """`radloop demo` deletes and rebuilds its workspace: a running app must not keep reading the old file."""
    import shutil
    import time

    from app_workspace import _add_image
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace

    sources = sorted(data_path("bone_fracture_xray_roboflow_v4", "yolo", "train", "images").glob("*.jpg"))[:3]
    root = tmp_path / "ws"

    def build(count: int) -> None:
        catalog = Catalog.open(resolve_workspace(root))
        with catalog.session() as session:
            for source in sources[:count]:
                _add_image(session, catalog.workspace, source, dataset="t", body_region="elbow", split="train",
                           meta={})
        catalog.dispose()

    build(1)
    app = open_page(root, "page_overview.py", env)
    assert {metric.label: metric.value for metric in app.metric}["Images"] == "1"
    shutil.rmtree(root)
    time.sleep(0.01)  # a different creation time for the new catalog
    build(3)
    app.run()
    assert {metric.label: metric.value for metric in app.metric}["Images"] == "3"


@pytest.mark.parametrize("page", PAGES)
def test_catalog_without_rows_says_what_to_do(catalog, env, page):
    app = open_page(catalog.workspace.root, page, env)
    assert "has no images or reports yet" in texts(app) and "radloop demo" in texts(app)
    assert not app.error


def test_images_without_reports_and_reports_without_images(catalog, env):
    _add_chest_image(catalog)
    app = open_page(catalog.workspace.root, "page_reports.py", env)
    assert "has images but no reports yet" in texts(app)
    assert next_steps.COMMANDS["ingest_reports"] in texts(app)
    overview = open_page(catalog.workspace.root, "page_overview.py", env)
    assert {metric.label: metric.value for metric in overview.metric}["Images"] == "1"
    assert next_steps.NO_ROUND in texts(overview)
    assert not app.error and not overview.error


@pytest.mark.parametrize("page", ["page_overview.py", "page_search.py"])
def test_damaged_catalog_says_what_to_do(tmp_path, env, page):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "catalog.sqlite").write_bytes(b"this is not a SQLite database" * 100)
    app = open_page(root, page, env)
    assert "cannot be opened" in app.error[0].value
    assert next_steps.BROKEN_CATALOG in texts(app)
    assert not app.exception


def test_page_error_is_a_message_not_a_traceback(app_workspace, env):
    from radloop.app import views

    def broken(catalog):
        raise KeyError("weak_labels")

    env.setattr(views, "region_counts", broken)
    app = open_page(app_workspace, "page_overview.py", env)
    assert "could not be shown" in app.error[0].value
    assert not app.exception


def test_every_page_on_a_workspace_built_by_ingest(tmp_path, env):
    """The catalog as `radloop ingest` writes it (renders, thumbnails, boxes, reports), not hand-made rows."""
    import csv

    from radloop.core.catalog import Catalog
    from radloop.core.ingest import ingest_paths
    from radloop.core.workspace import resolve_workspace

    coco = data_path("bone_fracture_xray_roboflow_v4", "coco", "train_annotations.coco.json")
    images = data_path("bone_fracture_xray_roboflow_v4", "yolo", "train", "images")
    report_csv = tmp_path / "reports.csv"  # two short synthetic reports, written at test time
    with report_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["report_id", "text"])
        writer.writerow(["R-1", "FINDINGS: There is no evidence of pneumothorax. Small left pleural effusion."])
        writer.writerow(["R-2", "IMPRESSION: Normal chest x-XXXX."])
    catalog = Catalog.open(resolve_workspace(tmp_path / "ws"))
    summary = ingest_paths(catalog, [coco], images_dir=images, reports=[report_csv], workers=1, progress=False,
                           limit=6, dataset="fracture")
    assert summary.images_added == 6 and summary.reports_added == 2
    counts = catalog.counts()
    catalog.dispose()
    for page in PAGES:
        app = open_page(tmp_path / "ws", page, env)
        assert not app.error, (page, [error.value for error in app.error])
        if page == "page_overview.py":
            metrics = {metric.label: metric.value for metric in app.metric}
            assert metrics["Images"] == str(counts["images"]) and metrics["Reports"] == "2"
        if page == "page_search.py":
            assert app.image, "the picked case shows the thumbnail ingest wrote"
            assert next_steps.NO_ENCODER in texts(app)


def test_report_explorer_shows_the_images_of_the_study(catalog, env):
    from app_workspace import _add_image
    from radloop.core.schema import Report

    with catalog.session() as session:
        image = _add_image(session, catalog.workspace, data_path("iu_xray_images", "CXR3_IM-1384-1001.png"),
                           dataset="iu_xray", body_region="chest", split="test", meta={})
        # A synthetic report attached to the image's study (the real CXR3 report is held back from ../shared/data).
        session.add(Report(id="R-test", study_id=image.study_id, content_hash="h", text="FINDINGS: Clear lungs."))
        image_id = image.id
    app = open_page(catalog.workspace.root, "page_reports.py", env)
    assert "Images of this study" in texts(app)
    assert [caption for element in app.image for caption in element.captions] == [f"{image_id} · chest"]
    assert not app.error
