"""Reports -> weak labels (medspacy rules as data) and the Label Studio adapters.

Public API (see notes/CONTRACTS.md): :class:`ReportLabeler`, :func:`label_catalog`, :func:`report_level`,
plus the Open-i/NegBio scorer in :mod:`radloop.labeling.evaluate`.
"""

from .aggregate import report_level
from .labeler import LabelResult, ReportLabeler
from .rules_loader import load_rule_set, rules_version
from .store import LabelRunSummary, label_catalog

__all__ = ["LabelResult", "LabelRunSummary", "ReportLabeler", "label_catalog", "load_rule_set", "report_level",
           "rules_version"]
