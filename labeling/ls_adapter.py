"""The ONE adapter between Label Studio JSON and radloop's typed records (house style §6).

Everything else in radloop (sync, ML backend, app) sees only the adapter's frozen records; raw Label
Studio dictionaries stop at this module and the two split from it, whose names it re-exports:
:mod:`radloop.labeling.ls_records` (the records) and :mod:`radloop.labeling.ls_backend_requests` (the ML
backend's ``/predict``, ``/setup`` and webhook requests).  What lives here: tasks and predictions out to Label
Studio (push side), tasks and annotations back (pull side).

Geometry: Label Studio ``rectanglelabels`` values are percentages of the displayed image (the 8-bit render,
possibly downscaled).  Percentages do not depend on the resolution, so they convert to *original* image
pixels with the original ``Image.width/height`` (``radloop.core.boxes``; pixel values rounded to 1e-4 px so
that px -> % -> px is exact).  A result whose ``original_width/original_height`` disagree with the render's
aspect ratio, a rotated rectangle, an unknown label or a malformed value becomes a :class:`ResultProblem`
(the sync quarantines it with the reason); nothing is dropped silently.

Choices semantics: a submitted (not cancelled) annotation says, for every finding listed in the project's
Choices control, 1 when ticked and 0 when not (the view says "none ticked = none present", so an unticked
finding is an answer); a drawn box of a finding also counts as 1 for that finding, also one quarantined for
its geometry (rotated, another aspect ratio, too small); a box whose label is no finding of the control leaves
the unticked findings unread (not 0), as a broken Choices result does.  A finding ticked in the
"Cannot tell" control (:data:`~radloop.labeling.ls_config.CANNOT_TELL_NAME`) is ``None`` (uncertain: no
label, like a consensus tie), whatever else the annotation says about it.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable

from radloop.core.boxes import BoxError, box_from_ls_percent, box_to_ls_percent, sanitize_box
from radloop.core.records import Box
from radloop.core.vocabulary import FINDINGS
from radloop.labeling.ls_backend_requests import (
    PredictRequest, PredictTask, SetupRequest, WebhookEvent, parse_predict_request, parse_setup_request,
    parse_webhook,
)
from radloop.labeling.ls_config import ParsedLabelConfig
from radloop.labeling.ls_records import (
    AdapterError, AnnotationVersion, ImageGeometry, LSTask, PredictionRecord, ResultProblem, TaskData, task_key,
)

__all__ = [
    "AdapterError", "AnnotationVersion", "ImageGeometry", "LSTask", "PredictRequest",
    "PredictTask", "PredictionRecord", "ResultProblem", "SetupRequest", "TaskData", "WebhookEvent",
    "parse_annotation", "parse_predict_request", "parse_setup_request", "parse_task", "parse_webhook",
    "prediction_to_ls", "task_key", "task_to_ls",
]

#: Aspect-ratio tolerance between the size Label Studio saw and the render (relative).
ASPECT_TOLERANCE = 0.01


# ----------------------------------------------------------------------------------------------- push side
def prediction_to_ls(prediction: PredictionRecord, geometry: ImageGeometry, config: ParsedLabelConfig) -> dict:
    """Label Studio prediction JSON: Choices results (pre-ticked findings) and one result per box.

    Findings at or above the threshold are ticked as present, except ``prediction.uncertain`` ones, which
    are ticked under "Cannot tell" when the project has that control (else left unticked).  Every result
    carries its own ``score``; the prediction's ``score`` is the mean confidence ``max(p, 1 - p)`` over the
    findings (low = uncertain, what ``prediction-score-min`` sampling uses).
    """
    results: list[dict] = []
    probabilities = {name: float(p) for name, p in prediction.choices.items() if math.isfinite(float(p))}
    uncertain = set(prediction.uncertain)
    if config.choices:
        control = config.choices[0]
        shown = {name: p for name, p in probabilities.items() if name in control.labels}
        ticked = sorted((name for name, p in shown.items()
                         if p >= prediction.threshold and name not in uncertain), key=lambda name: -shown[name])
        if ticked:
            results.append({"from_name": control.from_name, "to_name": control.to_name, "type": "choices",
                            "value": {"choices": ticked},
                            "score": round(min(shown[name] for name in ticked), 6)})
    if config.cannot_tell:
        control = config.cannot_tell[0]
        unsure = [name for name in control.labels if name in uncertain]
        if unsure:
            scores = [probabilities[name] for name in unsure if name in probabilities]
            results.append({"from_name": control.from_name, "to_name": control.to_name, "type": "choices",
                            "value": {"choices": unsure}, "score": round(min(scores), 6) if scores else None})
    if config.rectangles:
        control = config.rectangles[0]
        for index, box in enumerate(prediction.boxes):
            if box.label not in control.labels:
                continue
            value = box_to_ls_percent(box, geometry.width, geometry.height)
            value["rectanglelabels"] = [box.label]
            results.append({"id": f"p{index}", "from_name": control.from_name, "to_name": control.to_name,
                            "type": "rectanglelabels", "original_width": geometry.render_width,
                            "original_height": geometry.render_height, "image_rotation": 0, "value": value,
                            "score": None if box.score is None else round(float(box.score), 6)})
    confidences = [max(p, 1.0 - p) for p in probabilities.values()]
    score = sum(confidences) / len(confidences) if confidences else None
    return {"model_version": prediction.model_version, "score": None if score is None else round(score, 6),
            "result": results}


def task_to_ls(data: TaskData, predictions: list[PredictionRecord], geometry: ImageGeometry,
               config: ParsedLabelConfig) -> dict:
    """Label Studio import JSON of one task (data + predictions)."""
    payload = {
        config.image_value or "image": data.image_url,
        "report": data.report,
        "case_id": data.case_id,
        "study_id": data.study_id,
        "body_region": data.body_region,
        "strategy": data.strategy,
        "selection_score": data.selection_score,
        "round": data.round_number,
        "round_id": data.round_id,
        "radloop_key": data.key,
    }
    return {"data": payload, "predictions": [prediction_to_ls(p, geometry, config) for p in predictions]}


# ----------------------------------------------------------------------------------------------- pull side
def _parse_time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        raise AdapterError(f"{what} is missing or not a timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise AdapterError(f"{what} is not an ISO timestamp: {value!r}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _user_id(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, int) else None


def _check_size_seen(result: dict, geometry: ImageGeometry) -> str | None:
    seen_w, seen_h = result.get("original_width"), result.get("original_height")
    if seen_w is None or seen_h is None:
        return None
    try:
        seen_ratio = float(seen_w) / float(seen_h)
    except (TypeError, ValueError, ZeroDivisionError):
        return f"bad original_width/original_height {seen_w!r}x{seen_h!r}"
    ratio = geometry.render_width / geometry.render_height
    if abs(seen_ratio - ratio) > ASPECT_TOLERANCE * ratio:
        return (f"Label Studio saw a {seen_w}x{seen_h} image but the render is "
                f"{geometry.render_width}x{geometry.render_height} (different aspect ratio)")
    return None


def _box_label(result: dict, config: ParsedLabelConfig) -> str | None:
    """The finding a rectanglelabels result names (one label of the vocabulary and of its control), else None."""
    value = result.get("value")
    labels = value.get("rectanglelabels") if isinstance(value, dict) else None
    if not isinstance(labels, list) or len(labels) != 1 or labels[0] not in FINDINGS:
        return None
    control = config.control(str(result.get("from_name")))
    return labels[0] if control is None or labels[0] in control.labels else None


def _convert_rectangle(result: dict, config: ParsedLabelConfig,
                       geometry: ImageGeometry | None) -> tuple[list[Box], str | None, str | None]:
    """Boxes of one rectanglelabels result, or a quarantine reason; plus an optional note."""
    control = config.control(str(result.get("from_name")))
    value = result.get("value")
    if not isinstance(value, dict) or not isinstance(value.get("rectanglelabels"), list):
        return [], "malformed rectanglelabels result (no value.rectanglelabels list)", None
    labels = value["rectanglelabels"]
    if len(labels) != 1:
        return [], f"a rectangle must carry exactly one label, got {labels}", None
    label = labels[0]
    if label not in FINDINGS or (control is not None and label not in control.labels):
        return [], f"unknown box label {label!r}", None
    if geometry is None:
        return [], "image size unknown (case not in the catalog)", None
    if abs(float(result.get("image_rotation", 0) or 0)) > 1e-9:
        return [], f"image was rotated in Label Studio (image_rotation={result.get('image_rotation')})", None
    mismatch = _check_size_seen(result, geometry)
    if mismatch:
        return [], mismatch, None
    try:
        box = box_from_ls_percent(value, geometry.width, geometry.height, label,
                                  score=float(result["score"]) if isinstance(result.get("score"), (int, float)) else None)
    except (BoxError, TypeError, ValueError) as error:
        return [], f"bad rectangle: {error}", None
    clean, reason = sanitize_box(box, geometry.width, geometry.height, min_size=1.0)
    if clean is None:
        return [], f"unusable rectangle: {reason}", None
    return [clean], None, (f"{label} box {reason}" if reason else None)


def _shape(raw: object) -> str:
    """What an unusable task / annotation is, for a message that reaches logs: its type, its keys and its id's
    type, never its values (the task's data holds report text)."""
    if not isinstance(raw, dict):
        return f"a {type(raw).__name__}, not an object"
    keys = ", ".join(sorted(map(str, raw))[:20]) or "none"
    return f"id {type(raw.get('id')).__name__ if 'id' in raw else 'missing'}; keys: {keys}"


def parse_annotation(raw: dict, config: ParsedLabelConfig, geometry: ImageGeometry | None) -> AnnotationVersion:
    """Convert one Label Studio annotation (any version) into an :class:`AnnotationVersion`.

    Raises:
        AdapterError: no id / task / timestamps (the whole annotation is unusable).
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), int):
        raise AdapterError(f"annotation without an integer id: {_shape(raw)}")
    created = _parse_time(raw.get("created_at"), f"annotation {raw['id']} created_at")
    updated = _parse_time(raw.get("updated_at") or raw.get("created_at"), f"annotation {raw['id']} updated_at")
    cancelled = bool(raw.get("was_cancelled"))
    problems: list[ResultProblem] = []
    notes: list[str] = []
    ticked: set[str] = set()
    unsure: set[str] = set()  # ticked under "Cannot tell"
    boxes: list[Box] = []
    drawn: set[str] = set()  # findings boxed, a quarantined box of a known finding included
    comments: list[str] = []
    choices_unreliable = False  # a broken Choices result: unticked findings cannot be read as absent
    results = raw.get("result") or []
    if not isinstance(results, list):
        problems.append(ResultProblem("annotation result is not a list", {"result": results}))
        results = []
    shown = tuple(label for control in config.choices for label in control.labels)
    unsure_shown = tuple(label for control in config.cannot_tell for label in control.labels)
    cannot_tell_names = {control.from_name for control in config.cannot_tell}
    for result in results:
        if not isinstance(result, dict):
            problems.append(ResultProblem("result is not an object", {"result": result}))
            continue
        kind = result.get("type")
        from_name = result.get("from_name")
        if kind == "choices":
            values = (result.get("value") or {}).get("choices") if isinstance(result.get("value"), dict) else None
            if not isinstance(values, list) or config.control(str(from_name)) is None:
                problems.append(ResultProblem(f"malformed choices result from {from_name!r}", result))
                choices_unreliable = True
                continue
            in_cannot_tell = from_name in cannot_tell_names
            listed = unsure_shown if in_cannot_tell else shown
            unknown = [value for value in values if value not in FINDINGS or value not in listed]
            if unknown:
                problems.append(ResultProblem(f"unknown choice(s) {unknown}", result))
                choices_unreliable = True
            (unsure if in_cannot_tell else ticked).update(value for value in values if value not in unknown)
        elif kind == "rectanglelabels":
            found, reason, note = _convert_rectangle(result, config, geometry)
            if reason:
                problems.append(ResultProblem(reason, result))
                # the box is unusable but it was drawn: its finding is present, not the "0" of an unticked one
                label = _box_label(result, config)
                if label is None:
                    choices_unreliable = True
                else:
                    drawn.add(label)
            boxes.extend(found)
            drawn.update(box.label for box in found)
            if note:
                notes.append(note)
        elif kind == "textarea" and from_name in config.comment_names:
            text = (result.get("value") or {}).get("text") if isinstance(result.get("value"), dict) else None
            if isinstance(text, list):
                comments.extend(str(part) for part in text)
            elif isinstance(text, str):
                comments.append(text)
            else:
                problems.append(ResultProblem("malformed comment result", result))
        else:
            problems.append(ResultProblem(f"unsupported result type {kind!r} from {from_name!r}", result))
    choices: dict[str, int | None] = {}
    if not cancelled:
        if not choices_unreliable:
            choices = {name: int(name in ticked) for name in shown if name in FINDINGS}
        else:
            choices = {name: 1 for name in ticked}
        for label in sorted(drawn):  # a drawn box says the finding is present even if its tick was forgotten
            if label in unsure:
                continue
            if choices.get(label) == 0:
                notes.append(f"{label} implied by a drawn box")
            choices[label] = 1
        for name in sorted(unsure):  # "Cannot tell" is the deliberate answer: it wins over a tick or a box
            if name in ticked or name in drawn:
                notes.append(f"{name} ticked or boxed as present and under Cannot tell: stored as uncertain")
            choices[name] = None
    lead_time = raw.get("lead_time")
    return AnnotationVersion(
        annotation_id=raw["id"], task_id=int(raw.get("task") or 0), annotator_id=_user_id(raw.get("completed_by")),
        created_at=created, updated_at=updated, cancelled=cancelled, ground_truth=bool(raw.get("ground_truth")),
        choices=choices, boxes=tuple(boxes), comment="\n".join(comments) or None, problems=tuple(problems),
        notes=tuple(notes), lead_time=float(lead_time) if isinstance(lead_time, (int, float)) else None)


def parse_task(raw: dict, config: ParsedLabelConfig,
               geometry_for: Callable[[str], ImageGeometry | None]) -> LSTask:
    """Convert one Label Studio task (``fields=all``: with its annotations).

    An annotation that cannot be read at all becomes a task-level problem instead of raising.

    Raises:
        AdapterError: the task has no integer id.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), int):
        raise AdapterError(f"task without an integer id: {_shape(raw)}")
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    case_id = data.get("case_id") if isinstance(data.get("case_id"), str) else None
    round_id = data.get("round_id") if isinstance(data.get("round_id"), int) else None
    geometry = geometry_for(case_id) if case_id else None
    annotations: list[AnnotationVersion] = []
    problems: list[ResultProblem] = []
    for annotation in raw.get("annotations") or []:
        try:
            annotations.append(parse_annotation({**annotation, "task": raw["id"]}, config, geometry))
        except AdapterError as error:
            problems.append(ResultProblem(str(error), annotation if isinstance(annotation, dict) else {}))
    updated = raw.get("updated_at")
    return LSTask(task_id=raw["id"], case_id=case_id, round_id=round_id,
                  key=data.get("radloop_key") if isinstance(data.get("radloop_key"), str) else None,
                  updated_at=_parse_time(updated, "task updated_at") if updated else None,
                  annotations=tuple(annotations), problems=tuple(problems))
