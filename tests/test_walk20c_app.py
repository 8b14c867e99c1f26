"""Walkthrough 20c of the Streamlit app on a workspace with images only (no reports, no encoder): a very thin
uploaded radiograph no longer takes the case search page down, a pasted wall of text typed as a case id is not
echoed back whole, and the overview does not send a workspace without reports to ``label-reports``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("streamlit")

from app_workspace import point_app_at  # noqa: E402
from radloop.app import next_steps, views_search  # noqa: E402
from radloop.core.schema import Image, Study  # noqa: E402
from test_app_pages import run_page  # noqa: E402


@pytest.fixture
def images_only(workspace, catalog, monkeypatch):
    """Two catalogued images (rendered files on disk), no reports, no expert labels, no models."""
    with catalog.session() as session:
        for index in range(2):
            image_id, study_id = f"I-walk20c{index}", f"S-walk20c{index}"
            render = workspace.renders_dir / f"{image_id}.png"
            PILImage.fromarray(np.full((64, 48), 40 + 60 * index, dtype=np.uint8)).save(render)
            session.add(Study(id=study_id, dataset="walk", body_region="wrist", modality="DX", split="train"))
            session.flush()
            session.add(Image(id=image_id, study_id=study_id, content_hash=f"{index:064x}", dataset="walk",
                              external_id=image_id, source_path=str(render), source_format="png",
                              render_path=workspace.relative(render), thumb_path=workspace.relative(render), width=48,
                              height=64, render_width=48, render_height=64, body_region="wrist", modality="DX",
                              meta={}))
    point_app_at(monkeypatch, workspace)
    return workspace


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_very_thin_upload_is_previewed_instead_of_failing_the_page(images_only):
    """Streamlit scaled a 10 x 5000 strip to 256 px wide, i.e. 0 px high: "This page could not be shown:
    ValueError: height and width must be > 0"."""
    app = run_page("page_search.py")
    strip = np.tile(np.arange(5000, dtype=np.uint16) % 256, (10, 1)).astype(np.uint8)
    app.file_uploader(key="search_upload").upload("strip.png", _png(strip), "image/png").run()
    assert not app.exception
    assert not app.error, [item.value for item in app.error]
    assert [item.value for item in app.subheader] == ["Query", "Nearest cases"]
    for shape in [(10, 5000), (5000, 10), (1, 1), (300, 200), (2000, 3000)]:
        preview = views_search.query_preview(np.zeros(shape, dtype=np.uint8))
        assert min(preview.shape) >= 1 and max(preview.shape) <= max(256, 1)
        assert preview.dtype == np.uint8


def test_a_pasted_text_typed_as_case_id_is_not_echoed_whole(images_only):
    app = run_page("page_search.py")
    pasted = "FINDINGS: " + "no acute fracture `seen` " * 4000
    app.text_input(key="search_case_id").input(pasted).run()
    [warning] = [item.value for item in app.warning]
    assert warning.startswith("No image or study `FINDINGS: no acute fracture 'seen'")
    assert len(warning) < 150 and warning.count("`") == 2
    app.text_input(key="search_case_id").input("  I-walk20c1 ").run()
    assert not app.warning and "**I-walk20c1**" in [item.value for item in app.markdown]


def test_overview_without_reports_says_to_ingest_reports_not_to_label_them(images_only):
    app = run_page("page_overview.py")
    infos = [item.value for item in app.info]
    assert next_steps.NO_REPORTS in infos
    assert next_steps.NO_WEAK_LABELS not in infos
