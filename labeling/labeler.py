"""``ReportLabeler``: report text -> finding mentions with status, temporality, site, laterality, device type."""

from __future__ import annotations

from typing import Iterable, Iterator

from radloop.core.records import FindingMention

from .mentions import doc_mentions
from .pipeline import build_pipeline, build_site_matcher
from .rules_loader import RuleSet, load_rule_set, rules_version
from .text import MAX_CHARS, clean_text


class LabelResult(list):
    """The mentions of one report (a ``list[FindingMention]``) plus ``error`` when it could not be labelled."""

    error: str | None = None


class ReportLabeler:
    """Rule-based weak labeller for radiograph reports (medspacy; rules are package data files).

    Args:
        max_chars: Longer reports are not labelled; their result carries ``error``.
        batch_size: spaCy ``nlp.pipe`` batch size.

    Example:
        >>> labeler = ReportLabeler()
        >>> [m.finding for m in labeler.label("FINDINGS: Healed right 5th rib fracture.")]
        ['fracture', 'normal']
    """

    def __init__(self, *, max_chars: int = MAX_CHARS, batch_size: int = 256):
        self.max_chars = max_chars
        self.batch_size = batch_size
        self._rule_set: RuleSet = load_rule_set()
        self.rules_version: str = self._rule_set.version
        self._nlp = build_pipeline(self._rule_set)
        self._sites = build_site_matcher(self._nlp, self._rule_set)

    def label(self, text: str | bytes | None) -> LabelResult:
        """Label one report; never raises on bad text (see ``LabelResult.error``)."""
        return next(self.label_many([text]))

    def label_many(self, texts: Iterable[str | bytes | None], n_process: int = 1) -> Iterator[LabelResult]:
        """Label reports lazily, in input order (streaming: memory stays flat).

        Args:
            texts: Report texts (``None``/bytes/HTML tolerated).
            n_process: Worker processes; each builds its own pipeline (medspacy rules do not pickle).
        """
        if n_process > 1:
            from .parallel import label_parallel

            yield from label_parallel(texts, n_process=n_process, batch_size=self.batch_size,
                                      max_chars=self.max_chars)
            return
        yield from self._label_serial(texts)

    def _label_serial(self, texts: Iterable) -> Iterator[LabelResult]:
        cleaned = (clean_text(text, max_chars=self.max_chars) for text in texts)
        pending: list[tuple[str, str | None]] = []
        for item in cleaned:
            pending.append(item)
            if len(pending) >= self.batch_size:
                yield from self._label_batch(pending)
                pending = []
        if pending:
            yield from self._label_batch(pending)

    def _label_batch(self, batch: list[tuple[str, str | None]]) -> Iterator[LabelResult]:
        docs = self._nlp.pipe(text for text, _ in batch)
        for (text, error), doc in zip(batch, docs):
            result = LabelResult()
            if error is not None:
                result.error = error
            elif text:
                try:
                    result.extend(doc_mentions(doc, self._sites, self._rule_set.excluded_sections))
                except Exception as failure:  # noqa: BLE001  one bad report must not stop a run
                    result.error = f"labelling failed: {type(failure).__name__}: {failure}"
            yield result


__all__ = ["LabelResult", "ReportLabeler", "rules_version"]
