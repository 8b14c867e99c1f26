"""The labeling API's names that need no pipeline run (reading stored labels, the rules, the label results)
import without spaCy, and so without torch behind it (seconds in a notebook): spaCy loads when a report is
labelled."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["stored_mentions", "LabelResult", "load_rule_set", "label_catalog",
                                  "ReportLabeler"])
def test_labeling_names_import_without_spacy(name):
    code = (f"import sys, radloop.labeling as api; api.{name}; "
            "print(sorted(m for m in ('spacy', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
