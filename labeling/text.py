"""Make raw report text safe to label without moving character offsets where possible."""

from __future__ import annotations

import re

#: Reports longer than this are not labelled (an ``error`` is returned instead).
MAX_CHARS = 2_000_000
#: Longer texts are labelled in pieces of about this size (ConText pairs every modifier with every
#: target of a doc, so one huge doc costs quadratic time).
CHUNK_CHARS = 2_000
_BREAK = re.compile(r"(?:[.!?;]\s+|\n+)")

_TAG = re.compile(r"<[^<>]{0,200}>")
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{1,5});")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(raw: str | bytes | None, *, max_chars: int = MAX_CHARS) -> tuple[str, str | None]:
    """Return ``(text, error)``: text ready for the pipeline, or ``("", reason)`` when it cannot be labelled.

    HTML tags, entities and control characters are blanked with spaces of the same length, so the
    character offsets of mentions still index the original string.  Bytes are decoded as UTF-8 with
    replacement characters (then offsets index the decoded text).
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
        text = _TAG.sub(lambda match: " " * len(match.group()), text)
    if "&" in text:
        text = _ENTITY.sub(lambda match: " " * len(match.group()), text)
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
