"""The ML backend's image fetch policy: by default only Label Studio's URL, other hosts by explicit prefix,
every redirect checked again, the command-line options and their environment variable."""

from __future__ import annotations

import io
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from radloop.app.backend import BackendSettings, FetchPolicy, create_app
from radloop.app.backend_runtime import CasePredictor

IMAGE_CONFIG = ("<View><Image name='xray' value='$image'/><Choices name='cls' toName='xray'>"
                "<Choice value='fracture'/></Choices></View>")
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@dataclass
class _Output:
    choices: dict
    boxes: list = field(default_factory=list)
    model_version: str = "fetch-test-1"


class MeanModel:
    """Fracture probability = mean brightness of the fetched pixels."""

    model_version = "fetch-test-1"

    def predict(self, images, *, original_sizes=None):
        return [_Output({"fracture": float(np.asarray(image).mean() / 255)}) for image in images]


def _png() -> bytes:
    buffer = io.BytesIO()
    from PIL import Image as PILImage

    PILImage.fromarray(np.full((32, 48), 128, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_server(name: str, seen: dict, targets: dict):
    """A Starlette app serving one PNG anywhere, plus redirects; records (path, Authorization) per request."""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse, Response
    from starlette.routing import Route

    png = _png()

    def image(request):
        seen[name].append((request.url.path, request.headers.get("authorization")))
        return Response(png, media_type="image/png")

    def redirect(request):
        seen[name].append((request.url.path, request.headers.get("authorization")))
        where = {"/to-other": f"{targets.get('other')}/bucket/img.png", "/hop": "/img.png", "/loop": "/loop",
                 "/to-metadata": METADATA_URL}[request.url.path]
        return RedirectResponse(where, status_code=302)

    return Starlette(routes=[Route(path, redirect) for path in ("/to-other", "/hop", "/loop", "/to-metadata")]
                     + [Route("/{path:path}", image)])


@pytest.fixture
def servers():
    """Two image servers on different ports: ``ls`` (stands in for Label Studio) and ``other``."""
    from radloop.app.backend_bench import serve_in_thread

    seen, targets = {"ls": [], "other": []}, {}
    with ExitStack() as stack:
        for name in ("ls", "other"):
            targets[name] = stack.enter_context(serve_in_thread(_image_server(name, seen, targets)))
        yield SimpleNamespace(ls=targets["ls"], other=targets["other"], seen=seen)


def _client(catalog=None, **settings) -> TestClient:
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, MeanModel()),
                     settings=BackendSettings(**settings))
    return TestClient(app)


def _predict(client: TestClient, *urls: str, project: str | None = None) -> httpx.Response:
    tasks = [{"id": index, "data": {"image": url}} for index, url in enumerate(urls)]
    return client.post("/predict", json={"tasks": tasks, "label_config": IMAGE_CONFIG, "project": project})


@pytest.mark.parametrize("prefix, url, allowed", [
    ("https://bucket.s3.amazonaws.com/", "https://bucket.s3.amazonaws.com/a/b.png", True),
    ("https://bucket.s3.amazonaws.com", "https://BUCKET.s3.amazonaws.com:443/b.png", True),
    ("https://bucket.s3.amazonaws.com", "https://bucket.s3.amazonaws.com.evil.example/b.png", False),
    ("https://bucket.s3.amazonaws.com", "https://bucket.s3.amazonaws.com@evil.example/b.png", False),
    ("https://bucket.s3.amazonaws.com/", "http://bucket.s3.amazonaws.com/b.png", False),
    ("https://bucket.s3.amazonaws.com/", "https://bucket.s3.amazonaws.com:8443/b.png", False),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/data/local-files/?d=ws/x.png", True),
    ("http://127.0.0.1:8080", "http://localhost:8080/data/local-files/?d=ws/x.png", False),  # names, not resolved
    ("http://127.0.0.1:8080", "http://127.0.0.1:8081/x.png", False),
    ("https://host.example/media/", "https://host.example/media/x.png", True),
    ("https://host.example/media", "https://host.example/media-private/x.png", False),
    ("https://host.example/media/", "https://host.example/media/../admin", False),
    ("https://host.example/media/", "https://host.example/media/%2e%2e/admin", False),
    ("https://host.example/media/", "https://host.example/admin", False),
    ("*", METADATA_URL, True),
])
def test_policy_compares_scheme_host_port_and_path_segments(prefix, url, allowed):
    assert FetchPolicy((prefix,)).allows(httpx.URL(url)) is allowed


