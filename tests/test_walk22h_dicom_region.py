"""Walkthrough 22h: a DICOM's body region and side when BodyPartExamined / ImageLaterality are missing or
generic (CR files saying only EXTREMITY): taken from the one part or side the descriptions name."""

from __future__ import annotations

import pydicom
import pytest

from ingest_data import dicom_file
from radloop.core.dicom_io import DESCRIPTION_TAGS, dicom_body_region, dicom_laterality, read_dicom
from radloop.core.vocabulary import BODY_REGIONS


def _dataset(**attributes) -> pydicom.Dataset:
    dataset = pydicom.Dataset()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


@pytest.mark.parametrize("keyword", DESCRIPTION_TAGS)
def test_generic_body_part_takes_the_part_each_description_names(keyword):
    for generic in ({"BodyPartExamined": "EXTREMITY"}, {"BodyPartExamined": "OTHER"}, {"BodyPartExamined": ""}, {}):
        assert dicom_body_region(_dataset(**generic, **{keyword: "LOWER LEG"})) == ("leg", keyword)
        assert dicom_body_region(_dataset(**generic, **{keyword: "R WRIST PA"})) == ("wrist", keyword)


@pytest.mark.parametrize("text, region", [
    ("Non-ossifying fibroma of distal tibia", "leg"), ("TIB/FIB 2 VIEWS", "leg"), ("fibula", "leg"),
    ("FEMUR AP", "leg"), ("[HAND         ]", "hand"), ("3rd finger lat", "fingers"), ("elbow", "elbow"),
    ("FOREARM", "forearm"), ("humerus", "humerus"), ("upper arm", "humerus"), ("Shoulder Y view", "shoulder"),
    ("knee standing", "knee"), ("ANKLE MORTISE", "ankle"), ("foot oblique", "foot"), ("HIP", "hip"),
    ("PELVIS AP", "pelvis"), ("thorax pa", "chest"), ("CHEST", "chest"), ("skull", "skull"),
    ("C-SPINE LAT", "spine"), ("lumbar spine", "spine"), ("Abdomen supine", "abdomen"),
])
def test_description_words_and_synonyms_map_to_vocabulary_regions(text, region):
    assert region in BODY_REGIONS
    assert dicom_body_region(_dataset(BodyPartExamined="EXTREMITY", SeriesDescription=text)) == \
        (region, "SeriesDescription")


def test_first_naming_description_decides_and_two_parts_keep_the_generic():
    # the processing description comes first
    assert dicom_body_region(_dataset(BodyPartExamined="EXTREMITY", AcquisitionDeviceProcessingDescription="KNEE",
                                      StudyDescription="femur")) == ("knee", "AcquisitionDeviceProcessingDescription")
    # a description naming nothing is passed over
    assert dicom_body_region(_dataset(BodyPartExamined="EXTREMITY", ProtocolName="CR 2 views",
                                      SeriesDescription="wrist")) == ("wrist", "SeriesDescription")
    # two different parts: the generic region stays
    assert dicom_body_region(_dataset(BodyPartExamined="EXTREMITY", SeriesDescription="hand and wrist",
                                      StudyDescription="wrist")) == ("extremity", "BodyPartExamined")
    assert dicom_body_region(_dataset(SeriesDescription="knee and ankle")) == (None, None)


def test_specific_body_part_wins_and_nothing_specific_keeps_the_generic():
    assert dicom_body_region(_dataset(BodyPartExamined="CHEST", SeriesDescription="abdomen")) == \
        ("chest", "BodyPartExamined")
    # whole words only ("fibroma" holds no FIB); bare "head" (femoral / radial head) and "arm" name no region
    for text in ("fibroma", "head", "arm", "view: PA", "", "RT"):
        assert dicom_body_region(_dataset(BodyPartExamined="EXTREMITY", StudyDescription=text)) == \
            ("extremity", "BodyPartExamined")
    assert dicom_body_region(_dataset(StudyDescription="arm")) == (None, None)
    # an unmapped BodyPartExamined that names a part in words
    assert dicom_body_region(_dataset(BodyPartExamined="LOWER LEG")) == ("leg", "BodyPartExamined")


def test_laterality_falls_back_to_the_one_side_a_description_names():
    assert dicom_laterality(_dataset(SeriesDescription="LEFT WRIST")) == ("L", "SeriesDescription")
    assert dicom_laterality(_dataset(ProtocolName="Knee RT", StudyDescription="left knee")) == ("R", "ProtocolName")
    assert dicom_laterality(_dataset(ImageLaterality="R", SeriesDescription="LEFT WRIST")) == ("R", "ImageLaterality")
    assert dicom_laterality(_dataset(Laterality="L", SeriesDescription="right")) == ("L", "Laterality")
    # both sides named (or BILATERAL): none, and the later descriptions are not asked
    for text in ("left and right hands", "BILATERAL KNEES"):
        assert dicom_laterality(_dataset(SeriesDescription=text, StudyDescription="left hand")) == (None, None)
    # single letters are no side: L-SPINE is the lumbar spine
    assert dicom_laterality(_dataset(SeriesDescription="L-SPINE AP", StudyDescription="R")) == (None, None)


def test_midline_regions_take_no_side_from_descriptions():
    decubitus = _dataset(BodyPartExamined="CHEST", SeriesDescription="LEFT LATERAL DECUBITUS")
    assert dicom_laterality(decubitus, dicom_body_region(decubitus)[0]) == (None, None)
    assert dicom_laterality(_dataset(ImageLaterality="L"), "chest") == ("L", "ImageLaterality")  # as recorded
    for region in ("extremity", "wrist", None):
        assert dicom_laterality(_dataset(SeriesDescription="left"), region) == ("L", "SeriesDescription")


def test_real_extremity_cr_is_the_leg_and_its_metadata_says_from_where():
    metadata = read_dicom(dicom_file("RG3_UNCR.dcm")).metadata
    assert metadata.body_part == "EXTREMITY"
    assert (metadata.body_region, metadata.region_from) == ("leg", "AcquisitionDeviceProcessingDescription")
    assert (metadata.laterality, metadata.laterality_from) == ("R", "Laterality")
    assert metadata.to_record()["region_from"] == "AcquisitionDeviceProcessingDescription"
    # without the processing description the study description ("... distal tibia") names the same part
    dataset = pydicom.dcmread(dicom_file("RG3_UNCR.dcm"), stop_before_pixels=True)
    del dataset.AcquisitionDeviceProcessingDescription
    assert dicom_body_region(dataset) == ("leg", "StudyDescription")
