"""Walk 22j: after "Retrieve predictions" each Label Studio task held two identical weak-label predictions,
``report-rules:<rules version>`` from ``radloop ls push`` and ``report-rules`` from the ML backend.

The backend's rules now answer (``/setup`` and ``/predict``) with the version the push stamps, so Label Studio,
which skips tasks holding a prediction of the version ``/setup`` gave, sends no pushed task again and its model
version selector lists one rules version.  A study's weak labels count only in their newest rules version.
"""

from __future__ import annotations

import pytest
from ls_server import label_studio  # noqa: F401  (session fixture)

from radloop.app.backend_runtime import CasePredictor, registry_state
from radloop.core.schema import Report, Study, WeakLabel
from radloop.labeling.ls_tasks import weak_label_predictions


def _study(catalog, study_id: str = "S-1", labels=(("fracture", "positive", "r9"),)) -> None:
    with catalog.session() as session:
        session.add(Study(id=study_id, dataset="test"))
        session.flush()
        session.add(Report(id=f"R-{study_id}", study_id=study_id, content_hash=study_id, text="Fracture."))
        session.flush()
        for finding, status, version in labels:
            session.add(WeakLabel(report_id=f"R-{study_id}", finding=finding, status=status, rules_version=version))
            session.flush()  # ids in the order given: the last is the newest


def test_backend_rules_answer_with_the_version_the_push_stamps(catalog):
    from fastapi.testclient import TestClient

    from radloop.app.backend import create_app

    _study(catalog)
    with catalog.session() as session:
        pushed = weak_label_predictions(session, ["S-1"])["S-1"]
    predictor = CasePredictor(catalog, None)
    assert pushed.model_version == predictor.model_version == "report-rules:r9"
    setup = TestClient(create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, None))).post(
        "/setup", json={"project": "1", "schema": "", "hostname": "", "access_token": ""}).json()
    assert setup["model_version"] == "report-rules:r9"
    assert CasePredictor(None, None).model_version == "report-rules"  # no catalog, no weak labels


def test_a_relabel_changes_the_registry_state_the_backend_watches(catalog):
    """``radloop labels`` with new rules: the running backend reloads and answers with the new version."""
    _study(catalog)
    before = registry_state(catalog)
    _study(catalog, "S-2", labels=(("fracture", "negative", "r10"),))
    assert registry_state(catalog) != before
    assert CasePredictor(catalog, None).model_version == "report-rules:r10"


def test_only_the_newest_rules_version_of_a_study_counts(catalog):
    """Older rules said "fracture" positive, the newest say negative: the pre-annotation followed the old rows
    (the strongest status of all versions) under whichever version came last."""
    _study(catalog, labels=(("fracture", "positive", "r1"), ("device", "positive", "r1"),
                            ("fracture", "negative", "r2")))
    with catalog.session() as session:
        prediction = weak_label_predictions(session, ["S-1"])["S-1"]
    assert prediction.model_version == "report-rules:r2"
    assert prediction.choices == {"fracture": 0.0}


@pytest.mark.labelstudio
def test_retrieve_predictions_leaves_one_rules_prediction_per_task(label_studio, test_catalog_url):  # noqa: F811
    from radloop.app.backend import BackendSettings, create_app
    from radloop.app.backend_bench import serve_in_thread
    from ls_live_rounds import bound_round_catalog
    from radloop.labeling.ls_sync import push_round

    catalog, round_id, image_ids, client, project_id = bound_round_catalog(
        label_studio, test_catalog_url, "ws-walk22j", "walk22j rules predictions", n_images=3)
    try:
        assert push_round(catalog, client, round_id, with_model=False)["imported"] == len(image_ids)
        app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, None),
                         settings=BackendSettings(debounce_s=3600))
        with serve_in_thread(app) as url:
            client.ensure_ml_backend(project_id, url)
            client.retrieve_predictions(project_id)
            client.retrieve_predictions(project_id)
        tasks = client.iter_tasks(project_id, round_id=round_id)
        versions = [[prediction["model_version"] for prediction in task["predictions"]] for task in tasks]
        assert len(versions) == len(image_ids)
        assert all(task_versions == ["report-rules:test-rules-1"] for task_versions in versions), versions
    finally:
        catalog.dispose()
