"""Walk 22d: what a radiologist met on the app's tables and images (each test failed before its fix).

Missing values showed as a grey "None" in the queue, models and mentions tables; images had no text a screen
reader could read (id, region, side).
"""

from __future__ import annotations


import pytest
from sqlalchemy import select, update

pytest.importorskip("streamlit")

from app_workspace import build_app_workspace  # noqa: E402
from conftest import DATA_ROOT, data_path  # noqa: E402
from radloop.app import next_steps, ui, views_search  # noqa: E402
from radloop.core.catalog import Catalog  # noqa: E402
from radloop.core.schema import Image, Report  # noqa: E402
from test_app_pages import open_page  # noqa: E402

TABLE_PAGES = ["page_overview.py", "page_queue.py", "page_models.py", "page_reports.py"]
IMAGE_PAGES = ["page_search.py", "page_queue.py", "page_reports.py"]
REPORT_ID = "R-walk22d"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, test_catalog_url):
    """The app fixture (round 2 open) plus two images without a region; the chest image is a left PA view."""
    data_path("bone_fracture_xray_roboflow_v4", "yolo", "train")
    data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    root = (tmp_path_factory.mktemp("walk22d") / "ws").resolve()
    built = build_app_workspace(root, DATA_ROOT, database_url=test_catalog_url(root), negatives=2)
    catalog = Catalog.open(built, create=False)
    with catalog.session() as session:
        session.execute(update(Image).where(Image.body_region == "chest").values(laterality="L", view="PA"))
        study_id = session.scalars(select(Image.study_id).where(Image.body_region == "chest")).one()
        # a synthetic report on the chest image's study, so that the report explorer shows an image
        session.add(Report(id=REPORT_ID, study_id=study_id, content_hash="walk22d", text="FINDINGS: Clear lungs."))
    catalog.dispose()
    return built



def test_missing_table_values_read_as_a_dash_not_none(workspace, env):
    """The queue's Label Studio task ids, an encoder's parent version, a mention's laterality: all missing."""
    seen_missing = 0
    for page in TABLE_PAGES:
        app = open_page(workspace, page, env)
        assert app.dataframe, page
        for table in app.dataframe:
            assert table.proto.placeholder == ui.MISSING, page
            frame = table.value
            seen_missing += int(frame.isna().sum().sum())
            for column in set(frame.columns) & set(ui.REGION_COLUMNS):
                assert not frame[column].isna().any() and "" not in set(frame[column]), (page, column)
            text = frame.select_dtypes(include="object")
            assert not text.map(lambda value: isinstance(value, str) and not value.strip()).any().any(), page
    assert seen_missing, "the fixture has missing values to show"


def test_shown_missing_names_a_missing_region_unknown():
    import pandas as pd

    frame = pd.DataFrame({"body_region": ["elbow", None, ""], "reason": ["x", "", None], "score": [0.5, None, 1.0]})
    shown = ui.shown_missing(frame)
    assert shown["body_region"].tolist() == ["elbow", "unknown", "unknown"]
    assert shown["reason"].tolist()[:2] == ["x", ui.MISSING] and shown["reason"].isna().tolist()[2]
    assert shown["score"].dtype == frame["score"].dtype  # numbers stay numbers (sortable, formatted)


def test_every_image_has_alt_text_with_id_region_and_side(workspace, env):
    alts = []
    for page in IMAGE_PAGES:
        app = open_page(workspace, page, env)
        if page == "page_reports.py":
            app.selectbox(key="reports_id").set_value(REPORT_ID).run()
        images = [image for element in app.image for image in element.proto.imgs]
        assert images, page
        for image in images:
            assert image.HasField("alt") and image.alt.startswith("Radiograph I-"), (page, image.alt)
            assert " region" in image.alt and ("side unknown" in image.alt or "left" in image.alt), image.alt
            alts.append(image.alt)
    assert any(alt.endswith(", chest region, left, PA view") for alt in alts), alts


def test_image_descriptions_say_unknown_for_missing_region_and_side(workspace):
    catalog = Catalog.open(workspace, create=False)
    with catalog.session() as session:
        ids = [row.id for row in session.query(Image.id).where(Image.body_region.is_(None))]
    described = views_search.image_descriptions(catalog, ids)
    catalog.dispose()
    assert ids and all(described[image_id] == f"Radiograph {image_id}, unknown region, side unknown"
                       for image_id in ids)


