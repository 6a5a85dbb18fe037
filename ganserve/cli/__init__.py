"""The `ganserve` command line: thin commands over the library.

A user mistake (bad option value, missing file, invalid model, missing package) prints one line,
``error: ...``, on stderr and exits with status 1 (2 for usage errors), without a traceback. Ctrl-C
prints ``interrupted`` (and how to go on, where a command can) and exits with status 130. SIGTERM
(`kill`, a container stopping, a batch scheduler's preemption) is handled the same way, files being
written cleaned up and how to go on said, as ``interrupted by SIGTERM``, with status 143.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from typing import Iterator

import typer
from typer.core import TyperGroup

from .. import __version__


class _Commands(TyperGroup):
    """The command group; it says "interrupted", where typer alone turns Ctrl-C into a silent exit 130.
    (Commands that can say how to go on, generate and train, catch it themselves.)"""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            what, code = stopped_by(e)
            typer.echo(what, err=True)
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=_Commands,
    name="ganserve",
    help="Train, export and serve DCGAN-family image generators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: typer's rich help shows flags as `<bool>` and keeps docstring line breaks
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Errors that come from what the user asked for, not from a bug in ganserve.
# A MemoryError too: asking for more images at once than fit is the user's call to make smaller.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, ImportError, OSError, MemoryError)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ganserve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train, export and serve DCGAN-family image generators."""


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit (for checks done inside commands)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ganserve` console script: runs one command and returns its exit status.

    A command stopped by SIGTERM raises SystemExit(143) instead of returning, when SIGTERM was at its
    default on entry: a program calling main() then stops too, as the signal would have stopped it.
    """
    from . import commands  # noqa: F401  (registers the commands on `app`)

    sigterm_default = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    code = _run(argv)
    if code == 128 + signal.SIGTERM and sigterm_default:
        raise SystemExit(code)
    return code


def _run(argv: list[str] | None) -> int:
    try:
        with _exit_on_sigterm():
            result = app(args=argv, prog_name="ganserve", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt) as e:
        what, code = stopped_by(e if isinstance(e, KeyboardInterrupt) else e.__cause__)
        typer.echo(what, err=True)
        return code
    except USER_ERRORS as e:
        typer.echo(f"error: {_one_line(e)}", err=True)
        return 1
    except Exception as e:
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # click's usage errors (typer may vendor click)
            e.show()
            return e.exit_code
        raise
    return result if isinstance(result, int) else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a command ran: it stops the command as Ctrl-C does."""


def stopped_by(error: BaseException | None) -> tuple[str, int]:
    """What a command stopped by a signal says, and its exit status."""
    if isinstance(error, Terminated):
        return "interrupted by SIGTERM", 128 + signal.SIGTERM
    return "interrupted", 130


def _terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """Raise `Terminated` on SIGTERM while a command runs, so that its `finally` blocks remove the
    temporary files it was writing (Python's default for SIGTERM is to die on the spot; and the
    kernel ignores it in a container's PID 1). Left alone where SIGTERM is not at its default
    (ignored by a parent, or handled by the program calling main)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _os_error_line(error: OSError) -> str:
    """An OSError from a system call (ganserve's writers report the paths the user gave, never their
    temporary names); an --out that is a file where a folder was to be made, said so."""
    if error.errno == errno.EEXIST and error.filename2 is None and os.path.isfile(error.filename):
        return f"{error.filename} is a file, not a folder"
    return str(error)


def _one_line(error: BaseException) -> str:
    if isinstance(error, MemoryError):  # numpy's says what it failed to allocate; Python's says nothing
        return " ".join(f"not enough memory for this request: {str(error) or 'out of memory'}".split())
    if isinstance(error, OSError) and error.strerror and isinstance(error.filename, (str, os.PathLike)):
        text = _os_error_line(error)
    else:
        text = str(error) or type(error).__name__
        if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
            text = f"{text}: {error.filename}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
