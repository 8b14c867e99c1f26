"""The Label Studio labelling configuration, generated from the finding vocabulary, and its parser.

One layout for every radloop project: the de-identified 8-bit render, the report text beside it (what
:data:`REPORT_TEXT_MODES` says: redacted by :mod:`radloop.labeling.redact` by default, none, or as stored; its
header says which), two multiple ``Choices`` side by side for the image-level findings ("Present": tick every
finding present, none ticked = none present; "Cannot tell": a finding the reader cannot call either way,
stored as uncertain), ``RectangleLabels`` for the findings that can be drawn as boxes, and a free-text
comment. Choices and labels show readable names (``foreign body``) and carry the vocabulary key as their
``alias`` (``foreign_body``), which is what annotations and predictions hold. Control names are fixed
(:data:`IMAGE_NAME` ...) so that the adapter and the ML backend find them; :func:`parse_label_config` reads
any project's config (the ML backend gets the project's XML from Label Studio and must answer with that
project's names).
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from radloop.core.vocabulary import BOX_FINDINGS, IMAGE_FINDINGS, check_finding

__all__ = [
    "BOXES_NAME", "CANNOT_TELL_NAME", "CHOICES_NAME", "COMMENT_NAME", "DEFAULT_REPORT_TEXT", "FINDINGS_INSTRUCTION",
    "IMAGE_NAME", "REPORT_HEADERS", "REPORT_NAME", "REPORT_TEXT_MODES", "ControlSpec", "LabelConfigError",
    "ParsedLabelConfig", "build_label_config", "check_report_text", "config_digest", "parse_label_config",
]

IMAGE_NAME = "image"
REPORT_NAME = "report"
CHOICES_NAME = "findings"
#: The Choices control whose ticked findings the annotator cannot call (stored as uncertain, not absent).
CANNOT_TELL_NAME = "cannot_tell"
BOXES_NAME = "boxes"
COMMENT_NAME = "comment"

#: What a task's report field carries: ``redacted`` (the stored text through
#: :func:`radloop.labeling.redact.redact_report`), ``none`` (a fixed note, no report text) or ``as_stored``
#: (for sites whose reports are de-identified at the source).
REPORT_TEXT_MODES = ("redacted", "none", "as_stored")
DEFAULT_REPORT_TEXT = "redacted"
#: The header above the report in the labelling view, per mode: it says what the annotator sees.
REPORT_HEADERS = {
    "redacted": "Report (identifiers redacted by radloop)",
    "none": "Report (not sent: radloop sends no report text)",
    "as_stored": "Report (as stored)",
}

#: What the labelling view says above the two finding lists: an unticked finding is an answer (absent).
FINDINGS_INSTRUCTION = ("Tick every finding present; none ticked = none present. A finding you cannot call "
                        "either way: tick it under Cannot tell (stored as uncertain, not as absent).")
_NOTE_STYLE = "font-weight: normal; font-size: 0.9rem; line-height: 1.4;"
_BOX_COLOURS = ("#e6194b", "#f58231", "#3cb44b", "#4363d8", "#911eb4", "#46f0f0")


class LabelConfigError(ValueError):
    """A labelling config that is not XML or lacks an image with a Choices / RectangleLabels control."""


def _display(name: str) -> str:
    return name.replace("_", " ")


def _item(tag: str, name: str, **attributes: str) -> str:
    """A ``Choice`` / ``Label`` showing the readable name; the vocabulary key goes in ``alias`` when it differs.

    Label Studio shows ``value`` and stores ``alias`` (else ``value``) in results, so the stored value stays
    the vocabulary key and a project whose annotations hold the key accepts this config as an update.
    """
    shown = _display(name)
    alias = {"alias": name} if shown != name else {}
    return f"<{tag} " + " ".join(f"{key}={quoteattr(value)}" for key, value in
                                  {"value": shown, **alias, **attributes}.items()) + "/>"


def check_report_text(mode: str) -> str:
    """``mode`` when it is one of :data:`REPORT_TEXT_MODES`.

    Raises:
        ValueError: any other value, listing the valid ones.
    """
    if mode not in REPORT_TEXT_MODES:
        raise ValueError(f"report text setting must be one of {', '.join(REPORT_TEXT_MODES)}, got {mode!r}")
    return mode


def build_label_config(image_findings: tuple[str, ...] = IMAGE_FINDINGS,
                       box_findings: tuple[str, ...] = BOX_FINDINGS, *,
                       report_text: str = DEFAULT_REPORT_TEXT) -> str:
    """Labelling config XML for radloop projects.

    Choices and labels show readable names; what annotations carry back (``alias``, else ``value``) are
    vocabulary names.  The "Cannot tell" list repeats the image findings.  The report's header says what
    ``report_text`` puts in the tasks.

    Raises:
        ValueError: a finding that is not in the vocabulary, an unknown ``report_text``.
    """
    for name in (*image_findings, *box_findings):
        check_finding(name)
    report_header = quoteattr(REPORT_HEADERS[check_report_text(report_text)])
    present = "\n".join("            " + _item("Choice", name, hint=_display(name)) for name in image_findings)
    cannot_tell = "\n".join("            " + _item("Choice", name, hint=f"cannot tell whether {_display(name)}")
                            for name in image_findings)
    labels = "\n".join("        " + _item("Label", name, background=_BOX_COLOURS[i % len(_BOX_COLOURS)])
                       for i, name in enumerate(box_findings))
    return f"""<View>
  <Header value="Case $case_id · $body_region · round $round"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 3;">
      <Image name="{IMAGE_NAME}" value="$image" zoom="true" zoomControl="true" rotateControl="false"/>
      <RectangleLabels name="{BOXES_NAME}" toName="{IMAGE_NAME}" canRotate="false" strokeWidth="2">
{labels}
      </RectangleLabels>
    </View>
    <View style="flex: 2;">
      <Header value={report_header} size="5"/>
      <Text name="{REPORT_NAME}" value="$report"/>
      <Header value="Image findings" size="5"/>
      <Header value={quoteattr(FINDINGS_INSTRUCTION)} size="5" style="{_NOTE_STYLE}"/>
      <View style="display: flex; gap: 3em;">
        <View>
          <Header value="Present" size="5"/>
          <Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="multiple" showInline="false">
{present}
          </Choices>
        </View>
        <View>
          <Header value="Cannot tell" size="5"/>
          <Choices name="{CANNOT_TELL_NAME}" toName="{IMAGE_NAME}" choice="multiple" showInline="false">
{cannot_tell}
          </Choices>
        </View>
      </View>
      <Header value="Comment" size="5"/>
      <TextArea name="{COMMENT_NAME}" toName="{IMAGE_NAME}" rows="3" editable="true" maxSubmissions="1"/>
    </View>
  </View>
