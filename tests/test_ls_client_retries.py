"""Which Label Studio failures ``LabelStudioClient.call`` retries, how long it waits, and what it never retries."""

from __future__ import annotations

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from radloop.labeling.ls_client import LabelStudioClient, LabelStudioError, ServerUnavailableError


class _Failing:
    """An SDK call that fails with the given errors in turn, then returns "ok"; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _api_error(status: int, **headers: str) -> ApiError:
    return ApiError(status_code=status, headers=headers, body={"detail": f"status {status}"})


@pytest.fixture()
def client_and_waits():
    waits: list[float] = []
    client = LabelStudioClient("http://ls.test:8080", "tok", retries=4, backoff=0.5, max_retry_after=30.0,
                               sleep=waits.append)
    return client, waits


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_transient_statuses_are_retried_until_they_pass(client_and_waits, status):
    client, waits = client_and_waits
    function = _Failing(*(_api_error(status) for _ in range(3)))
    assert client.call("read project 1", function) == "ok"
    assert function.calls == 4 and waits == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_transient_statuses_give_up_after_the_retries(client_and_waits, status):
    client, waits = client_and_waits
    function = _Failing(*(_api_error(status) for _ in range(10)))
    with pytest.raises(LabelStudioError, match=f"HTTP {status}"):
        client.call("read project 1", function)
    assert function.calls == 5 and len(waits) == 4


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                   httpx.RemoteProtocolError("dropped"), ConnectionResetError("reset"),
                                   TimeoutError("timed out")], ids=lambda error: type(error).__name__)
def test_network_errors_are_retried(client_and_waits, error):
    client, waits = client_and_waits
    function = _Failing(error, error)
    assert client.call("list projects", function) == "ok" and function.calls == 3 and waits == [0.5, 1.0]
    always = _Failing(*([error] * 10))
    with pytest.raises(ServerUnavailableError, match="unreachable.*after 5 attempt"):
        client.call("list projects", always)
    assert always.calls == 5


def test_http_500_is_retried_once(client_and_waits):
    client, waits = client_and_waits
    flaky = _Failing(_api_error(500))
    assert client.call("read project 1", flaky) == "ok" and flaky.calls == 2 and waits == [0.5]
    broken = _Failing(*(_api_error(500) for _ in range(10)))  # a server bug: the same answer every time
    with pytest.raises(LabelStudioError, match="HTTP 500"):
        client.call("read project 1", broken)
    assert broken.calls == 2
    # one 500 among other transient errors still uses up the single 500 retry
    mixed = _Failing(_api_error(500), _api_error(503), _api_error(500), _api_error(503))
    with pytest.raises(LabelStudioError, match="HTTP 500"):
        client.call("read project 1", mixed)
    assert mixed.calls == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501, 505])
def test_permanent_statuses_are_not_retried(client_and_waits, status):
    client, waits = client_and_waits
    function = _Failing(_api_error(status))
    with pytest.raises(LabelStudioError):
        client.call("update project 1", function)
    assert function.calls == 1 and waits == []


def test_malformed_requests_are_not_retried(client_and_waits):
    client, waits = client_and_waits
    function = _Failing(httpx.UnsupportedProtocol("no scheme"))
    with pytest.raises(httpx.UnsupportedProtocol):
        client.call("list projects", function)
    assert function.calls == 1 and waits == []


@pytest.mark.parametrize("error", [_api_error(503), _api_error(500), _api_error(429), httpx.ReadTimeout("slow"),
                                   httpx.ConnectError("refused")], ids=lambda error: repr(error)[:20])
def test_calls_that_are_not_idempotent_run_once(client_and_waits, error):
    client, waits = client_and_waits
    function = _Failing(error)
    with pytest.raises(LabelStudioError):
        client.call("import 3 task(s) into project 1", function, idempotent=False)
    assert function.calls == 1 and waits == []


def test_retry_after_in_seconds_is_honoured_and_capped(client_and_waits):
    client, waits = client_and_waits
    function = _Failing(_api_error(429, **{"Retry-After": "7"}), _api_error(503, **{"retry-after": "3600"}),
                        _api_error(503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
                        _api_error(429, **{"Retry-After": "-5"}))
    assert client.call("list tasks of project 1", function) == "ok"
    # 7 s as asked; an hour capped at max_retry_after; an HTTP date and a negative value: the back-off
    assert function.calls == 5 and waits == [7.0, 30.0, 2.0, 4.0]


def test_retry_after_reaches_the_client_from_a_real_response():
    """Through the SDK's own response handling (httpx.MockTransport): status and header as Label Studio sends them."""
    answers = [httpx.Response(503, headers={"Retry-After": "2"}, json={"detail": "starting"}),
               httpx.Response(500, json={"detail": "Server Error"}),
               httpx.Response(200, json={"id": 1, "email": "a@b.c", "username": "a"})]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers.pop(0)

    waits: list[float] = []
    client = LabelStudioClient("http://ls.test:8080", "tok", retries=3, backoff=0, sleep=waits.append,
                               transport=httpx.MockTransport(handler))
    assert client.whoami() == {"id": 1, "email": "a@b.c"}
    assert len(seen) == 3 and waits == [2.0, 0.0]


def test_posts_that_start_work_are_sent_once():
    """Creating a storage, starting training and "retrieve predictions" are sent once on a 502 (a proxy may have
    lost the response of a request the server did); a storage whose creation response was lost is found by
    listing, so no second storage is made."""
    storages: list[dict] = []
    posts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/api/storages/localfiles/":
            return httpx.Response(200, json=storages)
        posts.append(request.url.path)
        if request.url.path == "/api/storages/localfiles/":
            storages.append({"id": 7, "path": "/data/renders", "project": 3, "title": "radloop renders",
                             "type": "localfiles"})
        return httpx.Response(502, json={"detail": "Bad Gateway"})

    client = LabelStudioClient("http://ls.test:8080", "tok", retries=3, backoff=0, sleep=lambda _s: None,
                               transport=httpx.MockTransport(handler))
    assert client.ensure_local_storage(3, "/data/renders") == 7
    with pytest.raises(LabelStudioError, match="HTTP 502"):
        client.train(5)
    with pytest.raises(LabelStudioError, match="HTTP 502"):
        client.retrieve_predictions(3)
    assert posts == ["/api/storages/localfiles/", "/api/ml/5/train", "/api/dm/actions/"]


def test_the_retry_log_reads_as_a_sentence(client_and_waits, caplog):
    client, _ = client_and_waits
    with caplog.at_level("WARNING"):
        client.call("check the API token", _Failing(_api_error(503)))
    assert "Label Studio: could not check the API token (HTTP 503); retry 1/4 in 0.5 s" in caplog.text
