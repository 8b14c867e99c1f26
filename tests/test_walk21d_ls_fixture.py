"""Walk 21d: a pytest process killed without its teardown (kill -9, a hard crash) leaves no Label Studio
test server running.

Before, the ``label_studio`` fixture stopped its server in a finaliser and an atexit hook, neither of which
runs on SIGKILL: the server (its own session, so not killed with the terminal's group) ran on for ever.
Now the kernel kills it with its pytest (``PR_SET_PDEATHSIG``), and a pidfile lets the next session reap
what is left anyway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ls_server
from ls_server import _process_start_time, label_studio_executable, reap_stale_servers

REPO_ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.labelstudio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_pytest_takes_its_label_studio_server_with_it(tmp_path):
    if label_studio_executable() is None:
        pytest.skip("Label Studio venv not found: run `make labelstudio` (or set RADLOOP_LS_VENV)")
    marker = tmp_path / "server.json"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_hold.py").write_text(textwrap.dedent(f"""
        import json, time
        from ls_server import label_studio  # noqa: F401

        def test_hold(label_studio):
            pid = label_studio.process.pid
            open({str(marker)!r}, "w").write(json.dumps({{"pid": pid, "pidfile": str(label_studio.pidfile)}}))
            time.sleep(600)
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests"), "HF_HUB_OFFLINE": "1"}
    pytest_process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
         "--basetemp", str(tmp_path / "base"), str(tmp_path / "tests" / "test_hold.py")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server_pid = None
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and time.monotonic() < deadline and pytest_process.poll() is None:
            time.sleep(0.5)
        assert marker.exists(), f"the inner pytest did not start its server (exit {pytest_process.poll()})"
        time.sleep(0.5)  # the marker is written in one call; let it land
        record = json.loads(marker.read_text())
        server_pid = record["pid"]
        assert _alive(server_pid) and Path(record["pidfile"]).exists()
        os.kill(pytest_process.pid, signal.SIGKILL)  # no teardown, no atexit
        pytest_process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server_pid), "the Label Studio server outlived the pytest process killed with -9"
        # its record is left behind, and the next session's reaper removes it without harm (reaped here in a
        # folder of its own: the shared one may hold the records of other live sessions of this checkout)
        left = Path(record["pidfile"])
        assert left.exists()
        (tmp_path / "records").mkdir()
        moved = left.rename(tmp_path / "records" / left.name)
        assert reap_stale_servers(moved.parent) == [] and not moved.exists()
    finally:
        if pytest_process.poll() is None:
            os.killpg(pytest_process.pid, signal.SIGKILL)
        if server_pid is not None and _alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)


def _record(folder: Path, pid: int, owner_pid: int, data_dir: str) -> Path:
    path = folder / f"{pid}.json"
    path.write_text(json.dumps({"pid": pid, "start": _process_start_time(pid), "owner_pid": owner_pid,
                                "owner_start": _process_start_time(owner_pid) or "0", "data_dir": data_dir,
                                "port": 1}))
    return path


def test_reaper_kills_only_servers_whose_pytest_is_gone(tmp_path):
    data_dir = str(tmp_path / "ls-data-stand-in")
    # stand-ins for servers: the data dir in the command line, each in its own process group
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", data_dir],
                              start_new_session=True)
    owned = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", data_dir],
                             start_new_session=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        records = {
            "orphan": _record(tmp_path, orphan.pid, gone.pid, data_dir),  # its pytest died
            "owned": _record(tmp_path, owned.pid, os.getpid(), data_dir),  # a live session's: left alone
            "stranger": _record(tmp_path, stranger.pid, gone.pid, data_dir),  # pid reused by something else
        }
        (tmp_path / "broken.json").write_text("{")
        assert reap_stale_servers(tmp_path) == [orphan.pid]
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert owned.poll() is None and stranger.poll() is None
        assert not records["orphan"].exists() and records["owned"].exists() and not records["stranger"].exists()
        assert (tmp_path / "broken.json").exists()
    finally:
        for process in (orphan, owned, stranger):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_pidfiles_live_in_a_folder_of_this_checkout():
    assert ls_server.PIDFILE_DIR.parent.name == "label-studio-test-servers"
    assert ls_server.PIDFILE_DIR != Path.home()
