"""Which image URLs a Label Studio task may make the ML backend download, and the download itself.

:class:`FetchPolicy` allows, by default, only Label Studio's own URL (plus explicit prefixes); :func:`fetch_image`
checks the URL and every redirect against it, and caps the download's time and size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import cached_property

import httpx
import numpy as np

from radloop.labeling.ls_adapter import AdapterError

__all__ = ["FetchPolicy", "MAX_REDIRECTS", "fetch_image"]


#: Redirect hops followed for one image; every hop is checked against the :class:`FetchPolicy`.
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ALLOW_HINT = ("`radloop serve-backend --allow-url-prefix {origin}/` (or $RADLOOP_BACKEND_ALLOW_URL_PREFIX; "
               "`--label-studio-url` when it is Label Studio itself)")


@dataclass(frozen=True)
class _UrlPrefix:
    """One allowed prefix, parsed with the same URL parser (httpx) that makes the request."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, text: str) -> _UrlPrefix:
        try:
            url = httpx.URL(text.strip())
        except httpx.InvalidURL as error:
            raise ValueError(f"URL prefix {text!r} is not a valid URL: {error}") from None
        if url.scheme not in _DEFAULT_PORTS or not url.host:
            raise ValueError(f"URL prefix {text!r} must be an http(s) URL with a host, "
                             "e.g. https://bucket.example.com/")
        if url.query or url.fragment or url.userinfo:
            raise ValueError(f"URL prefix {text!r} may not carry a query, fragment or credentials")
        return cls(url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme], url.path.rstrip("/"))

    def matches(self, url: httpx.URL) -> bool:
        if (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)) != (self.scheme, self.host, self.port):
            return False
        if not self.path:
            return True
        # a path prefix ends at a segment boundary and cannot be left with dot segments (encoded or not)
        return (url.path == self.path or url.path.startswith(self.path + "/")) and ".." not in url.path.split("/")


@dataclass(frozen=True)
class FetchPolicy:
    """Which image URLs the backend may download for a task (a guard against server-side request forgery).

    A URL is allowed when its scheme, host and port equal those of a prefix and its path lies under the
    prefix's path (``https://bucket.s3.amazonaws.com/`` allows the whole host).  Hosts are compared as
    written, never resolved: an allowed DNS name that resolves (or is rebound) to an internal address is
    still fetched, so this is an allowlist, not DNS-rebinding protection.

    Attributes:
        prefixes: allowed URL prefixes; ``"*"`` allows any http(s) URL.  :func:`radloop.app.backend.create_app`
            adds the Label Studio URL.
        allow_any: fetch any http(s) URL (what the backend did before it had a policy).

    Raises:
        ValueError: a prefix that is not an http(s) URL with a host.
    """

    prefixes: tuple[str, ...] = ()
    allow_any: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", tuple(self.prefixes))
        self._parsed  # noqa: B018  (validate now, not at the first request)

    @cached_property
    def _parsed(self) -> tuple[_UrlPrefix, ...]:
        return tuple(_UrlPrefix.parse(prefix) for prefix in self.prefixes if prefix.strip() != "*")

    @property
    def allows_any(self) -> bool:
        return self.allow_any or any(prefix.strip() == "*" for prefix in self.prefixes)

    def with_prefix(self, prefix: str) -> FetchPolicy:
        """This policy plus ``prefix``."""
        return replace(self, prefixes=(prefix, *self.prefixes))

    def allows(self, url: httpx.URL) -> bool:
        return self.allows_any or any(prefix.matches(url) for prefix in self._parsed)

    def check(self, url: httpx.URL, *, redirected: bool = False) -> None:
        """Raise :class:`AdapterError` naming the host and how to allow it, unless ``url`` is allowed."""
        if self.allows(url):
            return
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        what = f"image URL redirected to {origin}, which" if redirected else f"image host {origin}"
        raise AdapterError(f"{what} is not allowed by the backend's fetch policy (default: Label Studio only); "
                           f"allow it with " + _ALLOW_HINT.format(origin=origin))


