"""The labelling view's "Cannot tell" list and readable names against a REAL Label Studio server.

An existing project gets the new config on its next ``radloop ls init``. Label Studio's strict check (what its
settings page runs before saving a config) wants every label its annotations hold still in the config
(``alias``, else ``value``): the readable names (``value="foreign body" alias="foreign_body"``) and the added
control pass it, a renamed stored value does not. (A plain API update only logs such a mismatch.) Annotations
made through the API (as the labelling view makes them) and predictions with "Cannot tell" results go through
Label Studio and parse back.
"""

from __future__ import annotations

import json

import pytest
from label_studio_sdk.core.api_error import ApiError
from ls_server import label_studio  # noqa: F401  (session fixture)

from radloop.labeling.ls_adapter import ImageGeometry, PredictionRecord, parse_task, prediction_to_ls
from radloop.labeling.ls_client import LabelStudioClient
from radloop.labeling.ls_config import build_label_config, parse_label_config

pytestmark = pytest.mark.labelstudio

#: The layout radloop generated before the "Cannot tell" list (values were the vocabulary keys).
PREVIOUS_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="boxes" toName="image" canRotate="false">
    <Label value="fracture" background="#e6194b"/><Label value="foreign_body" background="#f58231"/>
  </RectangleLabels>
  <Text name="report" value="$report"/>
  <Choices name="findings" toName="image" choice="multiple" showInline="false">
    <Choice value="fracture" hint="fracture"/><Choice value="foreign_body" hint="foreign body"/>
    <Choice value="device" hint="device"/><Choice value="normal" hint="normal"/>
    <Choice value="dislocation" hint="dislocation"/>
  </Choices>
  <TextArea name="comment" toName="image" rows="3" editable="true" maxSubmissions="1"/>
</View>"""

GEOMETRY = ImageGeometry(200, 100, 200, 100)


def _result(control: str, *names: str) -> dict:
    return {"from_name": control, "to_name": "image", "type": "choices", "value": {"choices": list(names)}}


def _box(label: str) -> dict:
    return {"from_name": "boxes", "to_name": "image", "type": "rectanglelabels", "original_width": 200,
            "original_height": 100, "image_rotation": 0,
            "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": [label]}}


def _task(case_id: str, predictions: list[dict] = ()) -> dict:
    return {"data": {"image": f"/data/local-files/?d=none/{case_id}.png", "report": "Possible fracture.",
                     "case_id": case_id, "round_id": 1, "radloop_key": f"{case_id}@round-1"},
            "predictions": list(predictions)}


def test_existing_project_with_annotations_takes_the_new_config(label_studio):  # noqa: F811
    client = LabelStudioClient(label_studio.url, label_studio.token, retries=1, backoff=0.2)
    project_id = client.create_project("radloop config update", PREVIOUS_CONFIG)
    try:
        (old_task,) = client.import_tasks(project_id, [_task("I-old")])
        client.create_annotation(old_task, [_result("findings", "foreign_body", "fracture"), _box("foreign_body")])
        renamed = build_label_config().replace(' alias="foreign_body"', "")  # stored value becomes "foreign body"
        with pytest.raises(ApiError) as refused:
            client.sdk.projects.validate_label_config(id=project_id, label_config=renamed)
        assert refused.value.status_code == 400 and "foreign_body" in json.dumps(refused.value.body)
        client.sdk.projects.validate_label_config(id=project_id, label_config=build_label_config())
        client.update_project(project_id, label_config=build_label_config())
        config = parse_label_config(client.get_project(project_id)["label_config"])
        assert config.cannot_tell and config.choices[0].labels[1] == "foreign_body"

        prediction = prediction_to_ls(PredictionRecord("report-rules:t", {"fracture": 0.5, "device": 1.0},
                                                       uncertain=("fracture",)), GEOMETRY, config)
        (new_task,) = client.import_tasks(project_id, [_task("I-new", [prediction])])
        client.create_annotation(new_task, [_result("findings", "device"), _result("cannot_tell", "fracture"),
                                            _box("foreign_body")])
        tasks = {task["data"]["case_id"]: task for task in client.iter_tasks(project_id)}
        assert tasks["I-new"]["predictions"][0]["result"] == prediction["result"]
        old = parse_task(tasks["I-old"], config, lambda _: GEOMETRY).annotations[0]
        assert old.problems == () and old.choices == {"fracture": 1, "foreign_body": 1, "device": 0, "normal": 0,
                                                      "dislocation": 0}
        new = parse_task(tasks["I-new"], config, lambda _: GEOMETRY).annotations[0]
        assert new.problems == () and new.boxes[0].label == "foreign_body"
        assert new.choices == {"fracture": None, "foreign_body": 1, "device": 1, "normal": 0, "dislocation": 0}
    finally:
        client.delete_project(project_id)
