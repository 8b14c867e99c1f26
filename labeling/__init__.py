"""Reports -> weak labels (medspacy rules as data) and the Label Studio adapters.

Public API (described in ``labeling/README.md``): :class:`ReportLabeler` (``label`` one text,
``label_many`` an iterable of texts), :func:`report_level`, :func:`label_catalog` /
:func:`stored_mentions` (weak labels in the catalog), :func:`iter_reports` (Open-i XML or CSV
reports), the Open-i/NegBio scorer :func:`score_reports` / :func:`read_negbio_table`, and
:func:`mention_from_json` / :func:`mention_to_json` (mentions and their JSON dicts; the functions that
take mentions accept either).  The Label Studio adapters are the ``ls_*`` modules.
"""

from .aggregate import report_level
from .evaluate import read_negbio_table, score_reports
from .labeler import LabelResult, ReportLabeler
from .mention_json import mention_from_json, mention_to_json
from .rules_loader import load_rule_set, rules_version
from .sources import SourceReport, iter_reports
from .store import LabelRunSummary, label_catalog, stored_mentions

__all__ = ["LabelResult", "LabelRunSummary", "ReportLabeler", "SourceReport", "iter_reports", "label_catalog",
           "load_rule_set", "mention_from_json", "mention_to_json", "read_negbio_table", "report_level",
           "rules_version", "score_reports", "stored_mentions"]
