"""One error family, each message a single line that says what was found and what to do.

The CLI maps these to exit codes and prints `error: <message>` without a traceback
(unless `--debug`). This module imports nothing heavy so the device runtime can use it.
"""


class EdgetlError(Exception):
    """Base class: a problem the user can fix. Exit code 2 unless a subclass says otherwise."""

    exit_code = 2


class ConfigError(EdgetlError):
    """A configuration file or flag is wrong (unknown key, wrong type, out of range)."""


class DataError(EdgetlError):
    """The dataset is unusable: missing path, empty class, a single class, ..."""


class ImageError(EdgetlError):
    """One image cannot be decoded. Callers skip and report it; it never ends a run on its own."""


class ModelError(EdgetlError):
    """A base, cut layer, weights file or saved model is missing or does not fit."""


class RunFolderError(EdgetlError):
    """A run folder is missing, incomplete or was written by an incompatible edgetl."""


class BundleError(EdgetlError):
    """A bundle is missing a file, a hash does not match, or a path points outside it."""


class ExportError(EdgetlError):
    """A conversion failed or an argument to export is wrong."""


class GateError(EdgetlError):
    """The accuracy drop of a gated format exceeds --max-drop. Exit code 3.

    Raised by export after the bundle is complete: `result` then holds what export_run would
    have returned, so the caller can still report on, archive and print the bundle.
    """

    exit_code = 3
    result: dict | None = None
