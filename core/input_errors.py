"""Why an input file could not be ingested: one exception family, each with the pipeline stage it failed at.

Ingest turns these into ``IngestError`` rows (``stage`` + ``str(error)``) and carries on with the batch.
"""

from __future__ import annotations


class InputError(ValueError):
    """An input file that cannot be ingested.  ``stage`` is read | decode | render | parse, or skip (no image:
    a warning, :class:`NotAnImageObjectError`)."""

    stage = "read"


class EmptyFileError(InputError):
    """The file has zero bytes."""


class NotDicomError(InputError):
    """The file is not DICOM (and not a supported raster image either)."""


class UnsupportedFileError(InputError):
    """The file is of a kind ingest does not handle (not DICOM, PNG or JPEG)."""


class TruncatedFileError(InputError):
    """The file ends before its declared content (interrupted copy, partial download)."""

    stage = "decode"


class NoPixelDataError(InputError):
    """A DICOM object without an image (structured report, presentation state, stripped pixels)."""

    stage = "decode"


class NotAnImageObjectError(NoPixelDataError):
    """A DICOM object of a class that holds no image (structured report, presentation state, encapsulated PDF, key
    object selection): normal in an archive folder beside the images, so ingest skips it with a warning."""

    stage = "skip"


class UnsupportedTransferSyntaxError(InputError):
    """The pixel data is compressed with a transfer syntax for which no decoder is installed."""

    stage = "decode"


class CorruptImageError(InputError):
    """The pixel data (DICOM, PNG or JPEG) cannot be decoded."""

    stage = "decode"


class ReportParseError(InputError):
    """A report file that cannot be parsed or holds no text."""

    stage = "parse"
