"""Walkthrough 22f: the real radiographs of ../shared/data/dicom_radiographs ingested into a workspace (MONOCHROME1,
JPEG 2000 lossy and lossless, 10- and 15-bit): renders, window, inversion, orientation and metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import data_path


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, test_catalog_url):
    from radloop.core.catalog import Catalog
    from radloop.core.ingest import ingest_paths
    from radloop.core.workspace import Workspace

    folder = data_path("dicom_radiographs")
    root = (tmp_path_factory.mktemp("dicom_walk") / "ws").resolve()
    catalog = Catalog.open(Workspace(root=root, database_url=test_catalog_url(root)).ensure())
    summary = ingest_paths(catalog, [folder], workers=1, progress=False)
    yield catalog, summary
    catalog.dispose()


def _rows(catalog) -> dict[str, dict]:
    from radloop.core.schema import Image as ImageRow

    with catalog.session() as session:
        return {row.external_id: {"render": catalog.workspace.absolute(row.render_path), "meta": row.meta,
                                  "region": row.body_region, "view": row.view, "laterality": row.laterality,
                                  "bits": row.bits_stored, "photometric": row.photometric,
                                  "size": (row.width, row.height)}
                for row in session.query(ImageRow)}


def test_monochrome1_jpeg2000_renders_bone_white_and_collimation_white(ingested):
    catalog, summary = ingested
    assert summary.errors == 0 and summary.images_added == 5  # RG3_UNCR: the lossless RG3's duplicate
    rows = _rows(catalog)
    leg = rows["RG3_J2KR"]
    assert (leg["bits"], leg["photometric"], leg["size"]) == (10, "MONOCHROME1", (1760, 1760))
    pixels = np.asarray(Image.open(leg["render"]), dtype=np.float64)
    columns = pixels.mean(axis=0)
    # stored 0 (no exposure, outside the collimator) is white in MONOCHROME1; the air beside the leg is dark
    assert columns[:300].min() > 250 and columns[-300:].min() > 250
    assert columns[480:640].mean() < 60
    chest = rows["RG1_J2KR"]
    assert (chest["bits"], chest["size"]) == (15, (1841, 1955))  # width = Columns, height = Rows
    lossy = np.asarray(Image.open(rows["RG1_J2KI"]["render"]), dtype=np.int16)
    lossless = np.asarray(Image.open(chest["render"]), dtype=np.int16)
    assert np.abs(lossy - lossless).max() <= 8  # the lossy copy renders as the lossless one, with its window


def test_metadata_keeps_view_laterality_region_and_orientation(ingested):
    """PatientOrientation reaches the catalog (``meta.dicom.orientation``): the renders are the stored pixels, and
    RG3 is stored mirrored (rows run to the patient's right, its lead "R" marker reads backwards), which nothing in
    the catalog said before."""
    catalog, _summary = ingested
    rows = _rows(catalog)
    leg, chest = rows["RG3_J2KI"], rows["RG1_J2KI"]
    # BodyPartExamined says EXTREMITY; AcquisitionDeviceProcessingDescription "LOWER LEG" names the part (walk 22h)
    assert (leg["region"], leg["view"], leg["laterality"]) == ("leg", "AP", "R")
    assert leg["meta"]["dicom"]["region_from"] == "AcquisitionDeviceProcessingDescription"
    assert "laterality_from" in leg["meta"]["dicom"]
    assert (chest["region"], chest["view"], chest["laterality"]) == ("chest", "PA", None)
    assert leg["meta"]["dicom"]["orientation"] == ["R", "F"]
    assert chest["meta"]["dicom"]["orientation"] == ["L", "F"]
    siim = next(row for name, row in rows.items() if name.startswith("siim_"))
    assert "orientation" not in siim["meta"]["dicom"]  # no PatientOrientation in the file: nothing stored
    assert "patient" not in json.dumps(leg["meta"]).lower()
