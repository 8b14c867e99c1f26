"""What a radiologist and a researcher ran into walking the app on a demo workspace (each test failed before
its fix): resuming the demo's open round, DICOM and catalogued uploads in case search, typed case ids, every
report reachable, status-aware report labels, finished rounds in the queue, empty metric columns."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import pytest
from sqlalchemy import select

pytest.importorskip("streamlit")

from app_workspace import build_app_workspace  # noqa: E402
from conftest import DATA_ROOT, data_path  # noqa: E402
from radloop.app import next_steps, views_reports, views_rounds, views_search  # noqa: E402
from radloop.core.schema import Image, Model, Report, Study  # noqa: E402
from test_app_pages import open_page, texts  # noqa: E402

DICOM_DIR = ("dicom_radiographs",)


def _workspace(tmp_path_factory, test_catalog_url, name: str, **options):
    data_path("bone_fracture_xray_roboflow_v4", "yolo", "train")
    data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    root = (tmp_path_factory.mktemp(name) / "ws").resolve()
    return build_app_workspace(root, DATA_ROOT, database_url=test_catalog_url(root), **options)


@pytest.fixture(scope="module")
def app_workspace(tmp_path_factory, test_catalog_url):
    """The app pages' fixture: round 2 open (state ``selected``, strategy ``uncertainty``, budget 3)."""
    return _workspace(tmp_path_factory, test_catalog_url, "app")


@pytest.fixture(scope="module")
def finished_workspace(tmp_path_factory, test_catalog_url):
    """The same with both rounds finished (round 2: three selections, none answered) and two images without a
    body region (exhaustively annotated negatives)."""
    return _workspace(tmp_path_factory, test_catalog_url, "app-finished", open_round=False, negatives=2)



def _fake_rounds(env, calls: list, *, refuse_changes_to: dict | None = None):
    """Replace the round scripts: record each call; like the real ones, refuse round-defining options that
    differ from the open round's (``refuse_changes_to``)."""

    def start_round(catalog, *, config=None, progress=None, **overrides):
        calls.append(overrides)
        for name, value in (refuse_changes_to or {}).items():
            if name in overrides and overrides[name] != value:
                raise RuntimeError(f"round 2 is open and these options differ from it: {name}")
        if progress is not None:
            progress("handing the batch to annotators", 0.8)
        return {"round": 2, "state": "selected"}

    def finish_round(catalog, *, progress=None, simulate=None):
        calls.append({"finish_simulate": simulate})
        raise RuntimeError("round 3 has no annotations yet")

    fake = types.ModuleType("radloop.app.rounds")
    fake.start_round, fake.finish_round = start_round, finish_round
    env.setitem(sys.modules, "radloop.app.rounds", fake)
    import radloop.app

    env.setattr(radloop.app, "rounds", fake, raising=False)


def test_resuming_the_open_round_passes_no_round_settings(app_workspace, env):
    """The demo leaves a round open with its own strategy and budget; the form used to send the page's defaults
    (badge, 50) and the round scripts refused them: "Resume round 4" always failed."""
    calls: list = []
    _fake_rounds(env, calls, refuse_changes_to={"strategy": "uncertainty", "budget": 3, "task": "findings"})
    app = open_page(app_workspace, "page_rounds.py", env)
    assert "strategy **uncertainty** · budget **3**" in texts(app)  # what the open round was started with
    assert not [box for box in app.selectbox if box.key in ("round_strategy", "round_task")]  # nothing to change
    assert app.button[0].label == "Resume round 2"
    app.button[0].click().run()
    assert calls == [{"push": False}]  # Label Studio is down: only the import file; no round-defining option
    assert not app.error and "Resuming round 2: done" in texts(app)
    app.checkbox(key="round_finish_simulate").check()
    app.button[1].click().run()
    assert calls[-1] == {"finish_simulate": True}
    assert "round 3 has no annotations yet" in app.error[0].value and "resumable" in texts(app)
    assert not app.exception


def test_starting_a_new_round_sends_the_form(finished_workspace, env):
    calls: list = []
    _fake_rounds(env, calls)
    app = open_page(finished_workspace, "page_rounds.py", env)
    assert app.checkbox(key="round_simulate").value is True  # Label Studio is down
    assert app.button[1].disabled and "No round is open" in texts(app)
    app.number_input(key="round_budget").set_value(5)
    app.button[0].click().run()
    assert calls == [{"task": "fracture", "strategy": app.selectbox(key="round_strategy").value, "budget": 5,
                      "simulate": True, "push": True}]
    assert app.json and '"state": "selected"' in app.json[0].value and not app.error
    app.checkbox(key="round_simulate").uncheck()
    app.button[0].click().run()  # experts, but the server is down: only the import file, no push attempt
    assert calls[-1]["simulate"] is False and calls[-1]["push"] is False


