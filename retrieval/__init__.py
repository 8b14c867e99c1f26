"""FAISS indexes, nearest-neighbour case search, active-learning strategies."""

__all__: list[str] = []
