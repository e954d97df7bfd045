"""`fieldsync`: the command line of a device. Thin: each command unlocks the profile,
calls one module, prints. Every expected failure is one `error:` line on stderr and
an exit code from `errors.py`; each command's help carries an example that runs.

Environment: FIELDSYNC_HOME (profile directory, default ~/.fieldsync),
FIELDSYNC_PASSPHRASE (otherwise asked for), FIELDSYNC_RETRIES (network attempts,
default 4), FIELDSYNC_KDF_FAST=1 (test suite only).
"""

from __future__ import annotations

import sys

import click

from ..errors import CliError
from . import attach, capture, device, enrol, read, roster, ui  # noqa: F401 -- they register commands
from .kit import cli

COMMANDS = sorted(cli.commands)
__all__ = ["COMMANDS", "cli", "main"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        # No command: the help, as help (a person typing `fieldsync` to find out what it does).
        click.echo(cli.get_help(click.Context(cli, info_name="fieldsync")))
        sys.exit(0)
    try:
        cli.main(args=argv, prog_name="fieldsync", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "fieldsync"
        _fail(f"{exc.format_message()} (see `{where} --help`)", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code or 1)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted; a rerun resumes where this stopped", 130)
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)
    sys.exit(0)


def _fail(message: str, code: int) -> None:
    click.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(code)
