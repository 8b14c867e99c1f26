"""A small real workspace for the app tests, built at test time from ../shared/data (nothing copied to the repo).

Fracture radiographs (Roboflow bone-fracture set, YOLO labels -> boxes) are rendered into the workspace
the way ingest does (8-bit PNG + 256 px thumbnail); Open-i reports are parsed from the original XML archive.
Weak labels, models, rounds and selections are inserted as rows so that every page has something to show.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image as PILImage

from radloop.core.catalog import Catalog
from radloop.core.schema import Annotation, Image, Model, Report, Round, Selection, Study, WeakLabel
from radloop.core.workspace import Workspace, resolve_workspace

FRACTURE_DIR = ("bone_fracture_xray_roboflow_v4", "yolo", "train")
REPORTS_ARCHIVE = ("iu_xray_reports", "NLMCXR_reports_dev.tgz")
CHEST_IMAGE = ("iu_xray_images", "CXR3_IM-1384-1001.png")
CLASS_NAMES = ["elbow positive", "fingers positive", "forearm fracture", "humerus fracture", "humerus",
               "shoulder fracture", "wrist positive"]
#: Findings the fixture marks in report text, with the word pattern that names them.
FIXTURE_TERMS = {"pneumothorax": r"pneumothorax", "effusion": r"effusions?", "edema": r"edema",
                 "consolidation": r"consolidation", "cardiomegaly": r"cardiomegaly"}
NEGATION = re.compile(r"\b(no|without|negative for|free of)\b", re.IGNORECASE)


def _hex(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()[:16]


def _yolo_box(line: str, width: int, height: int) -> tuple[int, float, float, float, float]:
    """Class id and pixel box (x, y, w, h) from a YOLO bbox or polygon label line."""
    values = line.split()
    class_id, coords = int(values[0]), [float(value) for value in values[1:]]
    if len(coords) == 4:
        cx, cy, w, h = coords
        return class_id, (cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height
    xs, ys = coords[0::2], coords[1::2]
    return class_id, min(xs) * width, min(ys) * height, (max(xs) - min(xs)) * width, (max(ys) - min(ys)) * height


def _add_image(session, workspace: Workspace, source: Path, *, dataset: str, body_region: str | None,
               split: str, meta: dict) -> Image:
    data = source.read_bytes()
    image_id = f"I-{_hex(data)}"
    study_id = f"S-{_hex(image_id)}"
    with PILImage.open(source) as original:
        grey = original.convert("L")
    render = workspace.renders_dir / f"{image_id}.png"
    thumb = workspace.thumbs_dir / f"{image_id}.png"
    grey.save(render)
    small = grey.copy()
    small.thumbnail((256, 256))
    small.save(thumb)
    session.add(Study(id=study_id, dataset=dataset, body_region=body_region, modality="DX", split=split))
    session.flush()  # the tables have no ORM relationships: flush parents before children
    image = Image(id=image_id, study_id=study_id, content_hash=hashlib.sha256(data).hexdigest(), dataset=dataset,
                  external_id=source.stem, source_path=str(source), source_format=source.suffix.lstrip(".").lower(),
                  render_path=workspace.relative(render), thumb_path=workspace.relative(thumb), width=grey.width,
                  height=grey.height, render_width=grey.width, render_height=grey.height, body_region=body_region,
                  modality="DX", meta=meta)
    session.add(image)
    session.flush()
    return image


def _fixture_mentions(report_id: str, text: str) -> list[WeakLabel]:
    """Mentions of a few chest findings with their offsets; negated when the sentence says so."""
    rows = []
    for finding, pattern in FIXTURE_TERMS.items():
        for match in re.finditer(rf"\b{pattern}\b", text, flags=re.IGNORECASE):
            sentence_start = max(text.rfind(".", 0, match.start()) + 1, 0)
            negated = bool(NEGATION.search(text[sentence_start:match.start()]))
            rows.append(WeakLabel(report_id=report_id, finding=finding, status="negative" if negated else "positive",
                                  evidence=match.group(0), start=match.start(), end=match.end(),
                                  section="FINDINGS", rules_version="app-test-fixture"))
    return rows


def _reports(archive: Path, count: int) -> list[tuple[str, dict[str, str], list[str]]]:
    """The first ``count`` reports with FINDINGS text: (id, sections, MeSH major terms)."""
    found = []
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda item: item.name):
            if not member.name.endswith(".xml"):
                continue
            root = ElementTree.fromstring(tar.extractfile(member).read())
            sections = {node.get("Label"): (node.text or "").strip() for node in root.iter("AbstractText")}
            if not sections.get("FINDINGS") or not re.search("|".join(FIXTURE_TERMS.values()), sections["FINDINGS"]):
                continue
            uid = root.find("uId").get("id")
            found.append((uid, {name: text for name, text in sections.items() if text},
                          [node.text for node in root.iter("major") if node.text]))
            if len(found) == count:
                break
    return found


def build_app_workspace(root: Path, data_root: Path, *, fractures: int = 8, reports: int = 6,
                        negatives: int = 0, open_round: bool = True, registry: bool = True,
                        database_url: str | None = None) -> Workspace:
    """Create the test workspace under ``root`` from the real data in ``data_root``.

    Args:
        root: workspace folder to create.
        data_root: the shared real-data folder.
        fractures: images with fracture boxes (spread over body regions).
        reports: Open-i reports (each its own chest study).
        negatives: images whose label file is empty (exhaustively annotated: no fracture).
        open_round: leave round 2 open (state ``selected``) instead of finished.
        registry: add model-registry rows (an encoder and two probes) without artefacts: for the pages that
            only list them; leave them out when real code will load the models.
        database_url: the catalog's URL (default: as the CLI resolves it, from ``RADLOOP_DATABASE_URL`` or the
            workspace's own SQLite file).
    """
    workspace = resolve_workspace(root)
    if database_url:
        workspace = Workspace(root=workspace.root, database_url=database_url)
    workspace.ensure()
    catalog = Catalog.open(workspace)
    fracture_dir = data_root.joinpath(*FRACTURE_DIR)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    image_ids: list[str] = []
    with catalog.session() as session:
        seen: dict[int, int] = {}
        for label_file in sorted((fracture_dir / "labels").glob("*.txt")):
            lines = [line for line in label_file.read_text().splitlines() if line.strip()]
            if not lines:
                continue
            class_id = int(lines[0].split()[0])
            if seen.get(class_id, 0) >= max(1, fractures // 4):  # spread over body regions
                continue
            source = next(fracture_dir.joinpath("images").glob(label_file.stem + ".*"))
            region = CLASS_NAMES[class_id].split()[0]
            split = ("train", "train", "val", "test")[len(image_ids) % 4]
            image = _add_image(session, workspace, source, dataset="bone_fracture", body_region=region, split=split,
                               meta={"box_source": "yolo:train"})
            for line in lines:
                box_class, x, y, w, h = _yolo_box(line, image.width, image.height)
                session.add(Annotation(image_id=image.id, source="yolo:train", kind="box", label="fracture",
                                       source_label=CLASS_NAMES[box_class], x=x, y=y, w=w, h=h))
            image_ids.append(image.id)
            seen[class_id] = seen.get(class_id, 0) + 1
            if len(image_ids) == fractures:
                break
        for label_file in sorted((fracture_dir / "labels").glob("*.txt"))[:: 7]:
            if negatives <= 0:
                break
            if label_file.read_text().strip():
                continue
            source = next(fracture_dir.joinpath("images").glob(label_file.stem + ".*"))
            split = ("train", "test")[negatives % 2]
            image = _add_image(session, workspace, source, dataset="bone_fracture", body_region=None, split=split,
                               meta={"box_source": "yolo:train"})
            negatives -= 1
        chest = _add_image(session, workspace, data_root.joinpath(*CHEST_IMAGE), dataset="iu_xray",
                           body_region="chest", split="test", meta={})
        image_ids.append(chest.id)
        for report_id, sections, codes in _reports(data_root.joinpath(*REPORTS_ARCHIVE), reports):
            study_id = f"S-{_hex(report_id)}"
            session.add(Study(id=study_id, dataset="iu_xray", body_region="chest", modality="CR", split="train"))
            session.flush()
            text = "\n".join(f"{name}: {body}" for name, body in sections.items())
            session.add(Report(id=report_id, study_id=study_id, content_hash=_hex(text), dataset="iu_xray", text=text,
                               sections=sections, expert_codes=codes))
            session.flush()
            session.add_all(_fixture_mentions(report_id, text))

        session.add_all([] if not registry else [
            Model(version="enc-simclr-resnet18-0a1b2c3d", kind="encoder", task="encoder", path="models/enc",
                  config={"timm_name": "resnet18"}, metrics={"knn_accuracy": 0.61}, is_current=True,
                  created_at=now),
            Model(version="findings-probe-r1", kind="probe", task="findings", path="models/probe-r1",
                  parent_version="enc-simclr-resnet18-0a1b2c3d", metrics={"auroc": 0.71, "fracture": {"auroc": 0.70}},
                  annotation_ids=[1, 2, 3, 4], created_at=now + timedelta(hours=1)),
            Model(version="findings-probe-r2", kind="probe", task="findings", path="models/probe-r2",
                  parent_version="enc-simclr-resnet18-0a1b2c3d", metrics={"auroc": 0.78, "fracture": {"auroc": 0.77}},
                  annotation_ids=[1, 2, 3, 4, 5, 6], is_current=True, created_at=now + timedelta(hours=2)),
        ])
        encoder = "enc-simclr-resnet18-0a1b2c3d"
        first = Round(number=1, state="finished", strategy="random", budget=4, task="findings", model_version=encoder,
                      metric_name="auroc", metric_before=0.62, metric_after=0.71, labels_spent=4, created_at=now,
                      finished_at=now + timedelta(minutes=5))
        second = Round(number=2, state="selected" if open_round else "finished", strategy="uncertainty", budget=3,
                       task="findings", model_version=encoder, metric_name="auroc", metric_before=0.71,
                       labels_spent=0, created_at=now + timedelta(hours=3),
                       meta={"notes": ["'margin' needs probabilities: cold start with 'typiclust'"],
                             "tasks_file": "rounds/round-002/label_studio_tasks.json"})
        session.add_all([first, second])
        session.flush()
        for rank, image_id in enumerate(image_ids[:3]):
            session.add(Selection(round_id=second.id, image_id=image_id, rank=rank + 1, score=0.5 - 0.1 * rank,
                                  strategy="uncertainty", reason=f"fracture probability {0.5 + 0.05 * rank:.2f} "
                                                                 "(closest to the decision boundary)"))
    catalog.dispose()
    return workspace


def real_app_workspace(tmp_path_factory, test_catalog_url, name: str, **options) -> Workspace:
    """:func:`build_app_workspace` (with ``options``) in a fresh temporary folder on the test database; skips,
    naming the file, when ``../shared/data`` lacks a set it reads."""
    from conftest import DATA_ROOT, data_path

    data_path(*FRACTURE_DIR)
    data_path(*REPORTS_ARCHIVE)
    data_path(*CHEST_IMAGE)
    root = (tmp_path_factory.mktemp(name) / "ws").resolve()
    return build_app_workspace(root, DATA_ROOT, database_url=test_catalog_url(root), **options)


def point_app_at(monkeypatch, workspace: Workspace) -> None:
    """Point the app at ``workspace`` (its folder and catalog URL), with a Label Studio that is down."""
    monkeypatch.setenv("RADLOOP_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("RADLOOP_DATABASE_URL", workspace.database_url)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # discard port: refused at once
