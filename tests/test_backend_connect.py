"""Connecting the ML backend to a Label Studio project twice (``radloop ls connect-backend`` re-run): the
update must carry the project, as Label Studio 1.23 re-runs its /setup check with the PATCH body's fields."""

from __future__ import annotations

import json

import httpx
import pytest

from radloop.labeling.ls_client import LabelStudioClient, LabelStudioError

BACKEND_URL = "http://backend.example:9090"


class FakeMlApi:
    """Label Studio 1.23's ML-backend endpoints as far as ``ensure_ml_backend`` uses them, with its PATCH
    behaviour: validation calls ``MLBackend.setup_(**attrs)`` with the request's fields only."""

    def __init__(self) -> None:
        self.backends: dict[int, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.refuse_updates = False  # as when the backend's /health fails during Label Studio's validation

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, request.url.path, body))
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path == "/api/ml":
            project = int(request.url.params["project"])
            return httpx.Response(200, json=[b for b in self.backends.values() if b["project"] == project])
        if request.method == "POST" and path == "/api/ml":
            backend = {**body, "id": len(self.backends) + 1}
            self.backends[backend["id"]] = backend
            return httpx.Response(201, json=backend)
        if request.method == "PATCH" and path.startswith("/api/ml/"):
            if self.refuse_updates:
                return httpx.Response(400, json={"detail": "health check failed"})
            if "project" not in body:
                return httpx.Response(500, json={
                    "detail": "MLBackend.setup_() missing 1 required positional argument: 'project'"})
            backend = self.backends[int(path.rsplit("/", 1)[1])]
            backend.update(body)
            return httpx.Response(200, json=backend)
        if request.method == "GET" and path == "/api/webhooks":
            return httpx.Response(200, json=[])
        return httpx.Response(404, json={"detail": f"not faked: {request.method} {path}"})


@pytest.fixture
def label_studio():
    fake = FakeMlApi()
    client = LabelStudioClient("http://ls.example:8080", "tok", retries=1, backoff=0, sleep=lambda _s: None,
                               transport=httpx.MockTransport(fake))
    return fake, client


def test_connecting_twice_updates_the_backend_with_its_project(label_studio):
    fake, client = label_studio
    first = client.ensure_ml_backend(7, BACKEND_URL, basic_auth=("ls", "pw"))
    second = client.ensure_ml_backend(7, BACKEND_URL + "/", basic_auth=("ls", "pw-2"))
    assert first == second == 1 and len(fake.backends) == 1
    [patch] = [body for method, _path, body in fake.requests if method == "PATCH"]
    assert patch["project"] == 7 and patch["basic_auth_pass"] == "pw-2" and patch["auth_method"] == "BASIC_AUTH"


def test_a_refused_update_names_the_request(label_studio):
    fake, client = label_studio
    client.ensure_ml_backend(7, BACKEND_URL)
    fake.refuse_updates = True
    with pytest.raises(LabelStudioError, match="update ML backend .*health check failed"):
        client.ensure_ml_backend(7, BACKEND_URL)
