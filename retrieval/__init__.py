"""FAISS indexes, nearest-neighbour case search, active-learning scoring and selection.

Public API:
- selection: ``STRATEGIES``, ``get_strategy``, the strategy classes, ``kcenter_greedy``;
- indexes: ``IndexManager``, ``IndexConfig``, ``choose_factory``;
- case search: ``search_cases``, ``CaseNeighbour``.
"""

from radloop.retrieval.badge import BadgeSelection
from radloop.retrieval.base import SelectionStrategy, validate_selection_input
from radloop.retrieval.index import IndexConfig, IndexManager, SearchResult, choose_factory, index_folder
from radloop.retrieval.search import CaseNeighbour, load_index, parse_filters, search_cases
from radloop.retrieval.diversity import ClusterMarginSelection, KCenterSelection, TypiClustSelection
from radloop.retrieval.kcenter import kcenter_greedy, kcenter_greedy_reference
from radloop.retrieval.strategies import STRATEGIES, StratifiedSelection, get_strategy
from radloop.retrieval.uncertainty import (
    EntropySelection, LeastConfidenceSelection, MarginSelection, RandomSelection, ReportDisagreementSelection,
)

__all__ = [
    "STRATEGIES", "get_strategy", "SelectionStrategy", "validate_selection_input",
    "RandomSelection", "LeastConfidenceSelection", "MarginSelection", "EntropySelection",
    "KCenterSelection", "TypiClustSelection", "ClusterMarginSelection", "BadgeSelection",
    "ReportDisagreementSelection", "StratifiedSelection", "kcenter_greedy", "kcenter_greedy_reference",
    "IndexManager", "IndexConfig", "SearchResult", "choose_factory", "index_folder",
    "search_cases", "CaseNeighbour", "load_index", "parse_filters",
]
