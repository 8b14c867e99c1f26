"""``ReportLabeler``: report text -> finding mentions with status, temporality, site, laterality, device type."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Iterator

from radloop.core.records import FindingMention

from .checks import require_many
from .mentions import doc_mentions
from .pipeline import blank_pipeline, build_pipeline, build_site_matcher, token_texts
from .rules_loader import RuleSet, load_rule_set, rules_version
from .text import CHUNK_CHARS, MAX_CHARS, clean_text, split_chunks


class LabelResult(list):
    """The mentions of one report (a ``list[FindingMention]``) plus ``error`` when it could not be labelled."""

    error: str | None = None


class ReportLabeler:
    """Rule-based weak labeller for radiograph reports (medspacy; rules are package data files).

    Args:
        max_chars: Longer reports are not labelled; their result carries ``error``.
        batch_size: spaCy ``nlp.pipe`` batch size.
        chunk_chars: Reports longer than this are labelled piecewise (sentence-aligned pieces; the
            section header in force is carried into the next piece), keeping time linear in length.

    Example:
        >>> labeler = ReportLabeler()
        >>> [m.finding for m in labeler.label("FINDINGS: Healed right 5th rib fracture.")]
        ['fracture', 'normal']
    """

    def __init__(self, *, max_chars: int = MAX_CHARS, batch_size: int = 256, chunk_chars: int = CHUNK_CHARS):
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.chunk_chars = chunk_chars
        nlp = blank_pipeline()
        self._rule_set: RuleSet = load_rule_set(tokenize=token_texts(nlp))
        self.rules_version: str = self._rule_set.version
        self._nlp = build_pipeline(self._rule_set, nlp)
        self._sites = build_site_matcher(self._nlp, self._rule_set)

    def label(self, text: str | bytes | None) -> LabelResult:
        """Label one report; never raises on bad text (see ``LabelResult.error``)."""
        return next(self.label_many([text]))

    def label_many(self, texts: Iterable[str | bytes | None], n_process: int = 1) -> Iterator[LabelResult]:
        """Label reports lazily, in input order (streaming: memory stays flat).

        Args:
            texts: An iterable of report texts (``None``/bytes/HTML tolerated), one result per item.
            n_process: Worker processes; each builds its own pipeline (medspacy rules do not pickle).

        Raises:
            TypeError: ``texts`` is one ``str``/``bytes`` (it would be labelled character by
                character); use :meth:`label` for one report, or wrap it in a list.
        """
        require_many(texts, "texts", "report texts", hint="use label(text) for one report")
        if n_process > 1:
            from .parallel import label_parallel

            return label_parallel(self, texts, n_process=n_process)
        return self._label_serial(texts)

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
        short = (text if len(text) <= self.chunk_chars else "" for text, _ in batch)
        docs = self._nlp.pipe(short)
        for (text, error), doc in zip(batch, docs):
            result = LabelResult()
            if error is not None:
                result.error = error
            elif text:
                try:
                    if len(text) > self.chunk_chars:
                        result.extend(self._label_long(text))
                    else:
                        result.extend(doc_mentions(doc, self._sites, self._rule_set.excluded_sections, self._rule_set.exam_side))
                except Exception as failure:  # noqa: BLE001  one bad report must not stop a run
                    result.error = f"labelling failed: {type(failure).__name__}: {failure}"
            yield result

    def _label_long(self, text: str) -> list[FindingMention]:
        """Label a long report piece by piece; offsets index ``text``; one merged ``normal`` entry."""
        mentions: list[FindingMention] = []
        normals: list[FindingMention] = []
        header = ""
        for offset, piece in split_chunks(text, self.chunk_chars):
            prefix = f"{header}\n" if header else ""
            doc = self._nlp(prefix + piece)
            shift = offset - len(prefix)
            for mention in doc_mentions(doc, self._sites, self._rule_set.excluded_sections, self._rule_set.exam_side):
                if mention.start is not None:
                    mention = replace(mention, start=mention.start + shift, end=mention.end + shift)
                (normals if mention.finding == "normal" else mentions).append(mention)
            if doc._.sections and doc._.sections[-1].category is not None:
                start, end = doc._.sections[-1].title_span
                header = doc[start:end].text
        if normals:
            positive = all(entry.status == "positive" for entry in normals)
            evidence = next((entry for entry in normals if entry.start is not None), None)
            entry = evidence if evidence is not None and positive else FindingMention(finding="normal", status="negative")
            mentions.append(replace(entry, status="positive" if positive else "negative"))
        return mentions


__all__ = ["LabelResult", "ReportLabeler", "rules_version"]
