"""A labelling config that is not text (``label_config`` in /predict, ``schema`` in /setup) is refused with a
clear reason, not silently dropped (the backend then answered as if the project had no controls)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("value", [5, ["<View/>"], {"xml": "<View/>"}, True])
def test_non_text_configs_are_refused(value):
    from radloop.labeling.ls_adapter import AdapterError, parse_predict_request, parse_setup_request

    with pytest.raises(AdapterError, match=r"^'label_config' must be the project's labelling config as XML text, "
                                           rf"got {type(value).__name__}$"):
        parse_predict_request({"tasks": [{"id": 1, "data": {}}], "label_config": value})
    with pytest.raises(AdapterError, match=r"^'schema' must be the project's labelling config as XML text"):
        parse_setup_request({"project": "1", "schema": value})


def test_absent_null_and_text_configs_still_parse():
    from radloop.labeling.ls_adapter import parse_predict_request, parse_setup_request

    assert parse_predict_request({"tasks": [{"data": {}}]}).label_config is None
    assert parse_predict_request({"tasks": [{"data": {}}], "label_config": None}).label_config is None
    assert parse_predict_request({"tasks": [{"data": {}}], "label_config": "<View/>"}).label_config == "<View/>"
    assert parse_setup_request({"schema": None}).label_config is None
    assert parse_setup_request({"schema": "<View/>"}).label_config == "<View/>"


def test_the_backend_answers_400_or_422_for_a_numeric_schema(tmp_path):
    from fastapi.testclient import TestClient

    from radloop.app.backend import create_app

    client = TestClient(create_app(None))
    answer = client.post("/setup", json={"project": "3.1700000000", "schema": 5})
    assert answer.status_code in (400, 422), answer.text
    assert "'schema' must be the project's labelling config as XML text" in answer.json()["detail"]