def test_policy_defaults_and_invalid_prefixes():
    assert not FetchPolicy().allows(httpx.URL(METADATA_URL))
    assert FetchPolicy(allow_any=True).allows(httpx.URL(METADATA_URL))
    assert FetchPolicy().with_prefix("http://ls:8080").prefixes == ("http://ls:8080",)
    for bad in ("ftp://files.example/", "bucket.example.com", "/data/", "https://h.example/?sig=1",
                "https://user:pw@h.example/", "http://[::1"):
        with pytest.raises(ValueError, match="prefix"):
            FetchPolicy((bad,))


def test_default_policy_fetches_only_from_label_studio(servers):
    client = _client(label_studio_url=servers.ls)
    # Label Studio sends its own idea of its hostname; relative URLs still go to the configured URL, with the token
    client.post("/setup", json={"project": "p", "schema": IMAGE_CONFIG, "hostname": "http://localhost:1",
                                "access_token": "ls-token"})
    relative = _predict(client, "/data/local-files/?d=ws/img.png", project="p")
    assert relative.status_code == 200 and relative.json()["results"][0]["result"]
    assert servers.seen["ls"][-1] == ("/data/local-files/", "Token ls-token")
    assert _predict(client, f"{servers.ls}/img.png").status_code == 200
    for url in (f"{servers.other}/img.png", METADATA_URL, "http://localhost:1/img.png"):
        refused = _predict(client, url)
        origin = url.split("/")[0] + "//" + url.split("/")[2]
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert f"image host {origin} is not allowed" in detail and f"--allow-url-prefix {origin}/" in detail
    mixed = _predict(client, f"{servers.ls}/img.png", f"{servers.other}/img.png")
    assert mixed.status_code == 200
    allowed, refused = mixed.json()["results"]
    assert allowed["result"] and refused == []  # no prediction for the refused task (Label Studio asks again)
    assert servers.seen["other"] == []  # a refused URL is never requested


def test_allowed_prefixes_and_allow_any(servers):
    client = _client(label_studio_url=servers.ls, fetch_policy=FetchPolicy((f"{servers.other}/bucket/",)))
    assert _predict(client, f"{servers.other}/bucket/img.png").status_code == 200
    assert _predict(client, f"{servers.other}/private/img.png").status_code == 422
    assert _predict(client, METADATA_URL).status_code == 422
    for policy in (FetchPolicy(allow_any=True), FetchPolicy(("*",))):
        assert _predict(_client(fetch_policy=policy), f"{servers.other}/private/img.png").status_code == 200
    assert [path for path, _ in servers.seen["other"]] == ["/bucket/img.png", "/private/img.png", "/private/img.png"]


def test_every_redirect_is_checked_against_the_policy(servers):
    client = _client(label_studio_url=servers.ls)
    client.post("/setup", json={"project": "p", "hostname": servers.ls, "access_token": "ls-token"})
    to_other = _predict(client, "/to-other", project="p")
    assert to_other.status_code == 422
    assert f"redirected to {servers.other}, which is not allowed" in to_other.json()["detail"]
    to_metadata = _predict(client, f"{servers.ls}/to-metadata")
    assert to_metadata.status_code == 422 and "redirected to http://169.254.169.254" in to_metadata.json()["detail"]
    assert servers.seen["other"] == []
    assert _predict(client, "/hop", project="p").status_code == 200  # same origin
    looping = _predict(client, "/loop")
    assert looping.status_code == 422 and "redirected more than 5 times" in looping.json()["detail"]
    # once allowed, the redirect is followed, and Label Studio's token does not travel to the other host
    allowed = _client(label_studio_url=servers.ls, fetch_policy=FetchPolicy((servers.other,)))
    allowed.post("/setup", json={"project": "p", "hostname": servers.ls, "access_token": "ls-token"})
    assert _predict(allowed, "/to-other", project="p").status_code == 200
    assert servers.seen["other"] == [("/bucket/img.png", None)]


