"""Ids that start with "-" on the command line (client_sync/cli/ids.py).

Our devices never mint such ids, another client may (one id in 64): every command
that takes one must read it as the id, with its options before or after it, and
`--` before the id must not swallow the options that follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import click.testing
import pytest
from clientkit import as_json, new_team, server, sets  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st

from client_sync.cli import cli
from client_sync.cli.ids import reorder
from client_sync.demo import ServerProcess

DASH = "-bDy4AbCdEfGhIjKlMnOpQ"  # 22 characters, reads as short options -b -D -y ...
HELP = "-hx4AbCdEfGhIjKlMnOpQr"  # would print the help: -h is a help option here
DOUBLE = "--y4AbCdEfGhIjKlMnOpQr"  # reads as a long option


def parse(*args: str) -> dict[str, Any]:
    """What click gives the command for `fieldsync ARGS...`, without running it."""
    name, *rest = args
    parent = cli.make_context("fieldsync", [name])
    command = cli.commands[name]
    with command.make_context(name, list(rest), parent=parent) as ctx:
        return dict(ctx.params)


@pytest.mark.parametrize("rid", [DASH, HELP, DOUBLE, "6JrG1k2m9bq8ZQ0bq1cV_w"])
def test_every_command_that_takes_an_id_reads_it(rid: str) -> None:
    assert parse("revoke", rid) == {"device_id": rid, "rekey": False}
    assert parse("revoke", rid, "--rekey") == {"device_id": rid, "rekey": True}
    assert parse("revoke", "--rekey", rid) == {"device_id": rid, "rekey": True}
    assert parse("approve", rid) == {"device_id": rid}
    assert parse("show", rid) == {"record_id": rid, "fmt": "text"}
    assert parse("show", "--format", "json", rid) == {"record_id": rid, "fmt": "json"}
    edited = {"record_id": rid, "record_type": "picket", "pairs": ("attendance=3",)}
    assert parse("edit", rid, "--type", "picket", "--set", "attendance=3") == edited
    assert parse("edit", "--type", "picket", rid, "--set", "attendance=3") == edited
    assert parse("edit", "--", rid, "--type", "picket", "--set", "attendance=3") == edited
    assert parse("edit", "--type=picket", "--set", "attendance=3", "--", rid) == edited
    assert parse("delete", rid) == {"record_id": rid, "record_type": None, "purge": False}
    assert parse("delete", rid, "--type", "picket") == {
        "record_id": rid,
        "record_type": "picket",
        "purge": False,
    }
    attached = {"record_id": rid, "files": ("a.jpg",), "record_type": None, "caption": "x"}
    assert parse("attach", rid, "a.jpg", "--caption", "x") == attached
    assert parse("attach", "--caption", "x", "--", rid, "a.jpg") == attached
    detached = {"record_id": rid, "attachment_id": DASH, "record_type": None, "purge": True}
    assert parse("detach", rid, DASH, "--purge") == detached
    assert parse("detach", "--purge", rid, DASH) == detached
    kept = {"record_id": rid, "field": "attendance", "keep": 1, "value": None}
    assert parse("resolve", rid, "attendance", "--keep", "1") == kept
    assert parse("resolve", "--keep", "1", rid, "attendance") == kept
    assert parse("resolve", "--", rid, "attendance", "--keep", "1") == kept


def test_option_values_that_start_with_a_dash_stay_values() -> None:
    assert parse("edit", DASH, "--set", "notes=-3 degrees", "--type", "picket") == {
        "record_id": DASH,
        "record_type": "picket",
        "pairs": ("notes=-3 degrees",),
    }
    assert parse("resolve", DASH, "attendance", "--value", "-4") == {
        "record_id": DASH,
        "field": "attendance",
        "keep": None,
        "value": "-4",
    }


def test_unknown_options_are_still_refused() -> None:
    with pytest.raises(click.NoSuchOption):
        parse("revoke", DASH, "--rekye")
    with pytest.raises(click.NoSuchOption):
        parse("edit", "-x", DASH)


def test_help_still_works() -> None:
    result = click.testing.CliRunner().invoke(cli, ["revoke", "-h"])
    assert result.exit_code == 0 and "Example: fieldsync revoke" in result.output


ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(
    rid=st.text(ID_CHARS, min_size=21, max_size=21).map(lambda t: "-" + t),
    before=st.booleans(),
    separator=st.booleans(),
)
def test_any_dash_id_is_positional_wherever_it_stands(
    rid: str, before: bool, separator: bool
) -> None:
    arity = {"--type": True, "--set": True, "-h": False, "--help": False}
    opts = ["--type", "picket", "--set", "attendance=-1"]
    ids = ["--", rid] if separator else [rid]
    args = [*ids, *opts] if before else [*opts, *ids]
    assert reorder(args, arity) == [*opts, "--", rid]


def test_an_id_starting_with_a_dash_end_to_end(
    server: ServerProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A record another client named `-…`: captured, synced, shown, resolved, deleted."""
    team = new_team(server, tmp_path)
    admin = team.found()
    volunteer = team.enroll(admin, "volunteer")
    volunteer.run("edit", DASH, "--type", "picket", *sets(attendance=3))
    volunteer.run("sync")
    # The admin writes before it has pulled: the two values stand as a conflict.
    admin.run("edit", "--", DASH, "--type", "picket", *sets(attendance=4))
    admin.run("sync")
    shown = as_json(admin.run("show", DASH, "--format", "json"))
    assert (shown["id"], shown["type"], shown["conflicts"]) == (
        DASH,
        "picket",
        {"attendance": [4, 3]},
    )
    admin.run("resolve", DASH, "attendance", "--keep", "1")
    shown = as_json(admin.run("show", "--format", "json", DASH))
    assert (shown["fields"], shown["conflicts"], shown["deleted"]) == ({"attendance": 3}, {}, False)
    admin.run("delete", DASH)
    assert as_json(admin.run("show", DASH, "--format", "json"))["deleted"] is True
