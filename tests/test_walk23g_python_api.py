"""The Python API as a notebook uses it (walk 23g): light imports, a query file given by its path, one filter string."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from radloop.retrieval import CaseNeighbour, match_catalog_file, parse_filters


def _loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(','.join(name for name in {names!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return [name for name in result.stdout.strip().split(",") if name]


@pytest.mark.parametrize("package", ["radloop.core", "radloop.retrieval", "radloop.labeling"])
def test_importing_a_package_does_not_load_pydantic_and_the_config_loader(package):
    """``radloop.core`` resolved its names eagerly: every ``import radloop.retrieval`` paid ~0.2 s for pydantic."""
    assert _loaded_after(f"import {package}", ("pydantic", "radloop.core.config")) == []


def test_core_names_still_resolve_and_are_listed():
    import radloop.core as core
    from radloop.core import ConfigError, resolve_workspace

    assert ConfigError.__module__ == "radloop.core.config" and resolve_workspace.__module__ == "radloop.core.workspace"
    assert set(core.__all__) <= set(dir(core))
    assert all(getattr(core, name) is not None for name in core.__all__)


@pytest.mark.parametrize("module", ["radloop.ssl", "radloop.ssl.finetune_config", "radloop.ssl.settings",
                                    "radloop.ssl.artifacts"])
def test_ssl_modules_without_a_model_do_not_import_torch(module):
    """``radloop.ssl`` imported its encoders eagerly: a config class (TrainConfig, PretrainConfig) cost torch + timm."""
    assert _loaded_after(f"import {module}", ("torch", "timm")) == []


def test_ssl_names_still_resolve():
    import radloop.ssl as ssl_package
    from radloop.ssl import UnreadableImage, embed_images

    assert embed_images.__module__ == "radloop.ssl.encoders" and issubclass(UnreadableImage, Exception)
    assert all(getattr(ssl_package, name) is not None for name in ssl_package.__all__)


def test_match_catalog_file_takes_a_path_as_well_as_bytes(catalog, tmp_path):
    from radloop.core.ingest import ingest_paths

    png = tmp_path / "query.png"
    PILImage.fromarray(np.random.default_rng(3).integers(0, 256, size=(40, 56), dtype=np.uint8)).save(png)
    assert ingest_paths(catalog, [png], progress=False).images_added == 1
    by_bytes = match_catalog_file(catalog, png.read_bytes())
    assert by_bytes is not None and by_bytes.matched_by == "file"
    assert match_catalog_file(catalog, png) == by_bytes  # was TypeError: object supporting the buffer API required
    assert match_catalog_file(catalog, str(png)) == by_bytes  # was TypeError: Strings must be encoded
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.png"):
        match_catalog_file(catalog, tmp_path / "missing.png")
    with pytest.raises(TypeError, match="needs the file's bytes or its path, got int"):
        match_catalog_file(catalog, 3)


def test_parse_filters_reads_one_string_as_one_filter():
    """A bare string was split into characters: ``filter 'b' must look like key=value``."""
    assert parse_filters("body_region=wrist") == {"body_region": ["wrist"]}
    assert parse_filters(["body_region=wrist", "Body-Region=elbow"]) == {"body_region": ["wrist", "elbow"]}
    with pytest.raises(ValueError, match="filter 3 must look like key=value"):  # was TypeError: int is not iterable
        parse_filters([3])


def test_a_case_neighbour_documents_to_dict():
    assert "DataFrame" in (CaseNeighbour.to_dict.__doc__ or "")


def test_threads_searching_a_new_index_build_it_once_and_leave_it_loadable(catalog, monkeypatch):
    """Two threads' first searches each built and saved the index; each save deleted the other's generation,
    leaving a manifest naming missing files (``the index ... cannot be read ... rebuild it``)."""
    import threading

    from radloop.retrieval import IndexManager, index_folder, load_index, search_cases
    from test_retrieval_search import VERSION, _fill

    ids, _ = _fill(catalog, count=12)
    builds, together = [], threading.Barrier(2)
    original = IndexManager.from_catalog.__func__

    def from_catalog(cls, *args, **kwargs):
        builds.append(threading.get_ident())
        try:
            together.wait(timeout=2)  # without the lock both threads are in here at once
        except threading.BrokenBarrierError:
            pass
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(IndexManager, "from_catalog", classmethod(from_catalog))
    found, errors = [], []

    def search():
        try:
            found.append([hit.image_id for hit in search_cases(catalog, case_id=ids[0], k=3, encoder=VERSION)])
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(found) == 2 and found[0] == found[1]
    assert len(builds) == 1
    assert len(IndexManager.load(index_folder(catalog.workspace, VERSION))) == 12
    assert len(load_index(catalog, VERSION)) == 12


def test_a_pil_image_is_searched_by_its_pixels(catalog, tmp_path):
    """A notebook's ``PIL.Image.open(path)`` was refused: ``image must be a file path or a 2-D array``."""
    pytest.importorskip("torch")
    from radloop.retrieval import search_cases
    from search_pair import two_embedded_images

    pixels = two_embedded_images(catalog, "enc-pil", seed=5, source="s{}.png")
    for mode in ("L", "RGB", "P"):  # grey, colour and a palette image all give their pixels
        query = PILImage.fromarray(pixels[1]).convert(mode)
        hits = search_cases(catalog, image=query, k=1)
        assert hits[0].image_id == "I-1", mode
    with pytest.raises(ValueError, match="image must be a file path or a 2-D array, got list"):
        search_cases(catalog, image=[[0, 1], [2, 3]], k=1)


def test_index_folder_lock_is_one_lock_per_folder(tmp_path, monkeypatch):
    from radloop.retrieval.search import index_folder_lock

    monkeypatch.chdir(tmp_path)
    assert index_folder_lock(tmp_path / "indexes" / "v1") is index_folder_lock("indexes/v1")
    assert index_folder_lock(tmp_path / "indexes" / "v1") is not index_folder_lock(tmp_path / "indexes" / "v2")
