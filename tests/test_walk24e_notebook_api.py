"""The Python API as a notebook uses it (walk 24e): quiet embedding, typed public signatures, module exports."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import pytest

EMBED_IN_A_NOTEBOOK = textwrap.dedent("""
    import sys
    import numpy as np
    from PIL import Image
    from radloop.core.catalog import Catalog
    from radloop.core.ingest import ingest_paths
    from radloop.core.workspace import resolve_workspace
    from radloop.ssl import random_encoder
    from radloop.ssl.embed import embed_catalog

    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, size=(48, 40), dtype=np.uint8)).save(f"image{index}.png")
    catalog = Catalog.open(resolve_workspace("ws"))
    ingest_paths(catalog, ["image0.png", "image1.png", "image2.png"], progress=False, workers=1)
    first = sorted(catalog.workspace.renders_dir.rglob("*.png"))[0]
    first.write_bytes(b"not a png")  # a warning the user must still see
    print("--- embed_catalog starts", file=sys.stderr, flush=True)
    summary = embed_catalog(catalog, random_encoder("resnet18", 32), progress=False, accelerator="cpu")
    print("EMBEDDED", summary["embedded"], summary["skipped"])
    import logging
    print("LEVEL AFTER", logging.getLogger("lightning.pytorch").level)  # the user's own Trainer still talks
""")


def test_embed_catalog_without_progress_prints_only_what_the_user_must_see(tmp_path):
    """``embed_catalog(progress=False)`` printed Lightning's ``GPU available: ...``, ``TPU available: ...``, two
    ``Tip: ... litlogger / litmodels`` adverts and its ``LeafSpec`` deprecation into the notebook."""
    pytest.importorskip("lightning")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RADLOOP_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", EMBED_IN_A_NOTEBOOK], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EMBEDDED 2 1" in result.stdout
    during = result.stderr.split("--- embed_catalog starts", 1)[1]
    for chatter in ("GPU available", "TPU available", "Tip:", "litlogger", "litmodels", "LeafSpec"):
        assert chatter not in during + result.stdout, during
    assert "skipping unreadable image" in during  # radloop's own warning still shows
    assert "LEVEL AFTER 20" in result.stdout  # Lightning's INFO level is back once embedding is done


def test_search_functions_type_the_catalog_and_every_encoder_form():
    """``search_cases(encoder=...)`` was typed ``str | None`` though it takes a folder or a loaded encoder, and no
    public search function typed its ``catalog``: an IDE or ``help()`` gave a notebook user nothing to go on."""
    import typing

    from PIL.Image import Image as PILImage

    from radloop.core.catalog import Catalog
    from radloop.retrieval import search
    from radloop.ssl.encoders import EncoderBundle

    names = {"Catalog": Catalog, "EncoderBundle": EncoderBundle, "PILImage": PILImage}
    public = [getattr(search, name) for name in search.__all__]
    functions = [value for value in public if inspect.isfunction(value) and value.__module__ == search.__name__]
    with_catalog = [function for function in functions if "catalog" in inspect.signature(function).parameters]
    assert {function.__name__ for function in with_catalog} >= {"search_cases", "load_index", "resolve_encoder_version",
                                                                "resolve_search_encoder", "index_coverage"}
    for function in with_catalog:
        hints = typing.get_type_hints(function, localns=names)  # every annotation names something real
        assert hints["catalog"] is Catalog, function.__name__
    for function in (search.search_cases, search.resolve_search_encoder, search.resolve_encoder_version):
        encoder = typing.get_type_hints(function, localns=names)["encoder"]
        assert set(typing.get_args(encoder)) >= {str, search.Path, EncoderBundle, type(None)}, function.__name__
    image = typing.get_type_hints(search.search_cases, localns=names)["image"]
    assert PILImage in typing.get_args(image)
    assert "Returns:" in (search.search_cases.__doc__ or "")


@pytest.mark.parametrize("module, public, private", [
    ("radloop.retrieval.base", {"SelectionStrategy", "SelectionInput", "validate_selection_input", "Interval",
                                "Options", "check_random_state"}, {"np", "warnings", "BaseEstimator", "dataclass"}),
    ("radloop.retrieval.strategies", {"STRATEGIES", "get_strategy", "StratifiedSelection", "UNKNOWN_STRATUM"},
     {"np", "math", "did_you_mean", "SelectionInput", "MarginSelection"}),
])
def test_strategy_modules_name_their_public_api(module, public, private):
    """``retrieval/base.py`` and ``strategies.py`` had no ``__all__``: ``from ... import *`` brought numpy, sklearn's
    BaseEstimator and the other modules' strategy classes along, and ``help()`` listed them as the module's own."""
    namespace: dict = {}
    exec(f"from {module} import *", namespace)  # noqa: S102 - a fixed import statement
    assert public <= set(namespace)
    assert not private & set(namespace)
