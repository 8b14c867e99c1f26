"""Building the report labeller silences spaCy's W036 note (a matcher without token patterns) for spaCy and
medspacy only: it added a process-wide "ignore W036" filter to the host (a notebook's own matchers included)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import warnings
seen = []
warnings.showwarning = lambda message, *rest, **kw: seen.append(str(message))
from radloop.labeling import ReportLabeler
labeler = ReportLabeler()
labeler.label("FINDINGS: Healed right rib fracture. No pneumothorax.")
ours = [f for f in warnings.filters if f[1] is not None and "W036" in f[1].pattern and f[0] == "ignore"]
print(len([s for s in seen if "W036" in s]), all(f[3] is not None for f in ours))
"""


def test_w036_silenced_for_spacy_only():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, check=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.stdout.split()[-2:] == ["0", "True"]
