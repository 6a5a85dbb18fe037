"""Errors raised by ganserve."""


class ModelFormatError(ValueError):
    """A model directory or file is not a valid ganserve model.

    The message names the file and what is wrong with it.
    """


class BackendUnavailableError(ImportError):
    """A backend cannot run here: its package is missing, or it needs something this machine lacks.

    The message says what is missing and how to install it.
    """


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message (its type's name if it has none), for one-line reports."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def plural(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless `count` is 1: "1 image", "2 images"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def missing_package(package: str, extra: str, what: str) -> BackendUnavailableError:
    """The error for an optional package that is not installed, with the install hint."""
    return BackendUnavailableError(
        f"{what} needs the '{package}' package, which is not installed; "
        f"install it with: pip install 'ganserve[{extra}]'"
    )
