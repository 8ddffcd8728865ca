"""The edgebert exception tree.

Every error that edgebert raises on purpose is an :class:`EdgebertError`; its message names the
problem and the fix. Catch ``EdgebertError`` to handle all of them::

    EdgebertError
    ├── ModelSourceError        the Hugging Face model folder is missing, incomplete or corrupt
    ├── UnsupportedModelError   architecture or task that edgebert cannot export
    ├── ExportError             torch -> ONNX conversion or graph optimization failed
    ├── ParityError             the ONNX graph does not match PyTorch within tolerance
    ├── BundleError             a bundle on disk is missing, unreadable, tampered or unsafe
    │   ├── BundleVersionError  the bundle was written by a newer edgebert format
    │   └── ChecksumError       a file's sha256 differs from the manifest
    ├── OutputExistsError       the output path exists and ``force`` was not given
    ├── StorageError            writing to disk failed (disk full, permissions)
    ├── InputError              bad input to a pipeline (type, pair to a single-text model, ...)
    │   └── LimitError          a per-call resource limit was hit (tokens, batch size, text length)
    ├── LongTextError           a text is longer than the model's maximum and ``long_text="error"``
    ├── QuantizationError       quantization failed or no variant met the accuracy budget
    ├── DataError               a calibration or evaluation file is empty, malformed or unusable
    └── BenchmarkError          a benchmark could not be set up (unknown variant, missing model)
"""

from __future__ import annotations

__all__ = [
    "BenchmarkError",
    "BundleError",
    "BundleVersionError",
    "ChecksumError",
    "DataError",
    "EdgebertError",
    "ExportError",
    "InputError",
    "LimitError",
    "LongTextError",
    "ModelSourceError",
    "OutputExistsError",
    "ParityError",
    "QuantizationError",
    "StorageError",
    "UnsupportedModelError",
]


class EdgebertError(Exception):
    """Base class of every error edgebert raises on purpose."""


class ModelSourceError(EdgebertError):
    """The source model folder is missing, incomplete or corrupt."""


class UnsupportedModelError(EdgebertError):
    """The architecture or the task is not supported for this model."""


class ExportError(EdgebertError):
    """Conversion to ONNX or graph optimization failed."""


class ParityError(EdgebertError):
    """ONNX Runtime outputs differ from PyTorch beyond the tolerance."""

    def __init__(self, message: str, report: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.report = dict(report or {})


class BundleError(EdgebertError):
    """A bundle directory is missing, unreadable, tampered with or unsafe."""


class BundleVersionError(BundleError):
    """The bundle's format version is newer than this edgebert understands."""


class ChecksumError(BundleError):
    """A bundle file does not match the sha256 recorded in its manifest."""


class OutputExistsError(EdgebertError):
    """The output path exists and overwriting was not allowed."""


class StorageError(EdgebertError):
    """Writing to disk failed."""


class InputError(EdgebertError):
    """Bad input passed to a pipeline or API function."""


class LimitError(InputError):
    """A per-call resource limit was exceeded."""


class LongTextError(EdgebertError):
    """A text exceeds the model's maximum length under ``long_text="error"``."""


class QuantizationError(EdgebertError):
    """Quantization failed, or no variant met the accuracy budget."""


class DataError(EdgebertError):
    """A data file (calibration, evaluation) is empty, malformed or unusable."""


class BenchmarkError(EdgebertError):
    """A benchmark could not be set up."""
