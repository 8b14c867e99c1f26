"""Walkthrough 20c of the ML backend with bad input: every refusal is a JSON 4xx that says why, never a 500 with a
traceback (unpaired UTF-16 surrogate escapes in a body, a non-ASCII Basic header, an overlong /setup project, and
any unexpected error)."""

from __future__ import annotations

import base64

import pytest

from fastapi.testclient import TestClient

from radloop.app.backend import BackendAuth, BackendSettings, create_app
from radloop.app.backend_runtime import CasePredictor
from radloop.labeling.ls_config import build_label_config


def _client(catalog=None, **settings) -> TestClient:
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, None),
                     settings=BackendSettings(debounce_s=3600, **settings))
    return TestClient(app, raise_server_exceptions=False)


def test_an_unpaired_surrogate_escape_is_a_400_not_a_500(catalog):
    """``"\\ud800"`` is JSON Python decodes, to a string no UTF-8 consumer takes: the catalog lookup of such a
    case id and the XML parser of such a label config raised UnicodeEncodeError (500, "Internal Server Error")."""
    client = _client(catalog)
    bodies = {"/predict": b'{"tasks": [{"id": 1, "data": {"case_id": "I-\\ud800"}}]}',
              "/setup": b'{"project": "1.1", "schema": "<View>\\udfff</View>"}',
              "/webhook": b'{"action": "ANNOTATION_CREATED\\ud83d"}'}
    for path, body in bodies.items():
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        assert "unpaired UTF-16 surrogate" in response.json()["detail"]
    # a surrogate *pair* (an emoji, as JSON encoders escape it) is ordinary text
    paired = client.post("/predict", content='{"tasks": [{"id": 1, "data": {"case_id": "I-\\ud83d\\ude00"}}]}',
                         headers={"content-type": "application/json"})
    assert paired.status_code == 200 and paired.json() == {"results": [[]]}


def test_a_non_ascii_basic_header_is_refused_with_401():
    """Headers arrive decoded as latin-1; ``base64.b64decode`` raises ValueError (not binascii.Error) for non-ASCII
    text, which escaped the auth check as a 500."""
    auth = BackendAuth(username="lead", password="s3cret")
    assert auth.check("Basic \u00c3\u00a9") is False
    assert BackendAuth(bearer_token="tok").check("Bearer \udcff") is False
    client = _client(auth=auth)
    response = client.get("/health", headers={"Authorization": b"Basic \xc3\xa9"})
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "authentication required (basic or bearer)"}
    good = base64.b64encode(b"lead:s3cret").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_setup_refuses_an_overlong_project_id():
    """/train already capped the project id; /setup kept any string (a 32-MiB one per request, for ever)."""
    client = _client()
    response = client.post("/setup", json={"project": "7." + "9" * 500, "schema": build_label_config()})
    assert response.status_code == 422
    assert "longer than" in response.json()["detail"]
    assert client.post("/setup", json={"project": "7.1700000000", "schema": build_label_config()}).status_code == 200


def test_an_unexpected_error_is_a_json_500_without_the_message():
    """Whatever breaks inside a request, Label Studio (and whoever calls) gets JSON naming the error's type only:
    its message may hold file paths, SQL or task data; the traceback goes to the server log."""

    class BrokenPredictor(CasePredictor):
        def lookup(self, case_id):
            raise RuntimeError("/secret/path/catalog.sqlite: SELECT * FROM images")

    app = create_app(None, predictor_loader=lambda: BrokenPredictor(None, None),
                     settings=BackendSettings(debounce_s=3600))
    response = TestClient(app, raise_server_exceptions=False).post(
        "/predict", json={"tasks": [{"id": 1, "data": {"case_id": "I-1"}}]})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert "RuntimeError" in detail and "/predict" in detail and "log" in detail
    assert "secret" not in response.text and "Traceback" not in response.text


BOXES_ONLY = ("<View><Image name='image' value='$image'/><RectangleLabels name='box' toName='image'>"
              "<Label value='fracture'/></RectangleLabels></View>")
