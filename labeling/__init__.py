"""Reports -> weak labels (medspacy rules as data) and the Label Studio adapters.

Public API (described in ``labeling/README.md``): :class:`ReportLabeler` (``label`` one text,
``label_many`` an iterable of texts), :func:`report_level`, :func:`label_catalog` /
:func:`stored_mentions` (weak labels in the catalog), :func:`iter_reports` (Open-i XML or CSV
reports), :func:`read_label_file` (a ``label-reports`` JSONL file), the Open-i/NegBio scorer :func:`score_reports` / :func:`read_negbio_table`, and
:func:`mention_from_json` / :func:`mention_to_json` (mentions and their JSON dicts; the functions that
take mentions accept either).  The Label Studio adapters are the ``ls_*`` modules.

The names are imported on first use (PEP 562): the Label Studio modules (rounds, the ML backend) do not pay for
medspaCy / spaCy, which only the report labeller needs (seconds and hundreds of MB per command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radloop.core.lazy import lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    "report_level": "aggregate",
    "read_negbio_table": "evaluate", "score_reports": "evaluate", "read_label_file": "label_files",
    "LabelResult": "labeler", "ReportLabeler": "labeler",
    "mention_from_json": "mention_json", "mention_to_json": "mention_json",
    "load_rule_set": "rules_loader", "rules_version": "rules_loader",
    "SourceReport": "sources", "iter_reports": "sources",
    "LabelRunSummary": "store", "label_catalog": "store", "stored_mentions": "store",
}

__all__ = ["LabelResult", "LabelRunSummary", "ReportLabeler", "SourceReport", "iter_reports", "label_catalog",
           "load_rule_set", "mention_from_json", "mention_to_json", "read_label_file", "read_negbio_table", "report_level",
           "rules_version", "score_reports", "stored_mentions"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from radloop.labeling.aggregate import report_level
    from radloop.labeling.evaluate import read_negbio_table, score_reports
    from radloop.labeling.label_files import read_label_file
    from radloop.labeling.labeler import LabelResult, ReportLabeler
    from radloop.labeling.mention_json import mention_from_json, mention_to_json
    from radloop.labeling.rules_loader import load_rule_set, rules_version
    from radloop.labeling.sources import SourceReport, iter_reports
    from radloop.labeling.store import LabelRunSummary, label_catalog, stored_mentions
