"""The shared parts of the `fieldsync` command line: the group, options, the session.

A session unlocks the profile (and holds its lock) for one command; keyholders get
their replica from it. Commands live in `device.py` (enrollment, captures,
sync, status), `read.py` (the coordinator's view) and `roster.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import EXIT_CODES, NotAllowed, UsageError

if TYPE_CHECKING:
    from ..profile import Profile
    from ..replica import Replica

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


class Session:
    """An unlocked profile for one command, with its replica for keyholders."""

    def __init__(self, prof: Profile) -> None:
        self.prof = prof
        self.replica: Replica | None = None

    def client(self) -> Any:
        from .. import keyring

        return keyring.client_for(self.prof)

    def writable_replica(self) -> Replica | None:
        """The replica a coordinator's own captures are folded into at once."""
        from ..replica import open_replica

        self.replica = open_replica(self.prof)
        return self.replica

    def reading_replica(self, action: str) -> Replica:
        from ..replica import open_replica

        self.prof.require_keyholder(action)
        self.prof.require_active()
        replica = open_replica(self.prof)
        if replica is None:
            raise NotAllowed(
                "this coordinator is not approved yet: ask an admin to run"
                f" `fieldsync approve {self.prof.device_id}`, then `fieldsync sync`"
            )
        self.replica = replica
        return replica

    def save(self) -> None:
        # The vault first: a crash between the two leaves a capture in the outbox that
        # the replica has not folded in (it comes back with the next pull), never one
        # the replica holds and the device's chain has forgotten.
        self.prof.save()
        if self.replica is not None:
            self.replica.save()

    def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
            self.replica = None


def session(f: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command with the profile unlocked and locked against other commands."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..profile import open_profile

        with open_profile() as prof:
            s = Session(prof)
            try:
                return f(s, *args, **kwargs)
            finally:
                s.close()

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    return wrapper


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """fieldsync: end-to-end encrypted, offline-first capture and sync.

    The profile lives in $FIELDSYNC_HOME (default ~/.fieldsync), sealed under a
    passphrase ($FIELDSYNC_PASSPHRASE, or asked for).
    """
