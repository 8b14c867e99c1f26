"""FAISS indexes, nearest-neighbour case search, active-learning scoring and selection.

Public API:
- selection: ``STRATEGIES`` (name -> class), ``get_strategy(name, **params)`` (a strategy whose
  ``select(budget, embeddings=..., labeled_mask=..., ...)`` returns indices in priority order), the strategy classes,
  ``kcenter_greedy`` (picks and radii), ``validate_selection_input``;
- indexes: ``IndexManager`` (``build`` / ``from_catalog`` / ``load``; ``search`` gives a ``SearchResult`` of ids and
  distances), ``IndexConfig``, ``choose_factory``, ``index_folder``;
- case search: ``search_cases(catalog, case_id=... | image=..., k=..., filters=...)`` (a list of ``CaseNeighbour``),
  ``parse_filters`` (``"key=value"`` strings -> the ``filters`` dict), ``load_index`` (the workspace's saved index of
  an encoder, brought up to date), ``match_catalog_file`` (the ``CatalogMatch`` a file is, or None).

The names are imported on first use (PEP 562): case search and ``radloop index`` do not pay for scikit-learn
and SciPy, which only the selection strategies need (seconds of start-up per command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radloop.core.lazy import lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    "BadgeSelection": "badge",
    "SelectionStrategy": "base", "validate_selection_input": "base",
    "IndexConfig": "index", "IndexManager": "index", "SearchResult": "index", "choose_factory": "index",
    "index_folder": "index",
    "CatalogMatch": "query_match", "match_catalog_file": "query_match",
    "CaseNeighbour": "search", "load_index": "search", "parse_filters": "search", "search_cases": "search",
    "ClusterMarginSelection": "diversity", "KCenterSelection": "diversity", "TypiClustSelection": "diversity",
    "kcenter_greedy": "kcenter", "kcenter_greedy_reference": "kcenter",
    "STRATEGIES": "strategies", "StratifiedSelection": "strategies", "get_strategy": "strategies",
    "EntropySelection": "uncertainty", "LeastConfidenceSelection": "uncertainty", "MarginSelection": "uncertainty",
    "RandomSelection": "uncertainty", "ReportDisagreementSelection": "uncertainty",
}

__all__ = [
    "STRATEGIES", "get_strategy", "SelectionStrategy", "validate_selection_input",
    "RandomSelection", "LeastConfidenceSelection", "MarginSelection", "EntropySelection",
    "KCenterSelection", "TypiClustSelection", "ClusterMarginSelection", "BadgeSelection",
    "ReportDisagreementSelection", "StratifiedSelection", "kcenter_greedy", "kcenter_greedy_reference",
    "IndexManager", "IndexConfig", "SearchResult", "choose_factory", "index_folder",
    "search_cases", "CaseNeighbour", "load_index", "parse_filters", "CatalogMatch", "match_catalog_file",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from radloop.retrieval.badge import BadgeSelection
    from radloop.retrieval.base import SelectionStrategy, validate_selection_input
    from radloop.retrieval.diversity import ClusterMarginSelection, KCenterSelection, TypiClustSelection
    from radloop.retrieval.index import IndexConfig, IndexManager, SearchResult, choose_factory, index_folder
    from radloop.retrieval.kcenter import kcenter_greedy, kcenter_greedy_reference
    from radloop.retrieval.query_match import CatalogMatch, match_catalog_file
    from radloop.retrieval.search import CaseNeighbour, load_index, parse_filters, search_cases
    from radloop.retrieval.strategies import STRATEGIES, StratifiedSelection, get_strategy
    from radloop.retrieval.uncertainty import (
        EntropySelection, LeastConfidenceSelection, MarginSelection, RandomSelection, ReportDisagreementSelection,
    )
