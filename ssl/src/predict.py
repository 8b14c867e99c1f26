"""Predictors: the current registered model of a task, loaded once, applied to images.

``load_predictor(catalog, task)`` reads the registry's current model for ``task`` and returns a
:class:`Predictor` (``None`` when the task has no current model).  The default ``findings`` model is a probe
on encoder embeddings (fast on CPU: one encoder forward pass + a matrix product); fine-tuned classifiers and
detectors are loaded the same way.  A predictor holds no per-request state and can be shared by a server's
requests; training never happens here.

Box units: models see the render (long side at most ``MAX_RENDER_SIDE``), but boxes always come back in
*original*-image pixels, the unit of catalog boxes and of the Label Studio adapter.  The caller says each
image's original size (``Image.width, Image.height``; an image that is its own original gives its own size)
in ``original_sizes``; a predictor that returns boxes refuses to guess it.

Usage::

    predictor = load_predictor(catalog, "findings", with_detector=True)
    [prediction] = predictor.predict(["renders/I-0123.png"], original_sizes=[(image.width, image.height)])
    prediction.choices["fracture"], prediction.boxes

New files (not in the catalog; ``radloop predict``): :func:`predict_files` reads each PNG/JPEG/DICOM file as
ingest renders it (:func:`read_rendered`), so a model sees the pixels it would see on the catalog render::

    for result in predict_files(predictor_for_version(catalog, "probe-..."), ["new/wrist.dcm"]):
        result.error or result.prediction.choices
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from radloop.core.catalog import Catalog
from radloop.core.records import Box
from radloop.core.registry import TASK_DETECTION, ModelRecord, current_model, get_model

ImageInput = str | Path | np.ndarray
#: (width, height) of an image's original, in pixels.
ImageSize = tuple[int, int]

__all__ = ["CombinedPredictor", "FilePrediction", "ImagePrediction", "ImageSize", "Predictor", "ProbePredictor",
           "load_predictor", "predict_files", "predictor_for_version", "read_rendered"]


@dataclass(frozen=True)
class ImagePrediction:
    """Prediction for one image.

    Attributes:
        choices: finding -> probability of being present.
        boxes: boxes in original-image pixels, with ``score``.
        model_version: the registry version that produced it.
        regions: body region -> probability (empty when the model has no region head).
    """

    choices: dict[str, float]
    boxes: list[Box] = field(default_factory=list)
    model_version: str = ""
    regions: dict[str, float] = field(default_factory=dict)

    @property
    def body_region(self) -> str | None:
        """The most probable body region, or None."""
        return max(self.regions, key=self.regions.get) if self.regions else None


class Predictor:
    """Base class: ``model_version``, ``findings`` and ``predict(images, original_sizes=...)``."""

    model_version: str
    findings: list[str]
    regions: list[str]

    def predict(self, images: Sequence[ImageInput], *,
                original_sizes: Sequence[ImageSize] | None = None) -> list[ImagePrediction]:
        """Predictions for images given as render paths or 2-D arrays (in input order).

        Args:
            images: render paths or 2-D arrays.
            original_sizes: (width, height) of each image's original; boxes come back in those pixels.  Image-level
                heads ignore it; predictors that return boxes require it.
        """
        raise NotImplementedError

    def predict_proba_embeddings(self, vectors: np.ndarray) -> np.ndarray:
        """Finding probabilities (N, n_findings) from encoder embeddings; only probe heads can do this.

        Raises:
            TypeError: the head needs images (fine-tuned classifier, detector).
        """
        raise TypeError(f"{type(self).__name__} ({self.model_version}) needs images, not embeddings; "
                        "only probe models predict from stored embeddings")

    @property
    def encoder_version(self) -> str | None:
        """The encoder whose embeddings :meth:`predict_proba_embeddings` expects (None if not a probe)."""
        return None


class ProbePredictor(Predictor):
    """Encoder embedding + calibrated linear probe (the default ``findings`` model)."""

    def __init__(self, encoder: Any, probe: Any, model_version: str, *, normalize: bool = True,
                 encoder_version: str | None = None) -> None:
        self.encoder = encoder
        self.probe = probe
        self.model_version = model_version
        self.normalize = normalize
        self.findings = list(probe.findings_)
        self.regions = list(probe.regions_)
        self._encoder_version = encoder_version

    @property
    def encoder_version(self) -> str | None:
        return self._encoder_version

    def predict_proba_embeddings(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.probe.coef_.shape[1]:
            raise ValueError(f"embeddings of shape {vectors.shape} do not match the probe's dimension "
                             f"{self.probe.coef_.shape[1]} (encoder {self._encoder_version})")
        if self.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return self.probe.predict_proba(vectors)

    def predict(self, images: Sequence[ImageInput], *,
                original_sizes: Sequence[ImageSize] | None = None) -> list[ImagePrediction]:
        import torch

        from radloop.ssl.encoder_adapter import embed_images

        if len(images) == 0:
            return []
        with torch.inference_mode():
            vectors = embed_images(self.encoder, list(images), batch_size=32, normalize=self.normalize)
        probabilities = self.probe.predict_proba(vectors)
        regions = self.probe.predict_region_proba(vectors)
        return [ImagePrediction(choices={name: float(p) for name, p in zip(self.findings, row)},
                                model_version=self.model_version,
                                regions={name: float(p) for name, p in zip(self.regions, region_row)})
                for row, region_row in zip(probabilities, regions)]


class CombinedPredictor(Predictor):
    """A findings predictor plus a detector's boxes (for pre-annotations with both).

    Without a findings predictor (a workspace whose only model is a detector) the choices are the detector's
    own (each label's best box score) and there are no body regions.
    """

    def __init__(self, findings: Predictor | None, detector: Predictor) -> None:
        self.findings_predictor = findings
        self.detector = detector
        self.model_version = (detector.model_version if findings is None
                              else f"{findings.model_version}+{detector.model_version}")
        self.findings = list((findings or detector).findings)
        self.regions = list(getattr(findings, "regions", []))

    @property
    def encoder_version(self) -> str | None:
        return None if self.findings_predictor is None else self.findings_predictor.encoder_version

    def predict_proba_embeddings(self, vectors: np.ndarray) -> np.ndarray:
        if self.findings_predictor is None:
            return super().predict_proba_embeddings(vectors)
        return self.findings_predictor.predict_proba_embeddings(vectors)

    def predict(self, images: Sequence[ImageInput], *,
                original_sizes: Sequence[ImageSize] | None = None) -> list[ImagePrediction]:
        boxed = self.detector.predict(images, original_sizes=original_sizes)
        if self.findings_predictor is None:
            return [ImagePrediction(choices=b.choices, boxes=b.boxes, model_version=self.model_version)
                    for b in boxed]
        first = self.findings_predictor.predict(images, original_sizes=original_sizes)
        return [ImagePrediction(choices=a.choices, boxes=b.boxes, model_version=self.model_version,
                                regions=a.regions) for a, b in zip(first, boxed)]


def _load_probe_predictor(catalog: Catalog, record: ModelRecord) -> Predictor:
    from radloop.ssl.encoder_adapter import encoder_from_registry
    from radloop.ssl.probe import LinearProbe

    if not record.parent_version:
        raise ValueError(f"probe {record.version!r} has no parent encoder version in the registry")
    encoder = encoder_from_registry(catalog, record.parent_version)
    probe = LinearProbe.load(record.folder(catalog))
    return ProbePredictor(encoder, probe, record.version,
                          normalize=bool(record.config.get("embeddings", {}).get("normalize", True)),
                          encoder_version=record.parent_version)


def _load_classifier_predictor(catalog: Catalog, record: ModelRecord) -> Predictor:
    from radloop.ssl.finetune import ClassifierPredictor

    return ClassifierPredictor.load(record.folder(catalog), model_version=record.version)


def _load_detector_predictor(catalog: Catalog, record: ModelRecord) -> Predictor:
    from radloop.ssl.detection import DetectorPredictor

    return DetectorPredictor.load(record.folder(catalog), model_version=record.version)


#: Registry kind -> loader.
LOADERS = {"probe": _load_probe_predictor, "classifier": _load_classifier_predictor,
           "detector": _load_detector_predictor}


def predictor_for_version(catalog: Catalog, version: str) -> Predictor:
    """Load the registered model ``version`` as a predictor.

    Raises:
        RegistryError: unknown version.
        ValueError: the version is an encoder (no head to predict with).
    """
    record = get_model(catalog, version)
    if record.kind not in LOADERS:
        article = "an" if record.kind[:1] in "aeiou" else "a"
        raise ValueError(f"model {version!r} is {article} {record.kind}; predictors exist for "
                         f"{', '.join(LOADERS)}")
    return LOADERS[record.kind](catalog, record)


def load_predictor(catalog: Catalog, task: str = "findings", *, with_detector: bool = False) -> Predictor | None:
    """The current model of ``task`` as a predictor, or None when there is no model to predict with.

    Args:
        catalog: the workspace catalog.
        task: registry task (``findings`` for image-level choices, ``detection`` for boxes).
        with_detector: also attach the current ``detection`` model's boxes (when there is one); with no current
            ``task`` model, the detector alone (a :class:`CombinedPredictor` without findings head).
    """
    record = current_model(catalog, task)
    predictor = None
    if record is not None:
        predictor = LOADERS[record.kind](catalog, record) if record.kind in LOADERS else None
        if predictor is None:
            raise ValueError(f"current model {record.version!r} of task {task!r} is a {record.kind}, not a head")
    if with_detector and task != TASK_DETECTION:
        detector_record = current_model(catalog, TASK_DETECTION)
        if detector_record is not None:
            predictor = CombinedPredictor(predictor, LOADERS[detector_record.kind](catalog, detector_record))
    return predictor


@dataclass(frozen=True)
class FilePrediction:
    """The prediction for one file of :func:`predict_files`, or why the file could not be read.

    Attributes:
        path: the file as given.
        prediction: the model's output (None when ``error``); boxes in the original's pixels.
        original_size: (width, height) of the file's image (None when ``error``).
        error: one line saying why the file was not predicted (None when it was).
    """

    path: str
    prediction: ImagePrediction | None = None
    original_size: ImageSize | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """One JSON object: ``file`` and ``error``, or the size, ``findings``, ``regions`` and ``boxes``."""
        if self.prediction is None:
            return {"file": self.path, "error": self.error}
        prediction = self.prediction
        width, height = self.original_size or (None, None)
        return {"file": self.path, "model_version": prediction.model_version, "width": width, "height": height,
                "findings": dict(prediction.choices), "body_region": prediction.body_region,
                "regions": dict(prediction.regions),
                "boxes": [{"label": b.label, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score}
                          for b in prediction.boxes]}


def read_rendered(path: str | Path) -> tuple[np.ndarray, ImageSize]:
    """A PNG/JPEG or DICOM file (recognised by content, whatever its name) as the render ingest writes for it.

    Decoded as ingest decodes it (:func:`radloop.core.render.read_raster`; DICOM windowed to 8 bits by
    :func:`radloop.core.dicom_io.read_dicom`) and scaled down as :func:`radloop.core.render.render_files`
    scales it (long side at most ``MAX_RENDER_SIDE``, bilinear): the pixels training and the ML backend read
    from the catalog render of the same file.

    Returns:
        (pixels, (width, height)): the render (H, W) uint8 and the size of the original (boxes are in its pixels).

    Raises:
        radloop.core.input_errors.InputError: empty, truncated, undecodable, or not a PNG, JPEG or DICOM file.
        OSError: the file cannot be read.
    """
    from radloop.core.dicom_io import is_dicom_bytes, read_dicom
    from radloop.core.ingest_worker import JPEG_MAGIC, PNG_MAGIC
    from radloop.core.input_errors import EmptyFileError, NotDicomError, UnsupportedFileError
    from radloop.core.render import read_raster, render_pixels

    data = Path(path).read_bytes()
    if not data:
        raise EmptyFileError("file is empty (0 bytes)")
    if data.startswith((PNG_MAGIC, JPEG_MAGIC)):
        pixels = read_raster(data).pixels
    else:
        try:
            pixels = read_dicom(data, as_uint8=True).pixels
        except NotDicomError as error:
            if not is_dicom_bytes(data):
                raise UnsupportedFileError("not a DICOM, PNG or JPEG file") from error
            raise
    height, width = pixels.shape
    return render_pixels(pixels), (width, height)  # as render_files: the model never saw more than the render


def predict_files(predictor: Predictor, paths: Sequence[str | Path], *, batch_size: int = 16,
                  on_result: Callable[[FilePrediction], None] | None = None) -> list[FilePrediction]:
    """Predict image files, each read by :func:`read_rendered`; a file that cannot be read is reported, not fatal.

    Args:
        predictor: any :class:`Predictor` (boxes come back in each file's original pixels).
        paths: PNG, JPEG or DICOM files.
        batch_size: files decoded and predicted together (renders of up to 2048 x 2048 bytes each).
        on_result: called with each result as it is known (progress bars, per-file error lines).

    Returns:
        One :class:`FilePrediction` per path, in input order.
    """
    from radloop.core.input_errors import InputError

    results: list[FilePrediction] = []
    for start in range(0, len(paths), batch_size):
        batch: list[FilePrediction | None] = []
        pixels, sizes = [], []
        for path in paths[start:start + batch_size]:
            try:
                image, size = read_rendered(path)
            except (InputError, OSError) as error:
                reason = (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
                batch.append(FilePrediction(str(path), error=reason))
            except Exception as error:  # noqa: BLE001 - any decoder failure means this file only, as in ingest
                batch.append(FilePrediction(str(path), error=f"cannot decode: {type(error).__name__}: {error}"))
            else:
                batch.append(None)
                pixels.append(image)
                sizes.append(size)
        predictions = iter(predictor.predict(pixels, original_sizes=sizes) if pixels else [])
        sizes_left = iter(sizes)
        for path, done in zip(paths[start:start + batch_size], batch):
            result = done or FilePrediction(str(path), prediction=next(predictions), original_size=next(sizes_left))
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