def _fake_search(env, ids: list[str], *, first_distance: float = 0.0):
    import radloop.retrieval

    calls = []

    def search_cases(catalog, *, image=None, case_id=None, k=8, filters=None):
        calls.append({"image": None if image is None else image.shape, "case_id": case_id})
        return [{"image_id": image_id, "distance": first_distance + 0.1 * rank}
                for rank, image_id in enumerate(ids)][:k]

    env.setattr(radloop.retrieval, "search_cases", search_cases, raising=False)
    env.setattr(views_search, "search_readiness", lambda catalog: views_search.SearchReadiness("enc-x", 9, None))
    return calls


def _image_ids(workspace) -> list[str]:
    return sorted(path.stem for path in (workspace.root / "thumbs").glob("*.png"))


def test_search_takes_a_dicom_upload_with_or_without_extension(app_workspace, env):
    calls = _fake_search(env, _image_ids(app_workspace))
    dicom = data_path(*DICOM_DIR, "RG1_J2KR.dcm").read_bytes()
    app = open_page(app_workspace, "page_search.py", env)
    app.file_uploader(key="search_upload").upload("RG1_J2KR.dcm", dicom, "application/dicom").run()
    assert not app.exception and not app.error, [item.value for item in app.exception]
    assert calls[-1]["case_id"] is None and len(calls[-1]["image"]) == 2  # decoded to a 2-D grey array
    app.file_uploader(key="search_upload").upload("IM000001", dicom, "application/octet-stream").run()
    assert not app.exception and not app.error and len(calls[-1]["image"]) == 2
    truncated = dicom[:132] + b"\0" * 64  # the DICM marker, then nothing usable
    app.file_uploader(key="search_upload").upload("broken.dcm", truncated, "application/dicom").run()
    assert "Could not read 'broken.dcm'" in app.error[0].value and "DICOM" in app.error[0].value
    assert not app.exception


def test_uploading_a_catalogued_file_searches_by_its_case(app_workspace, env):
    """A radiologist uploads a file that is already in the archive: the first 'neighbour' used to be the image
    itself (distance 0); now the upload is recognised and its own study is left out."""
    from radloop.core.catalog import Catalog
    from radloop.retrieval.query_match import CatalogMatch

    catalog = Catalog.open(app_workspace, create=False)
    with catalog.session() as session:
        image_id, source = session.execute(
            select(Image.id, Image.source_path).where(Image.dataset == "bone_fracture").order_by(Image.id)
            .limit(1)).one()
    data = Path(source).read_bytes()
    assert views_search.catalog_match_for_upload(catalog, data) == CatalogMatch(image_id, "file")
    # other bytes: no byte match (a match by pixels is tested in test_search_upload_pixels.py)
    other_bytes = views_search.catalog_match_for_upload(catalog, data + b"\0")
    assert other_bytes is None or other_bytes.matched_by == "pixels"
    catalog.dispose()
    calls = _fake_search(env, _image_ids(app_workspace))
    app = open_page(app_workspace, "page_search.py", env)
    app.file_uploader(key="search_upload").upload("copy.jpg", data, "image/jpeg").run()
    assert calls[-1] == {"image": None, "case_id": image_id}
    assert f"This file is catalog case `{image_id}`" in texts(app)
    assert f"**{image_id}** · distance" not in texts(app)
    assert not app.error and not app.exception


def test_search_by_typed_case_or_study_id(app_workspace, env):
    ids = _image_ids(app_workspace)
    wanted = ids[-1]
    calls = _fake_search(env, ids[:-1], first_distance=-2e-7)  # a self-match rounding below zero
    app = open_page(app_workspace, "page_search.py", env)
    app.text_input(key="search_case_id").input(f" {wanted} ").run()
    assert calls[-1]["case_id"] == wanted
    # the cards name the index's distance (a search hit without a metric: the default, cosine)
    assert "-0.000" not in texts(app) and f"**{ids[0]}** · distance (1 - cosine) 0.000" in texts(app)
    from radloop.core.catalog import Catalog

    catalog = Catalog.open(app_workspace, create=False)
    with catalog.session() as session:
        study = session.get(Image, wanted).study_id
    catalog.dispose()
    app.text_input(key="search_case_id").input(study).run()
    assert calls[-1]["case_id"] == wanted  # a study id: its first image
    searched = len(calls)
    app.text_input(key="search_case_id").input("I-doesnotexist").run()
    assert "No image or study `I-doesnotexist`" in app.warning[0].value and len(calls) == searched
    assert not app.exception


def test_no_current_encoder_names_the_registered_one(catalog, env):
    from app_workspace import _add_image

    with catalog.session() as session:
        _add_image(session, catalog.workspace, data_path("iu_xray_images", "CXR3_IM-1384-1001.png"),
                   dataset="iu_xray", body_region="chest", split="test", meta={})
        session.add(Model(version="enc-old", kind="encoder", task="encoder", path="models/enc-old",
                          is_current=False))
    readiness = views_search.search_readiness(catalog)
    assert readiness.encoder_version is None and "enc-old" in readiness.message
    assert "radloop models set-current enc-old" in readiness.message and "No encoder is registered" not in \
        readiness.message
    for page in ("page_search.py", "page_rounds.py"):
        app = open_page(catalog.workspace.root, page, env)
        assert "radloop models set-current enc-old" in texts(app), page
        assert not app.exception


