"""The README documents every command, each with an example; every help text runs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from client_sync.cli import COMMANDS, cli
from client_sync.errors import EXIT_CODES
from server.cli import parser as server_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
CODE_LINES = [
    line.strip()
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S)
    for line in block.splitlines()
]


def _server_commands() -> list[str]:
    actions = [a for a in server_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


def test_the_command_lists_are_what_the_contract_names() -> None:
    assert set(COMMANDS) >= {
        "init", "invite", "join", "approve", "add", "edit", "delete", "sync", "status",
        "records", "show", "conflicts", "resolve", "export", "devices", "revoke", "rotate",
        "safety-number", "wipe",
    }  # fmt: skip
    assert set(_server_commands()) >= {"run", "workspace-code", "backup"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_fieldsync_command_has_an_example_in_the_readme(command: str) -> None:
    assert any(
        line.startswith(f"fieldsync {command} ") or line == f"fieldsync {command}"
        for line in CODE_LINES
    ), f"README.md has no example of `fieldsync {command}`"
    assert f"`{command}" in README, f"README.md does not describe `{command}`"


@pytest.mark.parametrize("command", _server_commands())
def test_every_server_command_is_in_the_readme(command: str) -> None:
    assert any(line.startswith(f"fieldsync-server {command}") for line in CODE_LINES), (
        f"README.md has no example of `fieldsync-server {command}`"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_runs_and_carries_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Example: fieldsync {command}" in result.output


def test_exit_codes_are_documented() -> None:
    for code in EXIT_CODES:
        assert re.search(rf"\b{code} [a-z]", README), f"exit code {code} is not in README.md"


def _bullet(command: str) -> str:
    """The README's description of a command: its bullet, `- \\`COMMAND ...`, to the next."""
    found = re.search(rf"^- `{re.escape(command)}\b.*?(?=^- `|^\S|\Z)", README, re.M | re.S)
    assert found, f"README.md has no bullet for `{command}`"
    return found.group(0)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_described_with_its_command(command: str) -> None:
    options = {
        opt
        for param in cli.commands[command].params
        for opt in getattr(param, "opts", [])
        if opt.startswith("--") and opt != "--help"
    }
    bullet = _bullet(command)
    assert {o for o in options if o not in bullet} == set(), f"`{command}`'s bullet"
