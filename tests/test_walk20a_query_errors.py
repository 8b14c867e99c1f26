"""A query file that is no image: the error names the file once, not three times."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from radloop.core.embeddings import write_shard
from radloop.core.schema import Image, Study
from radloop.retrieval import search_cases

VERSION = "enc-walk20a-fly"


def _random_encoder(catalog):
    from radloop.core.registry import register_model
    from radloop.ssl import random_encoder, save_encoder

    bundle = random_encoder("resnet18", 32)
    folder = catalog.workspace.models_dir / "enc"
    save_encoder(bundle.model.backbone if hasattr(bundle.model, "backbone") else bundle.model, folder,
                 timm_name="resnet18", image_size=32, method="random", version=VERSION)
    register_model(catalog, VERSION, "encoder", "encoder", folder, make_current=True)


def test_an_unreadable_query_file_is_named_once(catalog, workspace, tmp_path):
    pytest.importorskip("torch")
    _random_encoder(catalog)
    with catalog.session() as session:
        for i in range(3):
            session.add(Study(id=f"S-{i}", dataset="t", split="train"))
            session.flush()
            session.add(Image(id=f"I-{i}", study_id=f"S-{i}", content_hash=f"{i}" * 64, dataset="t",
                              source_path=f"/nowhere/{i}.png", source_format="png", render_path=f"r{i}.png",
                              thumb_path=f"t{i}.png", width=8, height=8, render_width=8, render_height=8))
    write_shard(catalog, VERSION, ["I-0", "I-1", "I-2"], np.eye(3, 512, dtype=np.float32), normalized=True)
    notes = tmp_path / "notes.png"
    notes.write_text("these are notes, not pixels")
    with pytest.raises(ValueError) as raised:
        search_cases(catalog, image=notes, k=1)
    message = str(raised.value)
    assert message.startswith(f"cannot read the query image {notes}: ") and message.endswith("(PNG, JPEG or DICOM)")
    assert f"{notes}: {notes}" not in message and message.count(str(notes)) <= 2, message
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["search", "--image", str(notes), "--workspace", str(workspace.root)])
    assert result.exit_code == 2 and f"{notes}: {notes}" not in " ".join(result.output.split()), result.output