def test_revisiting_pages_logs_no_widget_default_warning(workspace, env, caplog):
    """Switching pages and back logged "created with a default value but also had its value set via the Session
    State API" with a stack trace on the server (search's Neighbours slider, the rounds form, ...)."""
    import logging

    import streamlit.elements.lib.policies as policies

    env.setattr(policies, "_shown_default_value_warning", False)  # Streamlit logs it once per process
    app = open_page(workspace, "page_search.py", env)
    with caplog.at_level(logging.WARNING, logger="streamlit"):
        for page in ["page_models.py", "page_search.py", "page_rounds.py", "page_models.py", "page_search.py"]:
            app.switch_page(page).run()
            assert not app.exception, page
    assert not [record for record in caplog.records if "created with a default value" in record.getMessage()]
    assert app.slider(key="search_k").value == 8


def test_queue_table_headers_in_a_readers_words(workspace, env):
    import json

    app = open_page(workspace, "page_queue.py", env)
    labels = {name: config.get("label") for name, config in json.loads(app.dataframe[0].proto.columns).items()}
    assert labels["ls_task_id"] == "Label Studio task" and labels["annotated"] == "answered"
    assert labels["reason"] == "why selected" and labels["body_region"] == "region"


def test_a_broken_rules_install_is_one_short_line(workspace, env):
    """A rule file's error printed the whole rule set (600+ characters) into the report explorer's warning."""
    import streamlit as st

    from radloop.app import views_reports

    def broken():
        raise ValueError("sites.json: exam_side must be a mapping, got {" + "'x': 1, " * 200 + "}\nsecond line")

    st.cache_resource.clear()  # the labeller built by an earlier test
    env.setattr(views_reports, "load_labeler", broken)
    app = open_page(workspace, "page_reports.py", env)
    st.cache_resource.clear()
    warning = next(item.value for item in app.warning if "report rules could not be loaded" in item.value)
    assert len(warning) < 400 and "second line" not in warning and "sites.json" in warning
    assert app.dataframe, "the stored weak labels are still shown"


def test_neighbour_grid_and_uploaded_query_have_alt_text(workspace, env):
    import radloop.retrieval

    ids = sorted(path.stem for path in (workspace.root / "thumbs").glob("*.png"))

    def search_cases(catalog, *, image=None, case_id=None, k=8, filters=None):
        return [{"image_id": image_id, "distance": 0.1 * rank} for rank, image_id in enumerate(ids)][:k]

    env.setattr(radloop.retrieval, "search_cases", search_cases, raising=False)
    env.setattr(views_search, "search_readiness", lambda catalog: views_search.SearchReadiness("enc-x", 9, None))
    app = open_page(workspace, "page_search.py", env)
    alts = [image.alt for element in app.image for image in element.proto.imgs]
    assert len(alts) > 4 and all(alt.startswith("Radiograph I-") for alt in alts), alts
    jpeg = sorted(data_path("bone_fracture_xray_roboflow_v4", "yolo", "train", "images").glob("*.jpg"))[-1]
    app.file_uploader(key="search_upload").upload(jpeg.name, jpeg.read_bytes(), "image/jpeg").run()
    alts = [image.alt for element in app.image for image in element.proto.imgs]
    assert alts[0] == f"Uploaded query radiograph {jpeg.name}"
    assert len(alts) > 4 and all(alt.startswith("Radiograph I-") for alt in alts[1:]), alts


def test_report_filters_matching_nothing_say_how_to_widen_them(workspace, env):
    app = open_page(workspace, "page_reports.py", env)
    app.text_input(key="reports_text").input("no such words in any report").run()
    shown = [item.value for item in app.info]
    assert shown == [next_steps.NO_MATCHING_REPORTS] and "Text contains" in shown[0]


def test_a_report_without_images_says_so_instead_of_zero(workspace, env):
    """The demo's Open-i reports come without radiographs: each read "0 image(s)", as if images had been lost."""
    from radloop.app.page_reports import NO_STUDY_IMAGES

    app = open_page(workspace, "page_reports.py", env)
    assert app.selectbox(key="reports_id").value != REPORT_ID  # an Open-i report, no image in the catalog
    header = next(item.value for item in app.markdown if "· study" in item.value)
    assert header.endswith(NO_STUDY_IMAGES) and "0 image(s)" not in header
    app.selectbox(key="reports_id").set_value(REPORT_ID).run()
    assert any(item.value.endswith("· 1 image(s)") for item in app.markdown)


def test_learning_curve_counts_labels_in_whole_numbers():
    """The overview's learning curve had ticks at 10.5 labels (lead, after walk 22d's report)."""
    import pandas as pd

    from radloop.app import page_overview

    curve = pd.DataFrame({"labels": [10, 20], "metric": [0.5, 0.6], "metric_name": ["AUROC", "AUROC"]})
    axis = page_overview._curve_chart(curve).to_dict()["encoding"]["x"]["axis"]
    assert axis["format"] == "d" and axis["tickMinStep"] == 1
