"""Building Label Studio tasks for a round's selected batch (data + pre-annotations), and the offline export.

The report field is where free text leaves radloop; it carries what the setting says (``report_text``:
the caller's, else the workspace's binding, else ``redacted``; see
:func:`radloop.labeling.ls_project.report_text_setting`):
- ``redacted``: each stored report through :func:`radloop.labeling.redact.redact_report` (rule-based;
  names without a title or cue word are missed);
- ``none``: the fixed note :data:`REPORT_WITHHELD`, no report text;
- ``as_stored``: the stored text, for sites whose reports are de-identified at the source.
A study's several reports are ordered by their date (``Report.report_date``; undated ones last, then by report
id), each under a header that gives the date: the year only under ``redacted`` (HIPAA Safe Harbor keeps no
finer date; the order still follows the full date), the date under ``as_stored``.
Weak labels are computed on the stored text as before; the pre-annotations carry only finding choices and
scores (no evidence spans or other report text).

Pre-annotations per task:
- the report rules' weak labels of the case's study (``model_version`` = ``report-rules:<rules version>``):
  a positive mention ticked as present (score 1.0), an uncertain one only ("possible fracture") ticked under
  "Cannot tell" instead (score 0.5), a negative one left unticked;
- the current image model's choices and boxes with per-result scores, from
  ``radloop.ssl.predict.load_predictor`` (the findings model with the current detector's boxes, or the
  detector alone; skipped when that module or a current model does not exist).  The model sees the render;
  its boxes come back in original-image pixels (each image's catalog size goes with it), which the adapter
  turns into percentages of the displayed render.  Its boxes are also kept in each selection's
  ``Selection.meta["predicted"]`` (with the model version), for the app's Queue page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select

from radloop.core.catalog import Catalog, get_for_update
from radloop.core.schema import Image, Report, Round, Selection, WeakLabel
from radloop.core.vocabulary import IMAGE_FINDINGS
from radloop.core.weak_status import newest_version_rows
from radloop.labeling.ls_adapter import ImageGeometry, PredictionRecord, TaskData, task_key, task_to_ls
from radloop.labeling.ls_config import ParsedLabelConfig, build_label_config, check_report_text, parse_label_config
from radloop.labeling.ls_project import (ProjectBinding, check_document_root, image_url, media_dir,
                                          report_text_setting, stage_render)
from radloop.labeling.redact import redact_report

__all__ = ["MAX_REPORT_CHARS", "MIN_REPORT_SHARE", "NO_REPORT", "PREDICTED_META", "REPORT_WITHHELD", "TaskPayload",
           "build_task_payloads", "export_tasks_json", "load_current_predictor", "newest_rules_version",
           "rules_model_version", "task_report", "weak_label_predictions"]

#: The report field of a study without a report, and of every task under ``report_text="none"``.
NO_REPORT = "(no report for this study)"
REPORT_WITHHELD = "(report text not sent to Label Studio by radloop)"
#: The longest report field a task carries (characters, about five pages): a study with dozens of reports made
#: a 61,000-character task nobody reads.  Longer fields are cut, saying so (:func:`task_report`).
MAX_REPORT_CHARS = 12_000
#: Each report keeps at least this many characters when a study has so many that equal shares would be less.
MIN_REPORT_SHARE = 1_500

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskPayload:
    """One task ready for import, with the selection it came from."""

    selection_id: int
    key: str
    image_id: str
    task: dict


def load_current_predictor(catalog: Catalog, task: str = "findings"):
    """The registry's current predictor (``radloop.ssl.predict.load_predictor``), or None when absent."""
    try:
        from radloop.ssl.predict import load_predictor
    except ImportError:
        return None
    try:
        return load_predictor(catalog, task=task, with_detector=True)
    except (FileNotFoundError, ValueError) as error:
        logger.warning("current model cannot be loaded (%s); going on without model predictions", error)
        return None


