"""A new user's walkthrough of case search, indexes and the retrieval benchmarks: what they get wrong must end in
one clear line naming the problem (a damaged index, impossible index settings, a file that is not an NPZ or COCO
file), and the benchmarks must measure what they say (recall against exact search on the vectors the index sees).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from radloop.retrieval import IndexConfig, IndexManager, index_folder, search_cases
from test_retrieval_search import VERSION, _fill


def _invoke(arguments: list[str]):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), arguments)


def _refused(result, *phrases: str) -> None:
    """A one-line ``error:`` exit (code 2, no traceback) that says each of ``phrases``."""
    printed = result.output
    assert result.exit_code == 2, (printed, result.exception)
    assert "error:" in printed and "Traceback" not in printed, printed
    flat = " ".join(printed.split())  # the console may wrap a long line
    for phrase in phrases:
        assert phrase in flat, printed


def _generation(folder, kind: str):
    """The file of one kind (``index``, ``ids``) that the saved manifest names."""
    return folder / json.loads((folder / "manifest.json").read_text())["files"][kind]


# ------------------------------------------------------------------------------------------ damaged index files
@pytest.mark.parametrize("damage", ["truncated index", "missing index", "garbled ids", "garbled manifest"])
def test_a_damaged_saved_index_is_one_error_that_says_to_rebuild(catalog, workspace, damage):
    """`radloop search` on an index file cut short (a full disk, a copy interrupted) used to end in FAISS's
    RuntimeError traceback; a garbled manifest in a bare JSON message that named no file."""
    ids, _ = _fill(catalog, count=30)
    built = _invoke(["index", "build", "--encoder", VERSION, "--workspace", str(workspace.root)])
    assert built.exit_code == 0, built.output
    folder = index_folder(catalog.workspace, VERSION)
    if damage == "truncated index":
        path = _generation(folder, "index")
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "missing index":
        _generation(folder, "index").unlink()
    elif damage == "garbled ids":
        _generation(folder, "ids").write_text("{not json")
    else:
        (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read .*rebuild it with `radloop index build --encoder"):
        IndexManager.load(folder, model_version=VERSION)
    result = _invoke(["search", "--case", ids[0], "--encoder", VERSION, "--workspace", str(workspace.root)])
    _refused(result, f"the index at {folder} cannot be read", f"radloop index build --encoder {VERSION}")
    assert "index_read.cpp" not in result.output and "Error in" not in result.output
    rebuilt = _invoke(["index", "build", "--encoder", VERSION, "--workspace", str(workspace.root)])
    assert rebuilt.exit_code == 0, rebuilt.output  # what the message says to run mends it
    assert len(search_cases(catalog, case_id=ids[0], k=3, encoder=VERSION)) == 3


def test_index_info_on_a_garbled_manifest_is_one_error(catalog, workspace):
    _fill(catalog, count=20)
    assert _invoke(["index", "build", "--encoder", VERSION, "--workspace", str(workspace.root)]).exit_code == 0
    manifest = index_folder(catalog.workspace, VERSION) / "manifest.json"
    for garbage in ("{not json", "{}"):
        manifest.write_text(garbage)
        result = _invoke(["index", "info", "--encoder", VERSION, "--workspace", str(workspace.root)])
        _refused(result, "manifest.json", f"rebuild it with `radloop index build --encoder {VERSION}`")


def test_a_bad_factory_string_is_named_without_faiss_internals():
    vectors = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
    with pytest.raises(ValueError) as caught:
        IndexManager.build(vectors, list(range(50)), "v", IndexConfig(factory="bogus"))
    message = str(caught.value)
    assert message == "bad FAISS factory string 'bogus': could not parse index string bogus", message


# ------------------------------------------------------------------------------------------ impossible settings
@pytest.mark.parametrize("setting", ["nprobe=0", "nprobe=-3", "ef_search=0", "coarse_ef_search=0",
                                     "train_points_per_cell=0", "train_iterations=0", "exact_max=-1",
                                     "memory_budget_mb=0"])
def test_index_settings_that_cannot_work_are_refused_when_read(setting):
    """`--set nprobe=-3` used to end in a SWIG OverflowError traceback, `train_points_per_cell=0` in a FAISS
    assertion, and `ef_search=0` or `nprobe=0` silently searched with fewer neighbours or another nprobe."""
    from radloop.app.cli_bench import bench_retrieval_command  # noqa: F401 (the command reads the same config)
    from radloop.core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=setting.split("=")[0]):
        load_config(None, IndexConfig, [setting])
    result = _invoke(["bench", "retrieval", "--n", "1000", "--dim", "8", "--queries", "10", "--set", setting])
    _refused(result, setting.split("=")[0])


# ------------------------------------------------------------------------------------------ --embeddings files
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_embeddings_that_are_not_an_npz_archive_are_one_error(tmp_path):
    """A text file used to end in numpy's 'pickled (object) data' traceback; a bare .npy array in a message about
    a missing 'vectors' array; 1-D vectors in 'not enough values to unpack'."""
    text = tmp_path / "vectors.txt"
    text.write_text("0.1 0.2\n")
    _refused(_invoke(["bench", "retrieval", "--queries", "10", "--embeddings", str(text)]),
             f"--embeddings {text} is not an NPZ archive", "numpy.savez")
    bare = tmp_path / "vectors.npy"
    np.save(bare, np.zeros((30, 4), np.float32))
    _refused(_invoke(["bench", "retrieval", "--queries", "10", "--embeddings", str(bare)]),
             "is a single .npy array, not an NPZ archive")
    flat = _npz(tmp_path / "flat.npz", vectors=np.ones(40, np.float32))
    _refused(_invoke(["bench", "retrieval", "--queries", "10", "--embeddings", flat]),
             "'vectors' must be a non-empty numeric (N, D) array", "shape (40,)")
    mismatch = _npz(tmp_path / "mismatch.npz", vectors=np.ones((40, 4), np.float32),
                    file_names=np.asarray([f"{i}.png" for i in range(10)]))
    _refused(_invoke(["bench", "retrieval", "--queries", "10", "--embeddings", mismatch]),
             "10 file names for 40 vectors")
    # an archive without 'vectors' named three arrays as expected; it now says what it holds (lead, walk 22g)
    other = _npz(tmp_path / "other.npz", embeddings=np.ones((40, 4), np.float32))
    _refused(_invoke(["bench", "retrieval", "--queries", "10", "--embeddings", other]),
             "has no 'vectors' array (it holds: embeddings); only 'vectors' is required")


def test_nan_rows_are_numbered_as_in_the_embeddings_file(tmp_path):
    """`bench retrieval` shuffles the vectors into database and queries before the index checks them, so the
    NaN row it named was a row of the shuffled array, not of the user's file."""
    vectors = np.random.default_rng(0).standard_normal((400, 8)).astype(np.float32)
    vectors[5, 2] = np.nan
    path = _npz(tmp_path / "nan.npz", vectors=vectors)
    _refused(_invoke(["bench", "retrieval", "--queries", "10", "--embeddings", path]),
             f"the vectors in {path} contain NaN or infinite values in 1 row(s), e.g. rows [5]")