def _shown(url: str) -> str:
    """A URL as error messages show it: without its query (signed URLs carry their token there), 80 characters."""
    return url.split("?", 1)[0].split("#", 1)[0][:80]


def fetch_image(url: str, policy: FetchPolicy, label_studio: tuple[str, str | None] | None, *,
                timeout: float = 10.0, max_bytes: int = 256 * 1024 * 1024) -> np.ndarray:
    """Download the image a task points to as a uint8 (H, W) array.

    Relative URLs (``/data/local-files/?d=...``, ``/data/upload/...``) are Label Studio's: they are resolved
    against ``label_studio`` (its base URL and the token from ``/setup``) and sent with that token.  The URL
    and every redirect it answers with must pass ``policy``; httpx drops the token on a redirect to another
    origin.  The whole download, redirects included, must finish within ``timeout`` seconds and stay under
    ``max_bytes``.

    Raises:
        AdapterError: a refused, unreachable, failing, too slow or too large URL, or not a PNG/JPEG image.
    """
    headers = {}
    if url.startswith("/"):
        if label_studio is None:
            raise AdapterError(f"relative image URL {_shown(url)!r} but Label Studio's URL is unknown "
                               "(no --label-studio-url, `ls init` binding or /setup)")
        base, token = label_studio
        url = base.rstrip("/") + url
        if token:
            headers["Authorization"] = f"Token {token}"
    elif not url.startswith(("http://", "https://")):
        raise AdapterError(f"unsupported image URL {_shown(url)!r}")
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            request = client.build_request("GET", url, headers=headers)
            body = _follow(client, request, policy, deadline, timeout, max_bytes)
    except httpx.TimeoutException:
        raise AdapterError(f"image URL did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
        raise AdapterError(f"image URL could not be fetched: {type(error).__name__}: {error}") from None
    from radloop.core.render import decode_upload

    try:
        pixels = decode_upload(body)
    except ValueError as error:
        raise AdapterError(f"image URL did not return a PNG/JPEG image: {error}") from None
    return _as_displayed(pixels, body)


#: EXIF orientation -> the transpose that turns the coded pixels into the view browsers show (Pillow's
#: ``ImageOps.exif_transpose`` table).
_DISPLAY_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                      6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def _as_displayed(pixels: np.ndarray, body: bytes) -> np.ndarray:
    """``pixels`` turned as Label Studio's browser shows the file: a JPEG/PNG with an EXIF orientation tag is
    displayed rotated / flipped, and the boxes and percentages the backend answers with are read on that view."""
    import io

    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(body)) as image:
            orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - the pixels decoded; a damaged EXIF block means no orientation
        return pixels
    name = _DISPLAY_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    if name is None:
        return pixels
    return np.asarray(PILImage.fromarray(pixels).transpose(getattr(PILImage.Transpose, name)))


def _follow(client: httpx.Client, request: httpx.Request, policy: FetchPolicy, deadline: float, timeout: float,
            max_bytes: int) -> bytes:
    """The body at ``request``, following at most :data:`MAX_REDIRECTS` redirects, each one policy-checked."""
    for hop in range(MAX_REDIRECTS + 1):
        policy.check(request.url, redirected=hop > 0)
        if time.monotonic() > deadline:
            raise AdapterError(f"image download took longer than {timeout:g} s")
        response = client.send(request, stream=True)
        try:
            if response.next_request is None:
                return _read_body(response, deadline, timeout, max_bytes)
            request = response.next_request
        finally:
            response.close()
    raise AdapterError(f"image URL redirected more than {MAX_REDIRECTS} times")


def _read_body(response: httpx.Response, deadline: float, timeout: float, max_bytes: int) -> bytes:
    if response.status_code != 200:
        raise AdapterError(f"image URL answered HTTP {response.status_code}")
    too_large = AdapterError(f"image is larger than {max_bytes // 2**20} MiB")
    declared = response.headers.get("content-length") or "0"
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise AdapterError(f"image download took longer than {timeout:g} s")
    return bytes(body)