def weak_label_predictions(session, study_ids: list[str]) -> dict[str, PredictionRecord]:
    """Report-rule pre-annotations per study: positive -> 1.0, uncertain -> 0.5, negative -> 0.0.

    A finding whose strongest mention is uncertain is listed in ``uncertain`` (not pre-ticked as present).  Only
    the study's newest rules version counts (``radloop labels`` keeps older rows per version); its
    ``model_version`` is ``report-rules:<that version>``, what the ML backend's rules answer too
    (:func:`newest_rules_version`).
    """
    newest = newest_version_rows(session, study_ids)
    weight = {"positive": 1.0, "uncertain": 0.5, "negative": 0.0}
    by_study: dict[str, dict[str, float]] = {}
    for study_id, (_version, rows) in newest.items():
        for finding, status in rows:
            if finding in IMAGE_FINDINGS and status in weight:
                findings = by_study.setdefault(study_id, {})
                findings[finding] = max(findings.get(finding, 0.0), weight[status])
    uncertain = weight["uncertain"]
    return {study_id: PredictionRecord(
                model_version=rules_model_version(newest[study_id][0]), choices=choices,
                uncertain=tuple(name for name, value in choices.items() if value == uncertain))
            for study_id, choices in by_study.items()}


def rules_model_version(rules_version: str | None) -> str:
    """The ``model_version`` of the report rules' predictions: ``report-rules:<rules version>``."""
    return f"report-rules:{rules_version}" if rules_version else "report-rules"


def newest_rules_version(session) -> str | None:
    """The rules version of the catalog's newest weak label (None when there is none): one indexed query."""
    return session.scalars(select(WeakLabel.rules_version).order_by(WeakLabel.id.desc()).limit(1)).first()


def task_report(texts: list[str], report_text: str, *, max_chars: int = MAX_REPORT_CHARS,
                dates: list[date | None] | None = None) -> str:
    """The report field of a task: a study's stored report texts as ``report_text`` says.

    One report is shown as it is.  Several get a header each ("=== Report 2 of 3 · 2023-04-05 ==="), by their
    ``dates`` (one per text; undated last, then in the order given; the header's date is the year only under
    ``redacted``); a text stored twice is shown once, its header naming the other copies.  A field longer than
    ``max_chars`` is cut, deterministically and saying so in the text: each report gets an equal share (a short one's
    unused share goes to the others), a report over its share keeps its FINDINGS and IMPRESSION sections
    first (:func:`_fit_report`); when shares would fall below :data:`MIN_REPORT_SHARE`, only the first
    reports are shown and a last line names the others.

    Raises:
        ValueError: an unknown ``report_text``; ``dates`` not one per text.
    """
    if check_report_text(report_text) == "none":
        return REPORT_WITHHELD
    dated = sorted(zip(texts, [None] * len(texts) if dates is None else dates, strict=True),  # a stable sort
                   key=lambda pair: (pair[1] is None, pair[1] or date.min))
    if report_text == "redacted":  # one report at a time: no match spans two
        dated = [(redact_report(text).text, when) for text, when in dated]
    dated = [(text.strip(), when) for text, when in dated if text and text.strip()]
    texts = [text for text, _ in dated]
    if not texts:
        return NO_REPORT
    copies: dict[str, list[int]] = {}
    for number, text in enumerate(texts, start=1):
        copies.setdefault(text, []).append(number)
    if len(copies) == 1:
        return _fit_report(texts[0], max_chars)
    any_date = any(when is not None for _, when in dated)
    parts = []
    for text, numbers in copies.items():
        header = f"=== Report {numbers[0]} of {len(texts)}"
        if any_date:
            when = dated[numbers[0] - 1][1]
            header += " · " + ("no date" if when is None else str(when.year) if report_text == "redacted"
                               else when.isoformat())
        if len(numbers) > 1:
            header += f" (the same text as report{'s' if len(numbers) > 2 else ''} " + \
                      ", ".join(str(number) for number in numbers[1:]) + ")"
        parts.append((f"{header} ===", text))
    shown = len(parts)
    while True:  # the first `shown` reports, each with at least MIN_REPORT_SHARE characters if cut
        kept = parts[:shown]
        omitted = [numbers[0] for numbers in list(copies.values())[shown:]]
        tail = (f"[cut by radloop: {len(omitted)} more report(s) of this study not shown: number(s) "
                f"{_number_ranges(omitted)} of {len(texts)}]" if omitted else "")
        budget = max_chars - len(tail) - sum(len(header) + 3 for header, _ in kept)  # 3: newline, blank line
        shares = _shares([len(text) for _, text in kept], budget)
        if shown == 1 or all(share >= _floor(text) for share, (_, text) in zip(shares, kept)):
            break
        shown -= 1
    blocks = [f"{header}\n{_fit_report(text, share)}" for (header, text), share in zip(kept, shares)]
    return "\n\n".join(blocks + ([tail] if tail else []))


