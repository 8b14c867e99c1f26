"""Case search by image recognises a re-saved copy of a catalogued image by its pixels (``images.pixel_hash``),
not only a byte-identical file: a DICOM re-written with implicit VR, a new SOPInstanceUID and an edited header,
the same instance in JPEG 2000 lossless (or RLE), a PNG re-encoded with other settings or as RGB.  Such an upload
is searched as the catalogued case (its own study left out) instead of finding the original at distance ~0; an
image with other pixels is not.  Checked through ``search_cases``, ``radloop search --image --json`` and the
Streamlit search page.

The catalogued DICOM is the real ``dicom_radiographs/RG3_UNCR.dcm`` (its JPEG 2000 lossless twin
``RG3_J2KR.dcm`` is a real re-encoding) when ``../shared/data`` is there, else a small synthetic one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo
from pydicom.uid import ImplicitVRLittleEndian, RLELossless, generate_uid
from sqlalchemy import select, update

from conftest import DATA_ROOT
from dicom_synthetic import dx_part10_file
from radloop.core.ingest_worker import file_pixel_hash
from radloop.core.ingest import ingest_paths
from radloop.core.schema import Image
from radloop.retrieval.query_match import CatalogMatch, match_catalog_file
from radloop.retrieval.search import search_cases

torch = pytest.importorskip("torch")

REAL_DICOM = DATA_ROOT / "dicom_radiographs" / "RG3_UNCR.dcm"
REAL_J2K_TWIN = DATA_ROOT / "dicom_radiographs" / "RG3_J2KR.dcm"


@dataclass
class Searchable:
    """A catalog with a current random encoder and every image embedded; the catalogued files and copies."""

    dicom: Path
    png: Path
    ids: dict[str, str]  # file name -> image id
    version: str


def _png(path: Path, seed: int, **save_options) -> Path:
    PILImage.fromarray(np.random.default_rng(seed).integers(0, 256, size=(48, 64), dtype=np.uint8)).save(
        path, compress_level=1, **save_options)
    return path


def _resaved_dicom(source: Path, path: Path) -> Path:
    """``source`` re-written: implicit VR, a new SOPInstanceUID, an edited header; the same stored pixels."""
    copy = pydicom.dcmread(source)
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    copy.SeriesDescription, copy.WindowCenter, copy.WindowWidth = "re-exported", 300, 600
    copy.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    pydicom.dcmwrite(path, copy, implicit_vr=True, little_endian=True)
    return path


def _reencoded_pngs(source: Path, folder: Path) -> list[Path]:
    """``source`` re-encoded: maximum compression with a text chunk, and as an RGB file with R = G = B."""
    grey = PILImage.open(source)
    info = PngInfo()
    info.add_text("Software", "re-saved by a viewer")
    grey.save(folder / "copy_level9.png", compress_level=9, pnginfo=info)
    grey.convert("RGB").save(folder / "copy_rgb.png")
    return [folder / "copy_level9.png", folder / "copy_rgb.png"]


def _searchable(catalog, folder: Path) -> Searchable:
    from radloop.core.embeddings import write_shard
    from radloop.core.registry import register_model
    from radloop.ssl import embed_images, random_encoder, save_encoder

    folder.mkdir()
    dicom = REAL_DICOM if REAL_DICOM.is_file() else dx_part10_file(folder / "scan.dcm")
    png = _png(folder / "scan.png", seed=1)
    others = [_png(folder / f"other{i}.png", seed=10 + i) for i in range(3)]
    summary = ingest_paths(catalog, [dicom, png, *others], workers=1, progress=False)
    assert summary.images_added == 5, summary
    bundle = random_encoder("resnet18", 32)
    saved = save_encoder(bundle.model.backbone if hasattr(bundle.model, "backbone") else bundle.model,
                         catalog.workspace.models_dir / "enc", timm_name="resnet18", image_size=32, method="random",
                         version="enc-pixels")
    register_model(catalog, saved.version, "encoder", "encoder", catalog.workspace.models_dir / "enc",
                   make_current=True)
    with catalog.session() as session:
        rows = session.execute(select(Image.id, Image.source_path, Image.render_path).order_by(Image.id)).all()
    ids = {Path(source).name: image_id for image_id, source, _ in rows}
    vectors = embed_images(saved, [str(catalog.workspace.absolute(render)) for _, _, render in rows])
    write_shard(catalog, saved.version, [image_id for image_id, _, _ in rows], vectors, normalized=True)
    return Searchable(dicom=dicom, png=png, ids=ids, version=saved.version)


@pytest.fixture
def searchable(catalog, tmp_path) -> Searchable:
    return _searchable(catalog, tmp_path / "files")


def _hit_ids(hits) -> list[str]:
    return [hit.image_id for hit in hits]


def test_a_resaved_dicom_is_searched_as_the_catalogued_case(catalog, searchable, tmp_path):
    original = searchable.ids[searchable.dicom.name]
    copies = [_resaved_dicom(searchable.dicom, tmp_path / "resaved.dcm")]
    if REAL_J2K_TWIN.is_file() and searchable.dicom == REAL_DICOM:
        copies.append(REAL_J2K_TWIN)  # the same instance, JPEG 2000 lossless: another real file
    else:
        compressed = pydicom.dcmread(searchable.dicom)
        compressed.compress(RLELossless)
        compressed.save_as(tmp_path / "rle.dcm")
        copies.append(tmp_path / "rle.dcm")
    by_case = search_cases(catalog, case_id=original, k=3)
    for copy in copies:
        assert copy.read_bytes() != searchable.dicom.read_bytes()
        assert match_catalog_file(catalog, copy.read_bytes()) == CatalogMatch(original, "pixels")
        hits = search_cases(catalog, image=copy, k=3)
        assert original not in _hit_ids(hits) and hits[0].distance > 1e-4
        assert _hit_ids(hits) == _hit_ids(by_case)  # searched as the catalogued case itself
    assert match_catalog_file(catalog, searchable.dicom.read_bytes()) == CatalogMatch(original, "file")


def test_a_reencoded_png_is_searched_as_the_catalogued_case(catalog, searchable, tmp_path):
    original = searchable.ids[searchable.png.name]
    by_case = search_cases(catalog, case_id=original, k=3)
    for copy in _reencoded_pngs(searchable.png, tmp_path):
        assert copy.read_bytes() != searchable.png.read_bytes()
        match = match_catalog_file(catalog, copy.read_bytes())
        assert match == CatalogMatch(original, "pixels")
        assert match.message == f"same pixels as catalogued image {original}"
        assert _hit_ids(search_cases(catalog, image=copy, k=3)) == _hit_ids(by_case)


def test_other_pixels_are_not_the_catalogued_case(catalog, searchable, tmp_path):
    """One pixel changed: another image, embedded on the fly, and the original is its nearest case."""
    original = searchable.ids[searchable.png.name]
    pixels = np.asarray(PILImage.open(searchable.png)).copy()
    pixels[0, 0] ^= 0xFF
    PILImage.fromarray(pixels).save(tmp_path / "edited.png")
    assert match_catalog_file(catalog, (tmp_path / "edited.png").read_bytes()) is None
    hits = search_cases(catalog, image=tmp_path / "edited.png", k=3)
    assert hits[0].image_id == original and hits[0].distance < 0.05
    dicom = pydicom.dcmread(searchable.dicom)
    stored = dicom.pixel_array.copy()
    stored[0, 0] = 1 if stored[0, 0] != 1 else 2
    dicom.PixelData = stored.tobytes()
    dicom.save_as(tmp_path / "edited.dcm")
    assert match_catalog_file(catalog, (tmp_path / "edited.dcm").read_bytes()) is None
    hits = search_cases(catalog, image=tmp_path / "edited.dcm", k=1)
    assert _hit_ids(hits) == [searchable.ids[searchable.dicom.name]]


def test_rows_without_a_pixel_hash_and_unreadable_uploads(catalog, searchable, tmp_path):
    copy = _reencoded_pngs(searchable.png, tmp_path)[0]
    with catalog.session() as session:  # catalogued before pixel hashes existed
        session.execute(update(Image).where(Image.id == searchable.ids[searchable.png.name]).values(pixel_hash=None))
    assert match_catalog_file(catalog, copy.read_bytes()) is None
    notes = tmp_path / "scan.png"
    notes.write_text("these are notes, not pixels")
    assert match_catalog_file(catalog, notes.read_bytes()) is None
    with pytest.raises(ValueError, match="cannot read the query image .*scan.png"):
        search_cases(catalog, image=notes, k=1)
    truncated = tmp_path / "broken.dcm"
    truncated.write_bytes(searchable.dicom.read_bytes()[:132] + b"\0" * 64)
    with pytest.raises(ValueError, match="cannot read the query image .*broken.dcm"):
        search_cases(catalog, image=truncated, k=1)


def test_the_stored_pixel_hash_is_the_uploads(catalog, searchable):
    """What ingest stored is what search computes (one code path: ``file_pixel_hash`` is ingest's)."""
    with catalog.session() as session:
        stored = dict(session.execute(select(Image.id, Image.pixel_hash)).all())
    for path in (searchable.dicom, searchable.png):
        assert stored[searchable.ids[path.name]] == file_pixel_hash(path.read_bytes())


def test_search_cli_json_with_a_resaved_copy(catalog, searchable, workspace, tmp_path):
    """The JSON on stdout lists other cases only and says how the file was recognised (``query_match``); the
    note goes to stderr, so the JSON stays parseable."""
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    original = searchable.ids[searchable.dicom.name]
    copy = _resaved_dicom(searchable.dicom, tmp_path / "resaved.dcm")
    result = CliRunner().invoke(build_app(), ["search", "--image", str(copy), "--k", "3", "--json",
                                              "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["query"] == str(copy) and len(payload["neighbours"]) == 3
    assert original not in [hit["image_id"] for hit in payload["neighbours"]]
    assert payload["query_match"] == {"image_id": original, "matched_by": "pixels"}
    assert f"same pixels as catalogued image {original}" in result.stderr
    other = tmp_path / "other.png"  # an image that is no catalogued one: no query_match
    PILImage.fromarray(np.full((64, 64), 7, dtype=np.uint8)).save(other)
    result = CliRunner().invoke(build_app(), ["search", "--image", str(other), "--k", "3", "--json",
                                              "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert "query_match" not in json.loads(result.stdout)


def test_search_page_upload_of_a_resaved_copy(catalog, searchable, workspace, tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from test_app_pages import open_page, texts

    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    original = searchable.ids[searchable.dicom.name]
    data = _resaved_dicom(searchable.dicom, tmp_path / "resaved.dcm").read_bytes()
    app = open_page(workspace, "page_search.py", monkeypatch)
    app.file_uploader(key="search_upload").upload("IM000001", data, "application/octet-stream").run()
    assert not app.exception and not app.error, [item.value for item in app.exception]
    shown = texts(app)
    assert f"Same pixels as catalogued image `{original}`" in shown
    assert f"**{original}**" not in shown and shown.count("· distance") == 4  # neighbours, the original left out
    app.file_uploader(key="search_upload").upload("copy.png", _reencoded_pngs(searchable.png, tmp_path)[0]
                                                  .read_bytes(), "image/png").run()
    assert f"Same pixels as catalogued image `{searchable.ids[searchable.png.name]}`" in texts(app)
    assert not app.exception and not app.error
