"""How the ML backend is configured: :class:`BackendSettings` (from the CLI) and its :class:`BackendAuth`.

Split from :mod:`radloop.app.backend`, which re-exports both (import them from there).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

from radloop.app.backend_fetch import FetchPolicy

__all__ = ["BackendAuth", "BackendSettings"]


@dataclass(frozen=True)
class BackendAuth:
    """Credentials the backend requires (none configured: open).  Secrets are hidden from ``repr``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return bool((self.username and self.password) or self.bearer_token)

    def check(self, header: str | None) -> bool:
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.bearer_token:
            # surrogatepass: no presented value can encode to the token's bytes unless it is the token
            return secrets.compare_digest(value.strip().encode("utf-8", "surrogatepass"), self.bearer_token.encode())
        if scheme.lower() == "basic" and self.username and self.password:
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text (headers arrive as latin-1)
                return False
            # both compared whatever the first says: the answer's time must not tell a right user name
            user_ok = secrets.compare_digest(user.encode(), self.username.encode())
            password_ok = secrets.compare_digest(password.encode(), self.password.encode())
            return user_ok and password_ok
        return False


@dataclass(frozen=True)
class BackendSettings:
    """Backend configuration (from the CLI; secrets hidden from ``repr``)."""

    task: str = "findings"
    debounce_s: float = 30.0
    max_tasks: int = 64  # tasks answered per /predict request; the rest get no prediction (asked again later)
    # tasks not reached by then are deferred too, and no download runs past it; the batch inference comes on top
    # (64 CPU cases ~3.6 s here), under the 30-s timeout `ls connect-backend` sets in Label Studio
    predict_budget_s: float = 20.0
    image_fetch_timeout_s: float = 10.0  # whole download of one image, not per read
    max_image_bytes: int = 256 * 1024 * 1024  # a larger image reply is refused while it downloads
    max_body_bytes: int = 32 * 1024 * 1024  # request bodies (Label Studio sends every selected task at once)
    train_config: str | None = None  # fine-tuning job config run in the background (None: record only)
    label_studio_url: str | None = None  # where images are fetched from (None: the workspace's ls-init binding)
    label_studio_token: str | None = field(default=None, repr=False)  # for pulls; default: the /setup token
    model_check_s: float = 5.0  # how often the registry is asked whether the current model changed
    fetch_policy: FetchPolicy = FetchPolicy()  # image URLs allowed besides the Label Studio URL
    auth: BackendAuth = BackendAuth()
