"""Small synthetic DICOM data sets for the DICOM tests, written by pydicom at test time (no real files)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid


def synthetic_dataset(words: np.ndarray, bits: int = 12, allocated: int = 16, high_bit: int | None = None,
                      signed: bool = False, syntax=ExplicitVRLittleEndian, pixel_order: str | None = None,
                      **attributes) -> Dataset:
    """A small MONOCHROME2 DX data set around ``words`` (H, W), in ``syntax``'s byte order unless
    ``pixel_order`` ("<" or ">") says otherwise for the pixel words; ``attributes`` are set last."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
    dataset.Modality, dataset.Rows, dataset.Columns = "DX", *words.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.PixelRepresentation, dataset.BitsAllocated, dataset.BitsStored = int(signed), allocated, bits
    dataset.HighBit = bits - 1 if high_bit is None else high_bit
    order = pixel_order or (">" if syntax == ExplicitVRBigEndian else "<")
    dataset.PixelData = words.astype(f"{order}{'i' if signed else 'u'}{allocated // 8}").tobytes()
    for key, value in attributes.items():
        setattr(dataset, key, value)
    return dataset


def dx_part10_file(path, shape: tuple[int, int] = (48, 64), seed: int = 7):
    """Write a 12-bit DX (HAND) Part 10 file, explicit VR little endian, seeded pixels of ``shape``; returns
    ``path``."""
    import pydicom

    pixels = np.random.default_rng(seed).integers(0, 4096, size=shape, dtype=np.uint16)
    dataset = synthetic_dataset(pixels, StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
                                BodyPartExamined="HAND")
    dataset.preamble = b"\0" * 128
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)
    return path
