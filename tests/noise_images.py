"""Tiny random PNGs ingested into a test catalog: images to count and group when their pixels do not matter."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update


def ingest_noise_images(catalog, folder: Path, count: int, *, seed: int = 0) -> list[str]:
    """Write ``count`` random 32 x 32 PNGs into ``folder``, ingest them and return their image ids, sorted."""
    import numpy as np
    from PIL import Image as PILImage

    from radloop.core.ingest import ingest_paths
    from radloop.core.schema import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        PILImage.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / f"x{index}.png")
    ingest_paths(catalog, [folder], workers=1)
    with catalog.session() as session:
        return sorted(session.scalars(Image.__table__.select().with_only_columns(Image.id)))


def images_with_an_empty_region(catalog, folder: Path, *, seed: int = 0) -> list[str]:
    """Four noise images: the first's body region an empty string, the second's ``wrist``, the others' null;
    returns their image ids, sorted."""
    from radloop.core.schema import Image

    ids = ingest_noise_images(catalog, folder, 4, seed=seed)
    with catalog.session() as session:
        session.execute(update(Image).where(Image.id == ids[0]).values(body_region=""))
        session.execute(update(Image).where(Image.id == ids[1]).values(body_region="wrist"))
        session.commit()
    return ids


def named_pngs(folder: Path, names: list[str]) -> Path:
    """``<name>.png`` (40 x 40 noise seeded by the name: distinct pixels for each name) for each name; ``folder``."""
    import numpy as np
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        rng = np.random.default_rng(sum(name.encode()))
        PILImage.fromarray(rng.integers(0, 256, size=(40, 40), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def reports_csv(path: Path, rows) -> Path:
    """A reports CSV (``report_id,text,study_id,image``) with ``rows``; ``path``."""
    path.write_text("report_id,text,study_id,image\n" + "".join(",".join(row) + "\n" for row in rows))
    return path
