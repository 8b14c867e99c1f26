"""A real Label Studio server for integration tests (session fixture ``label_studio``).

Starts ``label-studio`` from ``$RADLOOP_LS_VENV`` (default ``~/.cache/radloop/label-studio-venv``, built by
``make labelstudio``) on a free loopback port with its own temporary data dir, SQLite, a preset admin user
and legacy API token, local-files serving rooted at a temporary document root, and ``ML_BLOCK_LOCAL_IP=false``
so that a loopback ML backend is allowed.  The server is stopped at the end of the session, also when tests
fail (fixture finaliser + atexit).  Skips with the reason when the venv is missing.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEFAULT_VENV = Path.home() / ".cache" / "radloop" / "label-studio-venv"
STARTUP_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def label_studio_executable() -> Path | None:
    venv = Path(os.environ.get("RADLOOP_LS_VENV") or DEFAULT_VENV).expanduser()
    executable = venv / "bin" / "label-studio"
    return executable if executable.exists() else None


@dataclass
class LabelStudioServer:
    """One Label Studio process; :meth:`stop` / :meth:`start` keep data dir, port and token."""

    executable: Path
    root: Path
    port: int
    token: str = field(default_factory=lambda: secrets.token_hex(20), repr=False)
    username: str = field(default_factory=lambda: f"radloop-{secrets.token_hex(4)}@example.com")
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "ls-data"

    @property
    def document_root(self) -> Path:
        """Files under this folder can be served by local-files storage (put test workspaces here)."""
        return self.root / "files"

    @property
    def log_path(self) -> Path:
        return self.root / "label-studio.log"

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update({
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",  # else the ML backend's webhook to 127.0.0.1 is refused
            "SECRET_KEY": "radloop-tests-" + "0" * 32,
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        })
        return env

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Start (or restart) the server and wait until it answers on :attr:`port` with the preset token."""
        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.document_root.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(self.executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            env=self.environment(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self.process.returncode}; log: {self._log_tail()}")
            moved = re.findall(r"Starting development server at http://127\.0\.0\.1:(\d+)/", self._log_tail(4000))
            if moved and int(moved[-1]) != self.port:  # a busy port makes Label Studio move silently
                self.stop()
                raise RuntimeError(f"Label Studio moved to port {moved[-1]} instead of {self.port} (busy port)")
            try:
                health = httpx.get(f"{self.url}/health", timeout=2)
                if health.status_code == 200:
                    whoami = httpx.get(f"{self.url}/api/current-user/whoami",
                                       headers={"Authorization": f"Token {self.token}"}, timeout=5)
                    if whoami.status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Label Studio did not become healthy in {timeout:.0f} s; log: {self._log_tail()}")

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        # wait until the port is free again so that a restart gets the same port
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)

    def _log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return "(no log)"


def _start_on_free_port(executable: Path, root: Path) -> LabelStudioServer:
    last_error = None
    for _ in range(3):  # a port taken between probing and binding: try another
        server = LabelStudioServer(executable=executable, root=root, port=_free_port())
        try:
            server.start()
            return server
        except RuntimeError as error:
            last_error = error
            if "moved to port" not in str(error):
                break
    raise RuntimeError(f"could not start Label Studio: {last_error}")


def _migrated_template(executable: Path) -> Path | None:
    """A data dir with Label Studio's database already migrated (cached next to its venv).

    Migrating a fresh SQLite database takes minutes on a busy 2-core machine; every test session copies
    this template instead and only creates its own user and token on start.  None when the cache folder is
    not writable (then each session migrates its own).
    """
    venv = executable.parent.parent
    versions = sorted(path.name for path in venv.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    version = versions[-1].removeprefix("label_studio-").removesuffix(".dist-info") if versions else "unknown"
    template = venv.parent / f"label-studio-{version}-migrated-data"
    if (template / "label_studio.sqlite3").exists():
        return template
    import tempfile

    try:
        work = Path(tempfile.mkdtemp(prefix="ls-template-", dir=template.parent))
    except OSError:  # read-only cache: every session migrates its own database
        return None
    server = _start_on_free_port(executable, work)
    server.stop()
    try:
        os.replace(server.data_dir, template)  # atomic: a concurrent session either sees it or makes its own
    except OSError:
        pass
    shutil.rmtree(work, ignore_errors=True)
    return template if (template / "label_studio.sqlite3").exists() else None


def start_label_studio(root: Path) -> LabelStudioServer:
    """Start a fresh server rooted at ``root`` (own data dir copied from the migrated template, own user)."""
    executable = label_studio_executable()
    if executable is None:
        pytest.skip(f"Label Studio venv not found ({os.environ.get('RADLOOP_LS_VENV') or DEFAULT_VENV}): "
                    "run `make labelstudio` (or set RADLOOP_LS_VENV)")
    template = _migrated_template(executable)
    if template is not None:
        shutil.copytree(template, root / "ls-data")
    return _start_on_free_port(executable, root)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> LabelStudioServer:
    """A running Label Studio server for the whole test session (stopped at the end, even on failure)."""
    server = start_label_studio(tmp_path_factory.mktemp("label-studio"))
    atexit.register(server.stop)
    try:
        yield server
    finally:
        server.stop()
