"""A real Label Studio server for integration tests (session fixture ``label_studio``).

Starts ``label-studio`` from ``$RADLOOP_LS_VENV`` (default ``~/.cache/radloop/label-studio-venv``, built by
``make labelstudio``) on a free loopback port with its own temporary data dir, SQLite, a preset admin user
and legacy API token, local-files serving rooted at a temporary document root, and ``ML_BLOCK_LOCAL_IP=false``
so that a loopback ML backend is allowed.  The server is stopped at the end of the session, also when tests
fail (fixture finaliser + atexit).  Skips with the reason when the venv is missing.

A pytest process that dies without its teardown (``kill -9``, a hard crash) must not leave servers behind:
each server runs in its own process group and is started with ``PR_SET_PDEATHSIG`` (Linux), so the kernel
kills it when the pytest process that started it goes; and every server is recorded in a pidfile under
:data:`PIDFILE_DIR` (one folder per checkout), from which the next session's first server start reaps those
whose pytest is gone (:func:`reap_stale_servers`; never a live session's).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
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
#: Pidfiles of the test servers this checkout's sessions started (a session's own are removed at its stop).
PIDFILE_DIR = (Path.home() / ".cache" / "radloop" / "label-studio-test-servers"
               / hashlib.sha256(str(Path(__file__).resolve().parents[1]).encode()).hexdigest()[:16])


def _process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None when it is gone:
    with the pid it names one process, not a later one that got the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _die_with_parent(parent: int):
    """``preexec_fn``: the child gets SIGKILL when the process that started it dies (Linux), even by SIGKILL;
    None where there is no ``prctl`` (then the pidfile reaper is left).

    libc is loaded here, in the parent: between fork and exec the child only calls into it (no import, no
    lock that another thread of the parent could hold)."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arrange() -> None:
        prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return arrange


def reap_stale_servers(folder: Path = PIDFILE_DIR) -> list[int]:
    """Kill the test servers recorded in ``folder`` whose pytest process is gone; returns their pids.

    A record names the server (pid, start time, data dir) and the pytest process that started it (pid, start
    time).  A server whose pytest still runs (another session of this checkout) is left alone; a record whose
    server is gone, or whose pid now names another process, is only removed.
    """
    reaped = []
    for record_path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
            owner_alive = _process_start_time(record["owner_pid"]) == record["owner_start"]
            server_alive = _process_start_time(record["pid"]) == record["start"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours: left as it is
        if owner_alive and server_alive:
            continue
        if server_alive:
            try:
                command = Path(f"/proc/{record['pid']}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                command = ""
            if record["data_dir"] in command:  # still that server: its whole group goes
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(record["pid"], signal.SIGKILL)
                reaped.append(record["pid"])
        record_path.unlink(missing_ok=True)
    return reaped


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
            start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
        log.close()
        self._write_pidfile()
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

    @property
    def pidfile(self) -> Path | None:
        """This server's record for :func:`reap_stale_servers` (None before its first start)."""
        return None if self.process is None else PIDFILE_DIR / f"{self.process.pid}.json"

    def _write_pidfile(self) -> None:
        record = {"pid": self.process.pid, "start": _process_start_time(self.process.pid),
                  "owner_pid": os.getpid(), "owner_start": _process_start_time(os.getpid()),
                  "data_dir": str(self.data_dir), "port": self.port}
        PIDFILE_DIR.mkdir(parents=True, exist_ok=True)
        temporary = self.pidfile.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, self.pidfile)

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL)."""
        process = self.process
        if process is not None:
            self.pidfile.unlink(missing_ok=True)
        self.process = None
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
    reap_stale_servers()  # servers an earlier session of this checkout left when it was killed
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