def _number_ranges(numbers: list[int]) -> str:
    """``[2, 3, 4, 7]`` -> ``"2-4, 7"``."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def _shares(lengths: list[int], budget: int) -> list[int]:
    """Characters each text may keep out of ``budget``: equal shares, a short text's unused share going to
    the longer ones (water-filling; deterministic)."""
    shares = list(lengths)
    left, waiting = max(budget, 0), sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    while waiting:
        share = left // len(waiting)
        if lengths[waiting[0]] > share:  # the shortest left is over an equal share: so is every longer one
            for index in waiting:
                shares[index] = share
            break
        left -= lengths[waiting.pop(0)]
    return shares


#: A report section's header at the start of a line ("FINDINGS:", "Impression:"); only these names, so that a
#: line such as "LEFT WRIST: ..." inside the findings is not taken for a section and left out.
_SECTION = re.compile(r"(?im)^[ \t]*(COMPARISON|INDICATION|CLINICAL HISTORY|HISTORY|TECHNIQUE|FINDINGS|IMPRESSION|"
                      r"CONCLUSION)[ \t]*:")
#: The sections an expert labelling the image needs most: kept first when a report must be cut.
_KEY_SECTIONS = ("FINDINGS", "IMPRESSION", "CONCLUSION")


def _floor(text: str) -> int:
    """The fewest characters ``text`` is shown in before another report is left out instead: all of it, its
    FINDINGS and IMPRESSION sections with their note, or :data:`MIN_REPORT_SHARE`, whichever is least."""
    key = _key_sections(text)
    return min(len(text), MIN_REPORT_SHARE, len("\n".join(key[0]) + key[1]) if key else len(text))


def _key_sections(text: str) -> tuple[list[str], str] | None:
    """The FINDINGS and IMPRESSION sections of ``text`` (in their order) and the note naming what they leave
    out; None when it has neither."""
    matches = list(_SECTION.finditer(text))
    sections = [(match.group(1).upper(), text[match.start():following.start() if following else len(text)].strip())
                for match, following in zip(matches, matches[1:] + [None])]
    key = [body for name, body in sections if name in _KEY_SECTIONS]
    if not key:
        return None
    left_out = [name for name, _ in sections if name not in _KEY_SECTIONS]
    if text[:matches[0].start()].strip():
        left_out.insert(0, "the text before the first section")
    return key, (f"\n[cut by radloop: left out {', '.join(left_out)}]" if left_out else "")


def _fit_report(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters (or a little more for a tiny limit), saying what was cut.

    A text that fits is returned as it is.  Else, when it is written in sections, its FINDINGS and IMPRESSION
    sections are kept (in their order) and the other sections left out, named in a note; key sections still
    too long share the room (a short impression stays whole, a long findings section is cut).  A text without
    those sections is cut at a word boundary.
    """
    if len(text) <= limit:
        return text
    found = _key_sections(text)
    if found is None:
        return _cut(text, limit)
    key, note = found
    room = limit - len(note) - (len(key) - 1)  # the newlines between the kept sections
    shares = _shares([len(body) for body in key], room)
    return "\n".join(_cut(body, share) for body, share in zip(key, shares)) + note


