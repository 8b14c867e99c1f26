"""Reports -> weak labels (medspacy rules as data) and the Label Studio adapters."""

__all__: list[str] = []
