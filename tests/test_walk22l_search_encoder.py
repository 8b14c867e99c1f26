"""``radloop search --encoder FOLDER`` loads the encoder once (walk 22g saw it loaded twice: once by the search,
once more for the output's version), and a query image is embedded with that folder's encoder even when the
workspace has not registered it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from radloop.core.embeddings import write_shard
from test_retrieval_search import add_study_image


@pytest.fixture
def folder_encoder(catalog, tmp_path):
    """An unregistered random ResNet-18 (32 px) saved in a folder, and 12 catalog images embedded with it."""
    from radloop.ssl import embed_images, random_encoder, save_encoder

    bundle = random_encoder("resnet18", 32, seed=0)
    folder = tmp_path / "enc"
    saved = save_encoder(bundle.model.backbone, folder, timm_name="resnet18", image_size=32, method="random",
                         version="enc-walk22l")
    dim = embed_images(saved, [np.zeros((32, 32), dtype=np.uint8)]).shape[1]
    with catalog.session() as session:
        ids = [add_study_image(session, i, "wrist") for i in range(12)]
    vectors = np.random.default_rng(0).normal(size=(len(ids), dim)).astype(np.float32)
    write_shard(catalog, saved.version, ids, vectors, normalized=False)
    return folder, ids


def _counting_loads(monkeypatch) -> list[str]:
    import radloop.ssl
    import radloop.ssl.encoders

    calls: list[str] = []
    original = radloop.ssl.encoders.load_encoder

    def counted(path):
        calls.append(str(path))
        return original(path)

    monkeypatch.setattr(radloop.ssl.encoders, "load_encoder", counted)
    monkeypatch.setattr(radloop.ssl, "load_encoder", counted)
    return calls


def test_search_with_an_encoder_folder_loads_it_once(catalog, workspace, folder_encoder, monkeypatch):
    from radloop.app.cli import build_app

    folder, ids = folder_encoder
    calls = _counting_loads(monkeypatch)
    result = CliRunner().invoke(build_app(), ["search", "--case", ids[0], "--k", "3", "--encoder", str(folder),
                                              "--workspace", str(workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    assert '"encoder": "enc-walk22l"' in result.output
    assert len(calls) == 1, calls


def test_a_query_image_is_embedded_with_the_unregistered_folder_encoder_loaded_once(catalog, workspace,
                                                                                     folder_encoder, monkeypatch,
                                                                                     tmp_path):
    from radloop.app.cli import build_app

    folder, _ = folder_encoder
    query = tmp_path / "query.png"
    PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40), dtype=np.uint8)).save(query)
    calls = _counting_loads(monkeypatch)
    result = CliRunner().invoke(build_app(), ["search", "--image", str(query), "--k", "3", "--encoder", str(folder),
                                              "--workspace", str(workspace.root), "--json"])
    assert result.exit_code == 0, result.output  # before: "that encoder is not at hand to embed it"
    assert result.output.count('"image_id"') == 3
    assert len(calls) == 1, calls