CHEST_ONLY = ("<View><Image name='image' value='$image'/><Choices name='findings' toName='image' choice='multiple'>"
              "<Choice value='pneumothorax'/></Choices></View>")


class FractureClassifier:
    """Stand-in image-level model: the same fracture probability for every image, never a box."""

    model_version = "classifier-test-1"
    findings = ("fracture",)

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def predict(self, images, *, original_sizes=None):
        from radloop.ssl.predict import ImagePrediction

        return [ImagePrediction({"fracture": self.probability}, model_version=self.model_version) for _ in images]


def _no_box_detector():
    import torch
    from torch import nn

    from radloop.ssl.detection import DetectorPredictor

    class NoBoxes(nn.Module):
        def forward(self, images):
            return [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
                     "scores": torch.zeros(0)} for _ in images]

    return DetectorPredictor(NoBoxes(), {"labels": ["fracture"]}, model_version="det-test-none")


@pytest.fixture
def case(workspace, catalog) -> str:
    """One catalogued image with its render on disk."""
    import numpy as np
    from PIL import Image as PILImage

    from radloop.core.schema import Image, Study

    render = workspace.renders_dir / "I-walk20c.png"
    PILImage.fromarray(np.full((64, 48), 90, dtype=np.uint8)).save(render)
    with catalog.session() as session:
        session.add(Study(id="S-walk20c", dataset="walk", body_region="wrist", modality="DX", split="train"))
        session.flush()
        session.add(Image(id="I-walk20c", study_id="S-walk20c", content_hash="0" * 64, dataset="walk",
                          external_id="walk20c", source_path=str(render), source_format="png",
                          render_path=workspace.relative(render), thumb_path=workspace.relative(render), width=48,
                          height=64, render_width=48, render_height=64, body_region="wrist", modality="DX", meta={}))
    return "I-walk20c"


def _predict(catalog, case, model, label_config) -> list:
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, model), train_function=lambda b: None,
                     settings=BackendSettings(debounce_s=3600))
    response = TestClient(app).post("/predict", json={
        "tasks": [{"id": 1, "data": {"image": "/data/x.png", "case_id": case}}], "label_config": label_config})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_a_prediction_the_project_cannot_show_is_no_prediction(catalog, case):
    """A fracture classifier behind a boxes-only project, or behind a chest project without a fracture label, has
    nothing to say there: it used to answer an empty prediction with its fracture score, which Label Studio
    stores as "none present" for that model version and never asks about again."""
    [shown] = _predict(catalog, case, FractureClassifier(0.8), build_label_config())
    assert shown["result"][0]["value"]["choices"] == ["fracture"]
    assert _predict(catalog, case, FractureClassifier(0.8), BOXES_ONLY) == [[]]
    assert _predict(catalog, case, FractureClassifier(0.8), CHEST_ONLY) == [[]]
    # an opinion the project can show stays an answer even when it ticks nothing: "no fracture" ...
    [absent] = _predict(catalog, case, FractureClassifier(0.1), build_label_config())
    assert absent["result"] == [] and absent["model_version"] == "classifier-test-1"
    # ... and so is a detector's "no box" in a boxes-only project
    [no_box] = _predict(catalog, case, _no_box_detector(), BOXES_ONLY)
    assert no_box["result"] == [] and no_box["model_version"] == "det-test-none"


def test_an_unpaired_surrogate_in_a_utf16_body_is_a_400_too():
    """json reads UTF-16 and UTF-32 bodies as well, with surrogatepass: there the surrogate need not be escaped."""
    client = _client()
    for text in ('{"project": "1.1", "schema": "<View>\\udfff</View>"}',
                 '{"project": "1.1", "schema": "<View>\udfff</View>"}'):
        response = client.post("/setup", content=text.encode("utf-16-le", "surrogatepass"),
                               headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert "unpaired UTF-16 surrogate" in response.json()["detail"]
    fine = client.post("/setup", content='{"project": "1.1"}'.encode("utf-16-le"),
                       headers={"content-type": "application/json"})
    assert fine.status_code == 200, fine.text
