"""Which boxes train and evaluate: a Label Studio annotation counts with its newest version; per label, the newest
annotation that drew it replaces the imported (COCO / YOLO) boxes, and a label the answers rule out (consensus
included) has none."""

from __future__ import annotations

import pytest

from radloop.core.schema import Annotation, Image, Study
from radloop.core.targets import image_labels, image_targets

COCO = "coco:fractures.json"


@pytest.fixture
def boxed(catalog):
    """One exhaustively boxed image with one imported fracture box."""
    with catalog.session() as session:
        session.add(Study(id="S-1", dataset="t", split="train"))
        session.flush()
        session.add(Image(id="I-1", study_id="S-1", content_hash="h1", source_path="x", source_format="png",
                          render_path="r.png", thumb_path="t.png", width=400, height=300, render_width=400,
                          render_height=300, meta={"box_source": COCO}))
        session.flush()
        session.add(Annotation(image_id="I-1", source=COCO, kind="box", label="fracture", x=10, y=20, w=30, h=40))
    return catalog


def _answer(catalog, annotation: int, version: int | None, *, boxes=(), choices=None, skip=False,
            source: str = "labelstudio") -> None:
    external = "ls:consensus:I-1" if source == "labelstudio:consensus" else f"ls:1:{annotation}"
    common = dict(image_id="I-1", source=source, external_id=external, version=version,
                  meta={"ls_annotation_id": annotation})
    with catalog.session() as session:  # one version per commit: later versions come later
        if skip:
            session.add(Annotation(kind="skip", label="skip", **common))
        for finding, value in (choices or {}).items():
            session.add(Annotation(kind="choice", label=finding, **{**common, "meta": {"value": value}}))
        for x, y, w, h in boxes:
            session.add(Annotation(kind="box", label="fracture", x=x, y=y, w=w, h=h, **common))


def _boxes(catalog) -> list[tuple]:
    (target,) = image_targets(catalog)
    return sorted((box.x, box.y, box.w, box.h) for box in target.boxes)


def test_a_confirmed_box_counts_once_and_an_edited_one_only_in_its_newest_version(boxed):
    _answer(boxed, 7, 1, boxes=[(10, 20, 30, 40)], choices={"fracture": 1})  # the expert draws the dataset's box
    assert _boxes(boxed) == [(10, 20, 30, 40)]  # not twice
    _answer(boxed, 7, 2, boxes=[(70, 20, 30, 40)], choices={"fracture": 1})  # then moves it
    assert _boxes(boxed) == [(70, 20, 30, 40)]
    _answer(boxed, 7, 3, choices={"fracture": 0})  # then deletes it: no fracture
    assert _boxes(boxed) == [] and image_targets(boxed)[0].labels == {"fracture": 0}
    assert image_labels(boxed) == {"I-1": {"fracture": 0}}


def test_an_answer_without_boxes_keeps_the_imported_box_unless_it_rules_the_finding_out(boxed):
    _answer(boxed, 7, 1, choices={"fracture": 1})  # Label Studio did not show the dataset's box; none drawn
    assert _boxes(boxed) == [(10, 20, 30, 40)]
    _answer(boxed, 8, 1, skip=True)  # a skipped task answers nothing
    assert _boxes(boxed) == [(10, 20, 30, 40)]


def test_of_several_annotators_the_newest_answer_gives_the_boxes(boxed):
    _answer(boxed, 7, 1, boxes=[(12, 22, 30, 40)], choices={"fracture": 1})
    _answer(boxed, 9, 1, boxes=[(11, 21, 30, 40), (200, 100, 20, 20)], choices={"fracture": 1})
    assert _boxes(boxed) == [(11, 21, 30, 40), (200, 100, 20, 20)]


def test_an_answer_that_draws_nothing_keeps_an_earlier_experts_boxes(boxed):
    _answer(boxed, 7, 1, boxes=[(100, 100, 20, 20)], choices={"fracture": 1})  # A draws (not seeing the dataset box)
    _answer(boxed, 9, 1, choices={"fracture": None})  # B, later: cannot tell
    assert _boxes(boxed) == [(100, 100, 20, 20)]


def test_disagreeing_annotators_follow_the_consensus_not_the_last_vote(boxed):
    _answer(boxed, 7, 1, boxes=[(10, 20, 30, 40)], choices={"fracture": 1})  # A confirms
    _answer(boxed, 9, 1, choices={"fracture": 0})  # B says no
    _answer(boxed, 0, None, choices={"fracture": None}, source="labelstudio:consensus")  # a tie: unknown
    (target,) = image_targets(boxed)
    assert _boxes(boxed) == [(10, 20, 30, 40)] and target.labels == {"fracture": 1}  # as the dataset's box says
    _answer(boxed, 8, 1, boxes=[(11, 21, 30, 40)], choices={"fracture": 1})  # C agrees with A: majority 1
    _answer(boxed, 0, None, choices={"fracture": 1}, source="labelstudio:consensus")
    assert _boxes(boxed) == [(11, 21, 30, 40)] and image_targets(boxed)[0].labels == {"fracture": 1}
    _answer(boxed, 6, 1, choices={"fracture": 0})  # two against two ... then a majority against
    _answer(boxed, 5, 1, choices={"fracture": 0})
    _answer(boxed, 0, None, choices={"fracture": 0}, source="labelstudio:consensus")
    assert _boxes(boxed) == [] and image_targets(boxed)[0].labels == {"fracture": 0}
