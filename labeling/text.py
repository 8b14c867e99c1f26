"""Make raw report text safe to label without moving character offsets where possible."""

from __future__ import annotations

import re
from html.entities import html5

#: Reports longer than this are not labelled (an ``error`` is returned instead).
MAX_CHARS = 2_000_000
#: Longer texts are labelled in pieces of about this size (ConText pairs every modifier with every
#: target of a doc, so one huge doc costs quadratic time).
CHUNK_CHARS = 2_000
_BREAK = re.compile(r"(?:[.!?;]\s+|\n+)")

#: HTML elements that turn up in exported reports.  Only these names (or a namespaced ``<o:p>``-style
#: name) count as a tag, so that comparisons ("displacement <2 mm ... angulation >10 degrees",
#: "<L1 and >T12") are text, not markup.
HTML_ELEMENTS = frozenset("""
    a abbr address article aside b big blockquote body br caption center cite code col colgroup dd del div dl
    dt em font footer form h1 h2 h3 h4 h5 h6 head header hr html i img input ins kbd label li link main mark
    meta nav ol p pre q s samp script section small span strike strong style sub sup table tbody td tfoot th
    thead title tr tt u ul var wbr
""".split())
_TAG = re.compile(
    r"<!--[^<>]{0,2000}?-->"                               # comment (no < > inside: linear time)
    r"|<[!?][A-Za-z][^<>]{0,200}>"                         # <!DOCTYPE ...>, <?xml ...?>
    r"|</?(?P<name>[A-Za-z][A-Za-z0-9]{0,15})(?P<namespaced>:[A-Za-z][A-Za-z0-9-]{0,30})?"
    r"(?:\s[^<>]{0,300})?/?>")                              # element: name, then attributes
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|(?P<name>[A-Za-z][A-Za-z0-9]{1,31}));")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _blank_tag(match: re.Match) -> str:
    name = match.group("name")
    if name is not None and match.group("namespaced") is None and name.lower() not in HTML_ELEMENTS:
        return match.group()  # "<left side>", "<a1 ... >": text between comparison signs, not a tag
    return " " * len(match.group())


def _blank_entity(match: re.Match) -> str:
    name = match.group("name")
    if name is not None and f"{name};" not in html5:
        return match.group()  # "&foo;" is not a character reference
    return " " * len(match.group())


def clean_text(raw: str | bytes | None, *, max_chars: int = MAX_CHARS) -> tuple[str, str | None]:
    """Return ``(text, error)``: text ready for the pipeline, or ``("", reason)`` when it cannot be labelled.

    HTML markup (tags of :data:`HTML_ELEMENTS` or namespaced ones, comments, declarations), character
    references (``&amp;``, ``&#160;``) and control characters are blanked with spaces of the same
    length, so the character offsets of mentions still index the original string (and ``evidence``
    equals ``raw[start:end]`` unless markup sits inside the finding's words).  A ``<`` or ``>`` that
    is not markup ("displacement <2 mm", "angulation >10 degrees") is left as text.  Bytes are
    decoded as UTF-8 with replacement characters (then offsets index the decoded text).
    """
    if raw is None:
        return "", "missing text"
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        return "", f"text is {type(raw).__name__}, not str"
    if len(raw) > max_chars:
        return "", f"text too long ({len(raw):,} characters > {max_chars:,})"
    if not raw.strip():
        return "", None
    text = raw
    if "<" in text:
        text = _TAG.sub(_blank_tag, text)
    if "&" in text:
        text = _ENTITY.sub(_blank_entity, text)
    text = _CONTROL.sub(" ", text)
    return text, None


def split_chunks(text: str, size: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """Split ``text`` into ``(offset, piece)`` pieces of at most about ``size`` characters at sentence ends."""
    pieces: list[tuple[int, str]] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            breaks = [match.end() for match in _BREAK.finditer(text, start + size // 2, end)]
            if breaks:
                end = breaks[-1]
        pieces.append((start, text[start:end]))
        start = end
    return pieces
