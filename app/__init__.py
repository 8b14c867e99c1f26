"""Entry points: the CLI (`radloop`), the Streamlit app (app/main.py), the Label Studio ML backend."""

__all__: list[str] = []
