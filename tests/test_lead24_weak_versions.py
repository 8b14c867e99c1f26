"""A catalog relabelled with new rules keeps the old version's rows: training with weak labels, Label Studio
pre-annotations and the dataset export all read each study's newest version only (they once disagreed: training
pooled every version, so an old "positive" outvoted the new rules' "negative")."""

from __future__ import annotations

from finetune_workspace import fill_fracture_catalog
from radloop.core.dataset_export import _weak_labels
from radloop.core.schema import Annotation, Image, Report, WeakLabel
from radloop.labeling.ls_tasks import weak_label_predictions
from radloop.ssl.finetune_data import build_labeled_set


def _relabelled(catalog) -> tuple[list[str], list[str]]:
    """Two unlabelled images whose reports said fracture positive under rules ``old`` and, relabelled, negative /
    uncertain under ``new`` (rows of ``new`` written after ``old``'s, as ``label-reports`` does)."""
    fill_fracture_catalog(catalog, 4, seed=5, render_size=64, splits=("train",))
    with catalog.session() as session:
        images = session.query(Image).order_by(Image.id).all()[:2]
        for number, image in enumerate(images):
            image.meta, image.body_region = {}, None
            session.query(Annotation).filter(Annotation.image_id == image.id).delete()
            session.add(Report(id=f"R-{number}", study_id=image.study_id, content_hash=str(number), text="..."))
        session.flush()
        for number in range(2):
            session.add(WeakLabel(report_id=f"R-{number}", finding="fracture", status="positive", rules_version="old"))
        session.flush()
        session.add(WeakLabel(report_id="R-0", finding="fracture", status="negative", rules_version="new"))
        session.add(WeakLabel(report_id="R-1", finding="fracture", status="uncertain", rules_version="new"))
        return [image.id for image in images], [image.study_id for image in images]


def test_training_reads_the_newest_rules_version_of_each_study(catalog):
    (negative, uncertain), _studies = _relabelled(catalog)
    weak = build_labeled_set(catalog, ["fracture"], splits=["train"], weak_labels=True)
    rows = {image_id: row for row, image_id in enumerate(weak.image_ids)}
    assert int(weak.targets[rows[negative], 0]) == 0  # was 1: the old version's positive won
    assert uncertain not in rows  # the new rules are unsure: unknown, not the old positive


def test_pre_annotations_and_export_agree_with_training(catalog):
    _images, (first, second) = _relabelled(catalog)
    with catalog.session() as session:
        predictions = weak_label_predictions(session, [first, second])
    assert predictions[first].choices == {"fracture": 0.0}
    assert predictions[first].model_version == "report-rules:new"
    assert predictions[second].uncertain == ("fracture",)
    statuses, _mentions = _weak_labels(catalog, {first, second}, with_mentions=False)
    assert statuses == {first: {"fracture": ("negative", "new")}, second: {"fracture": ("uncertain", "new")}}
