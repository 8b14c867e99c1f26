"""The app's background labeller build must not import torch at the same time as a page does: torch imported
by two threads at once left one with a half-initialised module ("RuntimeError: operator prims::fmod does not
exist", seen in a page test after the packages' imports became lazy). torch is imported before the thread starts."""

from __future__ import annotations

import subprocess
import sys


def test_torch_is_imported_before_the_build_thread_starts():
    code = ("import sys, threading\n"
            "from radloop.app import views_reports\n"
            "started = []\n"
            "real_thread = threading.Thread\n"
            "class Spy(real_thread):\n"
            "    def start(self):\n"
            "        started.append('torch' in sys.modules)\n"
            "views_reports.threading.Thread = Spy\n"
            "views_reports.labeler_build()\n"
            "print(started)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[True]"
