"""The shared parts of the `fieldsync` command line: the group, options, the session.

The command line is one face of the device core: each command checks its
arguments, unlocks the profile for one session (`device.unlocked`), calls one
operation (`operations.py`) and prints. Commands live in `device.py` (enrollment,
captures, sync, status), `read.py` (the coordinator's view) and `roster.py`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import EXIT_CODES, UsageError
from .ids import IdCommand

if TYPE_CHECKING:
    from ..device import Session

__all__ = ["Session", "unlocked"]

# The record types of schemas/records.py, named here so that the command line starts
# without loading the schemas (a test keeps the two the same).
RECORD_TYPE_NAMES = ["picket", "detention", "relative"]

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def type_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--type", "record_type", type=click.Choice(RECORD_TYPE_NAMES), help=help_text
    )


def set_option(f: F) -> F:
    return click.option(
        "--set",
        "pairs",
        multiple=True,
        metavar="FIELD=VALUE",
        help="A field value; repeat for more fields.",
    )(f)


def values_of(pairs: tuple[str, ...], json_file: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if json_file:
        try:
            with open(json_file, encoding="utf-8") as fh:
                loaded = json.load(fh)
        except OSError as exc:
            raise UsageError(f"cannot read {json_file}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"{json_file} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{json_file} must hold one JSON object of field values")
        values.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set takes FIELD=VALUE, got {pair!r}")
        values[name.strip()] = value
    return values


def emit(text: str) -> None:
    click.echo(text)


def warn(text: str) -> None:
    click.echo(f"warning: {text}", err=True)


@contextlib.contextmanager
def unlocked(home: Path | None = None) -> Iterator[Session]:
    """The device core's `unlocked`, imported when a command runs (not at `--help`)."""
    from ..device import unlocked as core_unlocked

    with core_unlocked(home) as s:
        yield s


def session(f: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command in one session of the profile, unlocked for it (a command whose
    arguments need checking first opens `unlocked()` itself, after checking them)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with unlocked() as s:
            return f(s, *args, **kwargs)

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    return wrapper


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """fieldsync: end-to-end encrypted, offline-first capture and sync.

    The profile lives in $FIELDSYNC_HOME (default ~/.fieldsync), sealed under a
    passphrase ($FIELDSYNC_PASSPHRASE, or asked for).
    """


# Every command accepts ids that start with "-" (client_sync/cli/ids.py).
cli.command_class = IdCommand
