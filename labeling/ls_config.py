"""The Label Studio labelling configuration, generated from the finding vocabulary, and its parser.

One layout for every radloop project: the de-identified 8-bit render, the de-identified report text beside
it, a multiple ``Choices`` for the image-level findings, ``RectangleLabels`` for the findings that can be
drawn as boxes, and a free-text comment.  Control names are fixed (:data:`IMAGE_NAME` ...) so that the
adapter and the ML backend find them; :func:`parse_label_config` reads any project's config (the ML
backend gets the project's XML from Label Studio and must answer with that project's names).
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from radloop.core.vocabulary import BOX_FINDINGS, IMAGE_FINDINGS, check_finding

__all__ = [
    "BOXES_NAME", "CHOICES_NAME", "COMMENT_NAME", "IMAGE_NAME", "REPORT_NAME", "ControlSpec",
    "LabelConfigError", "ParsedLabelConfig", "build_label_config", "config_digest", "parse_label_config",
]

IMAGE_NAME = "image"
REPORT_NAME = "report"
CHOICES_NAME = "findings"
BOXES_NAME = "boxes"
COMMENT_NAME = "comment"

_BOX_COLOURS = ("#e6194b", "#f58231", "#3cb44b", "#4363d8", "#911eb4", "#46f0f0")


class LabelConfigError(ValueError):
    """A labelling config that is not XML or lacks an image with a Choices / RectangleLabels control."""


def _display(name: str) -> str:
    return name.replace("_", " ")


def build_label_config(image_findings: tuple[str, ...] = IMAGE_FINDINGS,
                       box_findings: tuple[str, ...] = BOX_FINDINGS) -> str:
    """Labelling config XML for radloop projects.

    Choice and label ``value`` attributes are vocabulary names (what annotations carry back); the hint
    (tooltip) spells the name out.

    Raises:
        ValueError: a finding that is not in the vocabulary.
    """
    for name in (*image_findings, *box_findings):
        check_finding(name)
    choices = "\n".join(
        f"      <Choice value={quoteattr(name)} hint={quoteattr(_display(name))}/>"
        for name in image_findings)
    labels = "\n".join(
        f"      <Label value={quoteattr(name)} background={quoteattr(_BOX_COLOURS[i % len(_BOX_COLOURS)])}/>"
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
      <Header value="Report (de-identified)" size="5"/>
      <Text name="{REPORT_NAME}" value="$report"/>
      <Header value="Image findings (tick every finding present)" size="5"/>
      <Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="multiple" showInline="false">
{choices}
      </Choices>
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
        choices: ``Choices`` controls on the image; rectangles: ``RectangleLabels`` controls on the image.
        comment_names: ``TextArea`` control names.
    """

    image_name: str
    image_value: str
    choices: tuple[ControlSpec, ...]
    rectangles: tuple[ControlSpec, ...]
    comment_names: tuple[str, ...]

    def control(self, from_name: str) -> ControlSpec | None:
        for spec in (*self.choices, *self.rectangles):
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
            labels = tuple(item.get("value") for item in element.iter(child) if item.get("value"))
            found.append(ControlSpec(element.get("name"), image_name, tag, labels))
        return tuple(found)

    choices = _controls("Choices", "Choice")
    rectangles = _controls("RectangleLabels", "Label")
    if not choices and not rectangles:
        raise LabelConfigError(f"labelling config has no Choices or RectangleLabels on image {image_name!r}")
    comments = tuple(element.get("name") for element in root.iter("TextArea") if element.get("name"))
    return ParsedLabelConfig(image_name=image_name, image_value=image_value, choices=choices,
                             rectangles=rectangles, comment_names=comments)
