"""The Makefile's venv recipe: a failed pip install fails `make` (its output is filtered through grep, which
must not hide pip's exit status) and leaves no `.installed` stamp, so the next `make` retries the install."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from conftest import REPO_ROOT

FAKE_PIP = """#!/bin/bash
echo "pip $*" >> "$(dirname "$0")/calls.log"
echo "WARNING: Location 'file:///nowhere/' is ignored: it is neither a file nor a directory."
case " $* " in *" $FAIL_ON "*) echo "ERROR: no matching distribution" >&2; exit 1;; esac
exit 0
"""


def _fake_venv(tmp_path):
    """A venv folder whose pip logs its calls and fails on $FAIL_ON, and whose python succeeds."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, text in (("pip", FAKE_PIP), ("python", "#!/bin/bash\nexit 0\n")):
        path = venv / "bin" / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return venv


@pytest.mark.parametrize("fail_on", ["--upgrade", "torch==2.14.1", "-e", "spacy>=3.8,<3.9"])
def test_a_failed_pip_install_fails_make_venv_and_leaves_no_stamp(tmp_path, fail_on):
    venv = _fake_venv(tmp_path)
    env = {**os.environ, "FAIL_ON": fail_on}
    result = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), f"VENV={venv}", "venv"],
                            capture_output=True, text=True, env=env, timeout=60)
    calls = (venv / "bin" / "calls.log").read_text()
    assert fail_on in calls, calls  # the failing install ran
    assert result.returncode != 0, result.stdout + result.stderr
    assert not (venv / ".installed").exists()
    assert "file:///nowhere/" not in result.stdout + result.stderr  # pip's index notices still filtered
    assert "no matching distribution" in result.stdout + result.stderr  # pip's error reaches the user


def test_make_venv_succeeds_when_every_install_does(tmp_path):
    venv = _fake_venv(tmp_path)
    result = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), f"VENV={venv}", "venv"],
                            capture_output=True, text=True, env={**os.environ, "FAIL_ON": "nothing-fails"},
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (venv / ".installed").exists()
    assert (venv / "bin" / "calls.log").read_text().count("pip install") == 4
