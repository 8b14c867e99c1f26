"""Small frozen records that cross package boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in original-image pixels: top-left corner, width, height."""

    label: str
    x: float
    y: float
    w: float
    h: float
    score: float | None = None

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)


@dataclass(frozen=True)
class FindingMention:
    """One finding mention in a report (output of the report labeller).

    ``status`` is positive | negative | uncertain; ``temporality`` acute | old | unspecified.
    ``start``/``end`` are character offsets into the report text.
    """

    finding: str
    status: str
    temporality: str = "unspecified"
    site: str | None = None
    laterality: str | None = None
    device_type: str | None = None
    evidence: str = ""
    start: int | None = None
    end: int | None = None
    section: str | None = None
    modifiers: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {"finding": self.finding, "status": self.status, "temporality": self.temporality,
                "site": self.site, "laterality": self.laterality, "device_type": self.device_type,
                "evidence": self.evidence, "start": self.start, "end": self.end, "section": self.section}
