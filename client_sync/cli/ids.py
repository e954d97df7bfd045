"""Ids that start with "-" on the command line.

A record or device id is 22 characters of base64url, so one in 64 starts with "-"
(`-bDy…`), and another client may mint such ids though ours never do. Click would
read `fieldsync revoke -bDy…` as a cluster of short options (`-b`, `-D`, and `-h`
would even print the help), and after `--` it takes everything as arguments, so
`fieldsync edit -- ID --type picket` would lose its options. `IdCommand` reorders
the arguments before click parses them: the command's own options (with their
values) first, then `--`, then the positional arguments in their order. A token
counts as positional when it is not one of the command's options and either is
shaped like an id, does not start with "-", or follows a `--`.
"""

from __future__ import annotations

import re

import click

ID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{22}\Z")


def check_device_id(text: str) -> str:
    """A device id's shape, checked before the passphrase is asked for."""
    from ..outbox import check_id

    return check_id(text, "device id", "`fieldsync devices` prints them")


def _option_arity(command: click.Command, ctx: click.Context) -> dict[str, bool]:
    """Every option name of `command` -> whether it takes a value."""
    names: dict[str, bool] = {}
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            takes_value = not param.is_flag and not param.count
            for name in (*param.opts, *param.secondary_opts):
                names[name] = takes_value
    return names


def reorder(args: list[str], arity: dict[str, bool]) -> list[str]:
    """Options (with their values) first, then `--`, then the positional arguments."""
    options: list[str] = []
    positional: list[str] = []
    after_separator = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            after_separator = True
            continue
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in arity:
            options.append(arg)
            if arity[name] and "=" not in arg and i < len(args):
                options.append(args[i])  # the option's value, whatever it looks like
                i += 1
        elif after_separator or not arg.startswith("-") or ID_SHAPE.match(arg):
            positional.append(arg)
        else:
            options.append(arg)  # an unknown option: click names it in its error
    return [*options, "--", *positional] if positional else options


class IdCommand(click.Command):
    """A click command whose positional arguments may start with "-" (see the module)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, reorder(list(args), _option_arity(self, ctx)))
