"""Exceptions raised for problems a user can cause and fix.

Every message names the offending file, branch, key or value and says what to
do about it. All exceptions derive from :class:`ParatagError`, so an analysis
can catch everything paratag raises on bad input with one ``except`` clause.
"""

from __future__ import annotations


class ParatagError(Exception):
    """Base class of every error paratag raises on bad user input."""


class ConfigError(ParatagError, ValueError):
    """A configuration file or dataclass field is missing, unknown or invalid."""


class InputFileError(ParatagError, OSError):
    """An input file is missing, truncated, unreadable or not NanoAOD."""

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        msg = f"{self.path}: {problem}"
        if hint:
            msg += f" -- {hint}"
        super().__init__(msg)

    def __reduce__(self):  # keep picklable across Dask/futures workers
        return (type(self), (self.path, self.problem, self.hint))


class SchemaError(ParatagError, KeyError):
    """The events lack a collection or branch the preset needs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message

    def __reduce__(self):
        return (type(self), (self.message,))


class MissingBranchError(SchemaError):
    """A specific branch is missing from a file."""

    def __init__(self, branch: str, path: str = "<events>", hint: str = "") -> None:
        self.branch = branch
        self.path = path
        self.hint = hint
        msg = f"{path}: branch {branch!r} is missing"
        if hint:
            msg += f" -- {hint}"
        super().__init__(msg)

    def __reduce__(self):
        return (type(self), (self.branch, self.path, self.hint))


class InvalidValueError(ParatagError, ValueError):
    """Input values are NaN/inf or out of their allowed range."""


class UnknownMassPointError(ParatagError, KeyError):
    """A mass hypothesis or grid point is not known to the model or grid."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelMismatchError(ParatagError, ValueError):
    """A model file and its preprocess.json (or config) disagree."""


class DependencyError(ParatagError, ImportError):
    """An optional dependency is not installed; the message gives the extra."""


def require(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`DependencyError` with the pip hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"{module!r} is not installed; install it with: pip install 'paratag[{extra}]'"
        ) from exc