def test_active_learning_refuses_a_file_that_is_not_coco_json_naming_it(tmp_path):
    from radloop.retrieval.al_tasks import load_coco_targets

    text = tmp_path / "pool.json"
    text.write_text("not json")
    with pytest.raises(ValueError, match=f"{text} is not a COCO JSON file"):
        load_coco_targets(text)
    binary = tmp_path / "pool.npz"
    binary.write_bytes(b"PK\x03\x04\xdb\xff\x00")
    entry = tmp_path / "entry.json"
    entry.write_text(json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}))
    vectors = _npz(tmp_path / "e.npz", vectors=np.ones((2, 4), np.float32), file_names=np.asarray(["a", "b"]))
    for path, phrase in ((text, "is not a COCO JSON file"), (binary, "is not a COCO JSON file"),
                         (entry, "lacks or mistypes 'file_name'")):
        result = _invoke(["bench", "active-learning", "--train-coco", str(path), "--train-images", str(tmp_path),
                          "--embeddings", vectors, "--out", str(tmp_path / "al.json")])
        _refused(result, str(path), phrase)


def test_bench_selection_refuses_an_empty_strategy_list():
    _refused(_invoke(["bench", "selection", "--n", "100", "--dim", "4", "--budget", "5", "--strategies", " , "]),
             "names no strategy")


# ------------------------------------------------------------------------------------------ what is measured
def test_bench_retrieval_recall_compares_with_exact_search_on_the_same_normalised_vectors():
    """Cosine indexes L2-normalise the database; the exact reference searched the raw vectors, so real
    (unnormalised) embeddings showed an exact Flat index at recall@10 ~0.6 against "exact" search."""
    from radloop.retrieval.scale_bench import bench_retrieval

    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((1500, 16)) * rng.uniform(0.2, 5.0, (1500, 1))).astype(np.float32)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    result = bench_retrieval(vectors, queries, single_queries=5, repeats=1)
    assert result["factory"] == "Flat" and result["recall_at_10"] == 1.0, result


def test_an_array_query_that_cannot_be_embedded_is_named_by_its_shape(catalog):
    """The app passes uploads as arrays: a failing one used to print every pixel value in the message."""
    pytest.importorskip("torch")
    from search_pair import two_embedded_images

    two_embedded_images(catalog, "enc-walk")
    with pytest.raises(ValueError) as caught:
        search_cases(catalog, image=np.zeros((3, 40, 40, 2)), k=1)
    message = str(caught.value)
    assert "an array of shape (3, 40, 40, 2), dtype float64" in message and "[[" not in message, message
