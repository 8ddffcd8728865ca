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
    ├── EngineError             the inference engine could not load or run a graph
    ├── DependencyError         an optional package a feature needs is not installed (names the extra)
    ├── OutputExistsError       the output path exists and ``force`` was not given
    ├── StorageError            writing to disk failed (disk full, permissions)
    ├── InputError              bad input to a pipeline (type, pair to a single-text model, ...)
    │   ├── LimitError          a per-call resource limit was hit (tokens, batch size, text length)
    │   └── ConfigError         an option or argument has an unknown name or an invalid value
    ├── LongTextError           a text is longer than the model's maximum and ``long_text="error"``
    ├── QuantizationError       quantization failed or no variant met the accuracy budget
    ├── DataError               a calibration or evaluation file is empty, malformed or unusable
    ├── BenchmarkError          a benchmark could not be set up (unknown variant, missing model)
    └── InternalError           an internal invariant failed: a bug in edgebert, please report it

Warnings are :class:`EdgebertWarning` (a ``UserWarning``)::

    EdgebertWarning
    ├── TruncationWarning       texts longer than the model's maximum were cut (``long_text="truncate"``)
    └── IsaMismatchWarning      an int8 bundle was tuned for another CPU instruction set
"""

from __future__ import annotations

__all__ = [
    "BenchmarkError",
    "BundleError",
    "BundleVersionError",
    "ChecksumError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "EdgebertError",
    "EdgebertWarning",
    "EngineError",
    "ExportError",
    "InputError",
    "InternalError",
    "IsaMismatchWarning",
    "LimitError",
    "LongTextError",
    "ModelSourceError",
    "OutputExistsError",
    "ParityError",
    "QuantizationError",
    "StorageError",
    "TruncationWarning",
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


class EngineError(EdgebertError):
    """The inference engine (ONNX Runtime, ...) could not load or run a graph."""


class DependencyError(EdgebertError):
    """An optional package that a feature needs is not installed; the message names the extra to install."""


class OutputExistsError(EdgebertError):
    """The output path exists and overwriting was not allowed."""


class StorageError(EdgebertError):
    """Writing to disk failed."""


class InputError(EdgebertError):
    """Bad input passed to a pipeline or API function."""


class LimitError(InputError):
    """A per-call resource limit was exceeded."""


class ConfigError(InputError):
    """An option or argument has an unknown name or an invalid value; the message lists the valid ones."""


class LongTextError(EdgebertError):
    """A text exceeds the model's maximum length under ``long_text="error"``."""


class QuantizationError(EdgebertError):
    """Quantization failed, or no variant met the accuracy budget."""


class DataError(EdgebertError):
    """A data file (calibration, evaluation) is empty, malformed or unusable."""


class BenchmarkError(EdgebertError):
    """A benchmark could not be set up."""


class InternalError(EdgebertError):
    """An internal invariant failed (a bug in edgebert); the message says what to report and a workaround."""


class EdgebertWarning(UserWarning):
    """Base class of every warning edgebert emits."""


class TruncationWarning(EdgebertWarning):
    """Texts longer than the model's maximum were truncated (``long_text="truncate"``)."""


class IsaMismatchWarning(EdgebertWarning):
    """An int8 bundle was tuned for another CPU instruction set than the one it runs on."""