def test_every_report_is_reachable_page_by_page(catalog, env):
    with catalog.session() as session:
        session.add(Study(id="S-r", dataset="t", split="train"))
        session.flush()
        session.add_all([Report(id=f"R-{number:03d}", study_id="S-r", content_hash=f"h{number}",
                                text=f"Report {number}: no acute findings.") for number in range(230)])
    assert views_reports.count_reports(catalog) == 230
    assert views_reports.list_reports(catalog, limit=200, offset=200)["report_id"].tolist()[0] == "R-200"
    app = open_page(catalog.workspace.root, "page_reports.py", env)
    picker = app.selectbox(key="reports_id")
    assert "1–200 of 230" in picker.label and len(picker.options) == 200
    app.number_input(key="reports_page_of_2").set_value(2).run()
    picker = app.selectbox(key="reports_id")
    assert "201–230 of 230" in picker.label and picker.options[-1].startswith("R-229")
    assert "**R-200**" in texts(app) and not app.exception
    app.text_input(key="reports_text").input("Report 229:").run()  # one match: no page input
    assert not app.number_input and "(1 match)" in app.selectbox(key="reports_id").label


def test_report_labels_say_which_findings_are_ruled_out(app_workspace, env):
    """A report saying "no pneumothorax" used to be listed as "… · pneumothorax"."""
    assert views_reports.mention_summary({"pneumothorax": "negative", "effusion": "positive",
                                          "edema": "uncertain", "normal": "negative"}) == \
        "effusion, edema?, not normal, no pneumothorax"
    app = open_page(app_workspace, "page_reports.py", env)
    app.selectbox(key="reports_finding").set_value("pneumothorax").run()
    app.selectbox(key="reports_status").set_value("negative").run()
    labels = app.selectbox(key="reports_id").options  # as shown: "id · summary"
    assert labels and all("pneumothorax" in label for label in labels)
    assert any("no pneumothorax" in label for label in labels), labels


def test_queue_of_a_finished_round_is_not_next_to_label(finished_workspace, env):
    app = open_page(finished_workspace, "page_queue.py", env)
    page = texts(app)
    assert "Next to label" not in page and "Selected by round 2" in page
    assert {metric.label: metric.value for metric in app.metric}["Never answered"] == "3"
    assert len(app.image) == 3 and not app.error


def test_models_of_one_task_show_only_their_metrics(app_workspace, env):
    app = open_page(app_workspace, "page_models.py", env)
    app.selectbox(key="models_task").set_value("encoder").run()
    columns = set(app.dataframe[0].value.columns)
    assert "metric:knn_accuracy" in columns and "metric:auroc" not in columns
    assert app.selectbox(key="models_metric").options == ["metric:knn_accuracy"]
    assert len(app.get("vega_lite_chart")) == 1 and not app.error
    app.selectbox(key="models_task").set_value("findings").run()
    spec = app.get("vega_lite_chart")[0].proto.spec  # version names share long prefixes: never cut them
    assert '"labelLimit": 0' in spec and "findings-probe-r2" in str(app.get("vega_lite_chart")[0].proto)


def test_overview_says_why_no_image_has_weak_labels(catalog, env):
    from app_workspace import _add_image

    with catalog.session() as session:
        _add_image(session, catalog.workspace, data_path("iu_xray_images", "CXR3_IM-1384-1001.png"),
                   dataset="iu_xray", body_region="chest", split="test", meta={})
        session.add(Study(id="S-other", dataset="t", split="train"))
        session.flush()
        session.add(Report(id="R-x", study_id="S-other", content_hash=hashlib.sha256(b"x").hexdigest(),
                           text="No pneumothorax."))
    app = open_page(catalog.workspace.root, "page_overview.py", env)
    assert {metric.label: metric.value for metric in app.metric}["Images with a report"] == "0 / 1"
    assert "No image belongs to a study with a report" in texts(app) and "`study_id`" in texts(app)
    assert next_steps.NO_WEAK_LABELS in texts(app) and not app.error


def test_round_info_carries_how_the_round_was_started(app_workspace):
    from radloop.core.catalog import Catalog

    catalog = Catalog.open(app_workspace, create=False)
    current = views_rounds.latest_round(catalog)
    catalog.dispose()
    assert (current.number, current.task, current.strategy, current.budget, current.simulate) == \
        (2, "findings", "uncertainty", 3, False)


def test_missing_values_read_back_from_frames_are_not_printed_as_nan(finished_workspace, env):
    """pandas 3 reads a missing region back as NaN (truthy): the case picker used to say "I-… · nan"."""
    import pandas as pd

    app = open_page(finished_workspace, "page_search.py", env)
    options = app.selectbox(key="search_case").options
    assert len([option for option in options if option.endswith("· unknown")]) == 2
    assert not [option for option in options if option.endswith("nan")]
    frame = pd.DataFrame([(1, 1, "finished", "random", 4, "fracture", 4, 4, None, 0.5, 0.6, 0.1, None, None, None)],
                         columns=views_rounds.ROUND_COLUMNS)
    assert set(views_rounds.learning_curve(frame)["metric_name"]) == {"metric"}
