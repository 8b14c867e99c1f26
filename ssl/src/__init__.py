"""Self-supervised encoders, pretraining (MAE, SimCLR), fine-tuning heads and embedding extraction."""

__all__: list[str] = []
