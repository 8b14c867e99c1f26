"""A round records its strategy's notes (a stratified quota naming a region with nothing left to pick) in the
round's notes, where `round status` and the app show them, instead of a Python warning on stderr."""

from __future__ import annotations

import warnings

from rounds_workspace import build_rounds_catalog


def test_stratified_quota_for_an_absent_region_is_a_round_note(tmp_path, test_catalog_url):
    from radloop.app.rounds import load_round_config, start_round

    root = (tmp_path / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 60)
    try:
        # studies fall in splits by their keyed pseudonyms (a new key per workspace): quota a region the train
        # pool has (a fixed "wrist" was absent from one CI run's pool) beside the knee, which the set lacks
        present = _most_common_train_region(catalog)
        config = load_round_config(None, ["strategy=stratified", "budget=6",
                                          f"strategy_params={{base: random, quotas: {{{present}: 0.5, knee: 0.5}}}}"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = start_round(catalog, config=config, simulate=True)
        assert any(note.startswith("stratified: ") and "knee" in note for note in report.notes), report.notes
        assert not [w for w in caught if "knee" in str(w.message)], [str(w.message) for w in caught]
    finally:
        catalog.dispose()


def _most_common_train_region(catalog) -> str:
    from sqlalchemy import func, select

    from radloop.core.schema import Image, Study

    with catalog.session() as session:
        region = session.execute(
            select(Image.body_region).join(Study, Study.id == Image.study_id)
            .where(Study.split == "train", Image.body_region.is_not(None), Image.body_region != "knee")
            .group_by(Image.body_region).order_by(func.count().desc(), Image.body_region).limit(1)).scalar()
    assert region, "the train pool has no image with a body region"
    return region


def test_a_quota_typo_fails_before_the_pool_is_embedded(tmp_path, test_catalog_url, monkeypatch):
    """'wirst' failed after the pool was embedded and indexed (24 s on the demo; walk 22g) -> at once."""
    import pytest

    from radloop.app import rounds
    from radloop.app.rounds import RoundError, load_round_config, start_round

    root = (tmp_path / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 20)
    monkeypatch.setattr(rounds, "open_round", lambda _catalog: pytest.fail("got past the settings checks"))
    try:
        config = load_round_config(None, ["strategy=stratified", "budget=6",
                                          "strategy_params={base: random, quotas: {wirst: 0.5, unknown: 0.5}}"])
        with pytest.raises(RoundError, match=r"quota stratum 'wirst' is not a body region \(did you mean 'wrist'"):
            start_round(catalog, config=config, simulate=True)
    finally:
        catalog.dispose()