</View>
"""


def config_digest(label_config: str) -> str:
    """Short content hash of a config (whitespace-insensitive), to tell whether a project needs an update."""
    canonical = " ".join(label_config.split())
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ControlSpec:
    """One control tag: ``from_name`` (its name), ``to_name`` (the object it labels), its labels."""

    from_name: str
    to_name: str
    tag: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ParsedLabelConfig:
    """What the adapter and the ML backend need from a project's labelling config.

    Attributes:
        image_name: name of the ``Image`` object tag; ``image_value`` its data key (``image`` for ``$image``).
        choices: ``Choices`` controls on the image (findings present), except those named
            :data:`CANNOT_TELL_NAME`, which are ``cannot_tell`` (findings the annotator cannot call);
            rectangles: ``RectangleLabels`` controls on the image.  A control's labels are what results
            carry: each item's ``alias``, else its ``value``.
        comment_names: ``TextArea`` control names.
    """

    image_name: str
    image_value: str
    choices: tuple[ControlSpec, ...]
    rectangles: tuple[ControlSpec, ...]
    comment_names: tuple[str, ...]
    cannot_tell: tuple[ControlSpec, ...] = ()

    def control(self, from_name: str) -> ControlSpec | None:
        for spec in (*self.choices, *self.cannot_tell, *self.rectangles):
            if spec.from_name == from_name:
                return spec
        return None


def parse_label_config(label_config: str) -> ParsedLabelConfig:
    """Find the image object and its Choices / RectangleLabels / TextArea controls in a config.

    Raises:
        LabelConfigError: not XML, no ``Image`` tag, or neither Choices nor RectangleLabels on it.
    """
    if not label_config or not label_config.strip():
        raise LabelConfigError("empty labelling config")
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as error:
        raise LabelConfigError(f"labelling config is not valid XML: {error}") from error
    images = [element for element in root.iter() if element.tag == "Image" and element.get("name")]
    if not images:
        raise LabelConfigError("labelling config has no <Image name=...> tag")
    image = images[0]
    image_name = image.get("name", "")
    image_value = (image.get("value") or "").lstrip("$")

    def _controls(tag: str, child: str) -> tuple[ControlSpec, ...]:
        found = []
        for element in root.iter(tag):
            if element.get("toName") != image_name or not element.get("name"):
                continue
            labels = tuple(item.get("alias") or item.get("value") for item in element.iter(child)
                           if item.get("alias") or item.get("value"))
            found.append(ControlSpec(element.get("name"), image_name, tag, labels))
        return tuple(found)

    all_choices = _controls("Choices", "Choice")
    choices = tuple(spec for spec in all_choices if spec.from_name != CANNOT_TELL_NAME)
    cannot_tell = tuple(spec for spec in all_choices if spec.from_name == CANNOT_TELL_NAME)
    rectangles = _controls("RectangleLabels", "Label")
    if not choices and not rectangles:
        raise LabelConfigError(f"labelling config has no Choices or RectangleLabels on image {image_name!r}")
    comments = tuple(element.get("name") for element in root.iter("TextArea") if element.get("name"))
    return ParsedLabelConfig(image_name=image_name, image_value=image_value, choices=choices,
                             rectangles=rectangles, comment_names=comments, cannot_tell=cannot_tell)
