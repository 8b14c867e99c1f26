"""Round control for the app: which round functions and strategies exist, Label Studio reachability,
and a guarded call of ``radloop.app.rounds.start_round`` / ``finish_round`` with progress reporting.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from radloop.app import next_steps
from radloop.core.catalog import Catalog

__all__ = ["LabelStudioStatus", "RoundsApi", "ActionResult", "rounds_api", "strategy_names",
           "label_studio_status", "run_round_action", "DEFAULT_LABEL_STUDIO_URL"]

logger = logging.getLogger(__name__)

DEFAULT_LABEL_STUDIO_URL = "http://localhost:8080"
#: Strategies listed when the retrieval part is not installed (the round scripts validate the name).
FALLBACK_STRATEGIES = ("random",)


@dataclass(frozen=True)
class RoundsApi:
    """The round functions, their default settings, or the reason they are not available."""

    start: Callable[..., Any] | None
    finish: Callable[..., Any] | None
    message: str | None
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.start is not None and self.finish is not None


def rounds_api() -> RoundsApi:
    """Import ``radloop.app.rounds`` and return its ``start_round`` / ``finish_round``."""
    try:
        from radloop.app import rounds
    except ImportError as error:
        logger.info("round scripts unavailable: %s", error)
        return RoundsApi(None, None, next_steps.NO_ROUND_SCRIPTS)
    start, finish = getattr(rounds, "start_round", None), getattr(rounds, "finish_round", None)
    if start is None or finish is None:
        return RoundsApi(None, None, next_steps.NO_ROUND_SCRIPTS)
    defaults: dict[str, Any] = {}
    config_class = getattr(rounds, "RoundConfig", None)
    if config_class is not None:
        try:
            defaults = dict(config_class().model_dump())
        except (TypeError, ValueError):  # a config that needs arguments: no defaults to show
            defaults = {}
    return RoundsApi(start, finish, None, defaults)


def strategy_names() -> list[str]:
    """Names from the selection-strategy registry (``radloop.retrieval.STRATEGIES``)."""
    try:
        from radloop.retrieval import STRATEGIES
    except ImportError:
        return list(FALLBACK_STRATEGIES)
    return sorted(STRATEGIES)


@dataclass(frozen=True)
class LabelStudioStatus:
    """Whether the Label Studio server answers, and what to do when it does not."""

    url: str
    reachable: bool
    message: str


def label_studio_status(url: str | None = None, *, timeout: float = 1.5) -> LabelStudioStatus:
    """Probe Label Studio's ``/health`` endpoint.

    Args:
        url: server URL; default ``$LABEL_STUDIO_URL`` or :data:`DEFAULT_LABEL_STUDIO_URL`.
        timeout: seconds to wait for the answer.
    """
    import httpx

    url = (url or os.environ.get("LABEL_STUDIO_URL") or DEFAULT_LABEL_STUDIO_URL).rstrip("/")
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
        reachable = response.status_code < 500
        detail = f"HTTP {response.status_code}"
    except httpx.HTTPError as error:
        reachable, detail = False, type(error).__name__
    if reachable:
        return LabelStudioStatus(url, True, f"Label Studio answers at {url}.")
    return LabelStudioStatus(url, False, (
        f"Label Studio is not reachable at {url} ({detail}). Start it (`label-studio start`) and set "
        "LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY, or tick *Simulate* to answer from the dataset's ground "
        "truth; without a server the round writes the Label Studio import file instead of pushing tasks."))


@dataclass(frozen=True)
class ActionResult:
    """Outcome of a round action: ``ok`` with the function's summary, or a message for the user."""

    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def _summary(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    for name in ("to_json", "model_dump", "to_dict", "_asdict"):
        if hasattr(result, name):
            return dict(getattr(result, name)())
    if hasattr(result, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(result)
    return {"result": str(result)}


def run_round_action(function: Callable[..., Any], catalog: Catalog, *,
                     progress: Callable[[str, float], None] | None = None, **kwargs: Any) -> ActionResult:
    """Call a round function; a failure comes back as a message (traceback in the log), never as an exception.

    ``progress(message, fraction)`` is passed on when the function takes a ``progress`` argument. Keyword
    arguments the function does not accept, and None values, are dropped (None means "the default").
    """
    parameters = inspect.signature(function).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    call = {name: value for name, value in kwargs.items()
            if value is not None and (takes_any or name in parameters)}
    if progress is not None and ("progress" in parameters or takes_any):
        call["progress"] = progress
    try:
        result = function(catalog, **call)
    except Exception as error:  # noqa: BLE001 - a failed step is resumable: report it, keep the page
        logger.warning("round action %s failed", getattr(function, "__name__", function), exc_info=True)
        return ActionResult(False, message=f"{type(error).__name__}: {error}")
    return ActionResult(True, summary=_summary(result))
