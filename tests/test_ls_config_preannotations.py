"""Report-rule pre-annotations in the labelling view: an uncertain mention is not a pre-ticked finding."""

from __future__ import annotations

import json

from ls_catalog import build_round_catalog


def test_uncertain_mention_is_pre_ticked_under_cannot_tell(tmp_path, test_catalog_url):
    from radloop.core.schema import Image, Report, WeakLabel
    from radloop.labeling.ls_tasks import export_tasks_json

    # case 0's report: fracture positive, dislocation negative; case 1's: fracture negative, device positive
    catalog, round_id, image_ids = build_round_catalog(tmp_path / "ws", n_images=2,
                                                       database_url=test_catalog_url(tmp_path / "ws"))
    with catalog.session() as session:
        report_of = {image_id: session.query(Report).filter_by(study_id=session.get(Image, image_id).study_id).one().id
                     for image_id in image_ids}
        for case, finding in ((0, "foreign_body"), (1, "device"), (1, "dislocation")):  # "possible ..."
            session.add(WeakLabel(report_id=report_of[image_ids[case]], finding=finding, status="uncertain",
                                  rules_version="test-rules-1", evidence="possible"))
    out = tmp_path / "import.json"
    export_tasks_json(catalog, round_id, out, document_root=str(tmp_path), with_model=False)
    catalog.dispose()
    results = {}
    for task in json.loads(out.read_text()):
        (prediction,) = task["predictions"]
        results[task["data"]["case_id"]] = {result["from_name"]: (result["value"]["choices"], result["score"])
                                            for result in prediction["result"]}
    assert results[image_ids[0]] == {"findings": (["fracture"], 1.0), "cannot_tell": (["foreign_body"], 0.5)}
    # a positive mention beats an uncertain one of the same finding; uncertain alone goes under Cannot tell
    assert results[image_ids[1]] == {"findings": (["device"], 1.0), "cannot_tell": (["dislocation"], 0.5)}
