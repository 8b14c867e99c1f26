"""Label Studio client errors, the API token's environment variables, and which failures a retry may cure.

Split out of :mod:`radloop.labeling.ls_client`, which re-exports every name here (import them from either).
"""

from __future__ import annotations

__all__ = [
    "RETRY_STATUSES", "SERVER_ERROR_RETRIES", "TOKEN_ENV_VARS", "AuthenticationError", "LabelStudioError",
    "ProjectNotFoundError", "ServerUnavailableError", "TaskNotFoundError", "token_from_env",
]

#: Environment variables the token may come from (first set wins).
TOKEN_ENV_VARS = ("LABEL_STUDIO_API_KEY", "RADLOOP_LS_TOKEN")


class LabelStudioError(RuntimeError):
    """A Label Studio request failed; the message says which request and why."""


class AuthenticationError(LabelStudioError):
    """The server rejected the API token (HTTP 401/403)."""


class ServerUnavailableError(LabelStudioError):
    """The server could not be reached (down, restarting, wrong URL) after all retries."""


class ProjectNotFoundError(LabelStudioError):
    """The project does not exist (deleted in Label Studio?)."""


class TaskNotFoundError(LabelStudioError):
    """The task does not exist (deleted in Label Studio?)."""


def token_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The API token from ``LABEL_STUDIO_API_KEY`` or ``RADLOOP_LS_TOKEN`` (None when neither is set)."""
    import os

    environ = os.environ if environ is None else environ
    for name in TOKEN_ENV_VARS:
        if environ.get(name):
            return environ[name]
    return None


#: HTTP statuses another attempt may cure: request timeout, rate limit, gateway and unavailable errors.
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
#: How many times one call retries HTTP 500 (Label Studio's answer to its own bugs as well as to overload).
SERVER_ERROR_RETRIES = 1


def _unreachable(error: BaseException) -> bool:
    """A network failure: no connection, a timeout, a dropped connection (not a malformed request)."""
    import httpx

    if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return False
    return isinstance(error, (httpx.TransportError, ConnectionError, TimeoutError))


def _status(error: BaseException) -> int | None:
    from label_studio_sdk.core.api_error import ApiError

    return error.status_code if isinstance(error, ApiError) else None


def _retry_after(error: BaseException) -> float | None:
    """The seconds a ``Retry-After`` header asks for (None without one, or when it is an HTTP date)."""
    headers = getattr(error, "headers", None) or {}
    value = next((value for key, value in headers.items() if str(key).lower() == "retry-after"), None)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds <= float("inf") else None  # not negative, not NaN