def test_relative_urls_without_a_configured_label_studio(servers):
    client = _client()
    unknown = _predict(client, "/data/upload/1/img.png")
    assert unknown.status_code == 422 and "Label Studio's URL is unknown" in unknown.json()["detail"]
    # /setup's hostname alone is not trusted: anyone who can call /predict can call /setup
    client.post("/setup", json={"project": "p", "hostname": servers.ls, "access_token": "ls-token"})
    refused = _predict(client, "/data/upload/1/img.png", project="p")
    assert refused.status_code == 422 and "--label-studio-url" in refused.json()["detail"]
    assert servers.seen["ls"] == []


def test_label_studio_url_comes_from_the_workspace_binding(catalog, servers):
    from radloop.labeling.ls_project import ProjectBinding, save_binding

    save_binding(catalog.workspace, ProjectBinding(url=servers.ls, project_id=1, title="t", config_digest="d"))
    client = _client(catalog)
    assert client.app.state.fetch_policy.prefixes == (servers.ls,)
    client.post("/setup", json={"project": "1.1", "hostname": "http://localhost:1", "access_token": "ls-token"})
    assert _predict(client, "/data/local-files/?d=ws/img.png", project="1.1").status_code == 200
    assert _predict(client, f"{servers.other}/img.png").status_code == 422
    explicit = _client(catalog, label_studio_url=servers.other)
    assert explicit.app.state.fetch_policy.prefixes == (servers.other,)


def test_serve_backend_fetch_options_and_environment(catalog, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kwargs: served.append(app))
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("RADLOOP_BACKEND_ALLOW_URL_PREFIX", raising=False)
    workspace = ["--workspace", str(catalog.workspace.root), "--threads", "1"]

    def serve(*arguments, **environment):
        result = CliRunner().invoke(build_app(), ["serve-backend", *workspace, *arguments], env=environment)
        return result, (served[-1].state.fetch_policy if result.exit_code == 0 else None)

    result, policy = serve()
    assert result.exit_code == 0, result.output
    assert policy.prefixes == () and not policy.allows_any and "none (catalog cases only)" in result.output
    _, policy = serve(LABEL_STUDIO_URL="http://ls.example:8080")
    assert policy.prefixes == ("http://ls.example:8080",)
    _, policy = serve("--label-studio-url", "http://ls.internal:8080", "--allow-url-prefix", "https://a.example/",
                      "--allow-url-prefix", "https://b.example/media/", LABEL_STUDIO_URL="http://ls.example:8080")
    assert policy.prefixes == ("http://ls.internal:8080", "https://a.example/", "https://b.example/media/")
    _, policy = serve(RADLOOP_BACKEND_ALLOW_URL_PREFIX="https://a.example/ https://b.example/media/")
    assert policy.prefixes == ("https://a.example/", "https://b.example/media/")
    _, policy = serve("--allow-any-url")
    assert policy.allows_any
    bad, _ = serve("--allow-url-prefix", "bucket.example.com")
    assert bad.exit_code != 0 and "must be an http(s) URL" in bad.output


def test_error_messages_leave_out_a_signed_urls_query():
    from radloop.app.backend_fetch import FetchPolicy, fetch_image
    from radloop.labeling.ls_adapter import AdapterError

    with pytest.raises(AdapterError) as caught:
        fetch_image("s3://bucket/I-1.png?X-Amz-Signature=SECRET123", FetchPolicy(), None)
    assert "s3://bucket/I-1.png" in str(caught.value) and "SECRET123" not in str(caught.value)
    with pytest.raises(AdapterError) as caught:
        fetch_image("/data/upload/1/x.png?token=SECRET456", FetchPolicy(), None)
    assert "SECRET456" not in str(caught.value)