def _cut(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary, ending with a note saying how much went."""
    if len(text) <= limit:
        return text
    marker = f" ... [cut by radloop: {{}} of {len(text)} characters left out]"
    room = max(limit - len(marker), 40)
    cut = text[:room]
    if " " in cut[room // 2:]:  # end on a word boundary
        cut = cut[:cut.rindex(" ")]
    cut = cut.rstrip()
    return cut + marker.format(len(text) - len(cut))


def _report_texts(session, study_ids: list[str]) -> dict[str, list[tuple[str, date | None]]]:
    """Each study's ``(text, report date)`` pairs, by report id (:func:`task_report` orders them by date)."""
    texts: dict[str, list[tuple[str, date | None]]] = {}
    for study_id, text, when in session.execute(
            select(Report.study_id, Report.text, Report.report_date).where(Report.study_id.in_(study_ids))
            .order_by(Report.id)).all():
        texts.setdefault(study_id, []).append((text or "", when))
    return texts


def build_task_payloads(catalog: Catalog, round_id: int, *, selection_ids: list[int] | None = None,
                        url_for: Callable[[Path], str], predictor: Any = None,
                        label_config: ParsedLabelConfig | None = None, batch_size: int = 16,
                        report_text: str | None = None) -> list[TaskPayload]:
    """Task JSON (data + predictions) for the round's selections (all, or ``selection_ids``), in rank order.

    Args:
        url_for: staged render path -> image URL.
        predictor: a ``radloop.ssl.predict.Predictor`` or None (no model pre-annotations).
        report_text: what the report field carries (``redacted``, ``none``, ``as_stored``); None: the
            workspace binding's setting, else ``redacted``.

    Raises:
        LookupError: no such round.
        FileNotFoundError: a render is missing.
        ValueError: an unknown ``report_text``, an unreadable binding when it is None.
    """
    config = label_config or parse_label_config(build_label_config())
    workspace = catalog.workspace
    report_text = report_text_setting(workspace, report_text=report_text)
    with catalog.session() as session:
        round_row = session.get(Round, round_id)
        if round_row is None:
            raise LookupError(f"no round with id {round_id}")
        query = select(Selection, Image).join(Image, Image.id == Selection.image_id) \
            .where(Selection.round_id == round_id).order_by(Selection.rank, Selection.id)
        if selection_ids is not None:
            query = query.where(Selection.id.in_(selection_ids))
        rows = session.execute(query).all()
        study_ids = sorted({image.study_id for _, image in rows})
        reports = _report_texts(session, study_ids)
        weak = weak_label_predictions(session, study_ids)
        round_number = round_row.number
    staged = {image.id: stage_render(workspace, image.id, image.render_path) for _, image in rows}
    urls = {image_id: url_for(path) for image_id, path in staged.items()}  # a bad URL setting fails before the model
    model_predictions: dict[str, PredictionRecord] = {}
    if predictor is not None and rows:
        images = [image for _, image in rows]
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            outputs = predictor.predict([str(workspace.absolute(image.render_path)) for image in chunk],
                                        original_sizes=[(image.width, image.height) for image in chunk])
            for image, output in zip(chunk, outputs):
                model_predictions[image.id] = PredictionRecord(
                    model_version=output.model_version, choices=dict(output.choices), boxes=tuple(output.boxes))
        _store_predicted(catalog, {selection.id: model_predictions[image.id] for selection, image in rows})
    payloads = []
    for selection, image in rows:
        geometry = ImageGeometry(image.width, image.height, image.render_width, image.render_height)
        data = TaskData(case_id=image.id, study_id=image.study_id, image_url=urls[image.id],
                        report=task_report([text for text, _ in reports.get(image.study_id, [])], report_text,
                                           dates=[when for _, when in reports.get(image.study_id, [])]),
                        body_region=image.body_region or "unknown", strategy=selection.strategy,
                        selection_score=None if selection.score is None else round(float(selection.score), 6),
                        round_number=round_number, round_id=round_id)
        predictions = [p for p in (weak.get(image.study_id), model_predictions.get(image.id)) if p is not None]
        payloads.append(TaskPayload(selection_id=selection.id, key=task_key(image.id, round_id), image_id=image.id,
                                    task=task_to_ls(data, predictions, geometry, config)))
    return payloads


#: The key of ``Selection.meta`` holding the model's boxes sent as pre-annotations (the Queue page draws them):
#: ``{"model_version": str, "boxes": [{"label", "x", "y", "w", "h", "score"}]}``, original-image pixels.
PREDICTED_META = "predicted"


def _store_predicted(catalog: Catalog, records: dict[int, PredictionRecord]) -> None:
    """Keep each selection's model boxes in ``Selection.meta[PREDICTED_META]`` (the latest build's), each row
    locked while its other keys (a push's ``ls``) are kept."""
    with catalog.session() as session:
        for selection_id, record in records.items():
            selection = get_for_update(session, Selection, selection_id)
            if selection is None:  # deleted meanwhile
                continue
            boxes = [{"label": box.label, "x": round(float(box.x), 1), "y": round(float(box.y), 1),
                      "w": round(float(box.w), 1), "h": round(float(box.h), 1),
                      "score": None if box.score is None else round(float(box.score), 4)} for box in record.boxes]
            selection.meta = {**(selection.meta or {}),  # reassign: JSON columns do not track in-place changes
                              PREDICTED_META: {"model_version": record.model_version, "boxes": boxes}}


def export_tasks_json(catalog: Catalog, round_id: int, path: str | os.PathLike, *,
                      binding: ProjectBinding | None = None, document_root: str | None = None,
                      media_url: str | None = None, with_model: bool = True, report_text: str | None = None) -> dict:
    """Write the round's Label Studio import file (for when no server is reachable); returns a summary.

    Images are staged like a push; their URLs use ``media_url`` or local-files paths under
    ``document_root`` (default: the binding's, else the workspace root).  The report field follows
    ``report_text``, else the binding's (``binding``, else the workspace's) setting, else ``redacted``.
    The file is written beside ``path`` and renamed; a failed write leaves neither it nor a partial file.

    Raises:
        IsADirectoryError: ``path`` is a folder (checked before any work).
        ValueError: the document root does not contain the workspace's media folder (checked before any
            work); an unknown ``report_text``.
        LookupError / FileNotFoundError: see :func:`build_task_payloads`.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder: give a file path")
    root = document_root or (binding.document_root if binding else None) or str(catalog.workspace.root)
    if not (media_url or (binding.media_url if binding else None)):
        check_document_root(media_dir(catalog.workspace), root)
    report_text = report_text_setting(catalog.workspace, binding, report_text)
    predictor = load_current_predictor(catalog) if with_model else None
    payloads = build_task_payloads(
        catalog, round_id, predictor=predictor, report_text=report_text,
        url_for=lambda staged: image_url(binding, staged, document_root=root, media_url=media_url))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    try:
        temporary.write_text(json.dumps([payload.task for payload in payloads], indent=1))
        os.replace(temporary, target)
    except BaseException:  # disk full, Ctrl-C: no half-written file is left beside the output
        with contextlib.suppress(OSError):  # the error to report is the write's, not this clean-up's
            temporary.unlink(missing_ok=True)
        raise
    return {"path": str(target), "tasks": len(payloads),
            "predictions": sum(len(payload.task["predictions"]) for payload in payloads),
            "model_version": getattr(predictor, "model_version", None)}
