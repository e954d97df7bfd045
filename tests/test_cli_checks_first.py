"""A command line that cannot be carried out is refused before the passphrase is asked for
(issue 11), as one `error:` line with its exit code, and nothing is written: a file to
attach that is missing, a folder or a device, or too large; an export or `open` whose
output path is a folder, a file, or in a folder that does not exist; a workbench port
already taken. The profile here holds an empty vault and no passphrase is given: a
command that reached the passphrase would fail with "no passphrase" (exit 3) instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from client_sync.demo import client_command

RECORD = "6JrG1k2m9bq8ZQ0bq1cV_w"


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDSYNC_")}
    env["FIELDSYNC_HOME"] = str(home)
    return subprocess.run(
        [*client_command(), *args],
        env=env, cwd=tmp_path, input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _refused(tmp_path: Path, code: int, message: str, *args: str) -> None:
    before = _tree(tmp_path)
    out = _run(tmp_path, *args)
    assert (out.returncode, out.stderr, out.stdout) == (code, f"error: {message}\n", "")
    assert _tree(tmp_path) == before


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "van.jpg").write_bytes(b"\xff\xd8 a photo")
    (tmp_path / "folder").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "profile.vault").touch()
    return tmp_path


def test_the_fixture_reaches_the_passphrase(files: Path) -> None:
    """The control: a command line with nothing wrong stops at the passphrase."""
    _refused(
        files,
        3,
        "no passphrase: set FIELDSYNC_PASSPHRASE, pipe it in, or run in a terminal",
        "attach", RECORD, "van.jpg",
    )  # fmt: skip


def test_attach_refuses_a_missing_file_before_the_passphrase(files: Path) -> None:
    _refused(
        files,
        2,
        "cannot read nope.jpg: No such file or directory",
        "attach", RECORD, "van.jpg", "nope.jpg",
    )  # fmt: skip


def test_attach_refuses_what_is_not_a_regular_file(files: Path) -> None:
    _refused(files, 2, "/dev/null is not a regular file", "attach", RECORD, "/dev/null")


def test_attach_refuses_a_file_past_one_gib_before_the_passphrase(files: Path) -> None:
    with open(files / "huge.mp4", "wb") as fh:
        fh.truncate(1 << 30)  # sparse: nothing is written
    _refused(
        files,
        1,
        "huge.mp4 is 1,073,741,824 bytes: an attachment is at most 1,073,741,820 (1 GiB);"
        " split it first",
        "attach", RECORD, "huge.mp4",
    )  # fmt: skip


def test_export_refuses_an_output_that_cannot_be_written_before_anything(files: Path) -> None:
    _refused(
        files,
        1,
        "cannot write folder: Is a directory",
        "export", "--format", "csv", "--out", "folder", "--attachments", "out",
    )  # fmt: skip
    _refused(
        files,
        1,
        "cannot write none/x.csv: No such file or directory",
        "export", "--format", "csv", "--out", "none/x.csv",
    )  # fmt: skip
    _refused(
        files,
        1,
        "cannot write into --attachments van.jpg: it is a file, not a folder",
        "export", "--format", "json", "--out", "x.json", "--attachments", "van.jpg",
    )  # fmt: skip


def test_open_refuses_an_out_that_is_a_file(files: Path) -> None:
    _refused(
        files,
        1,
        "cannot write into --out van.jpg: it is a file, not a folder",
        "open", RECORD, "--out", "van.jpg",
    )  # fmt: skip


def test_ui_refuses_a_port_in_use_before_the_passphrase(files: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _refused(
            files,
            2,
            f"--port {port}: cannot listen on 127.0.0.1:{port} (Address already in use);"
            " choose another port, or leave --port out for a free one",
            "ui", "--no-browser", "--port", str(port),
        )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["detach", RECORD, "bad"], "not an attachment id: 'bad'"),
        (["attach", RECORD, "van.jpg", "--caption", ""], "--caption must be 1 to 1000"),
        (["show", "bad"], "not a record id: 'bad'"),
    ],
)
def test_a_malformed_argument_is_refused_before_the_passphrase(
    files: Path, args: list[str], message: str
) -> None:
    out = _run(files, *args)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.startswith(f"error: {message}") and out.stderr.count("\n") == 1


def test_resolve_keeps_a_value_numbered_from_zero(files: Path) -> None:
    out = _run(files, "resolve", RECORD, "attendance", "--keep", "-1")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        "error: Invalid value for '--keep': -1 is not in the range x>=0."
        " (see `fieldsync resolve --help`)\n"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["approve", "bad"], 2, "not a device id: 'bad' (22 characters, as `fieldsync devices`"
         " prints them)"),
        (["revoke", "x" * 23], 2, f"not a device id: '{'x' * 23}' (22 characters, as"
         " `fieldsync devices` prints them)"),
        (["name", "  "], 1, "device name: A device name is 1 to 64 characters, on one line."),
        (["edit", RECORD, "--set", "atendance=4"], 1,
         "no record type has the field 'atendance' (did you mean attendance?)"),
    ],
)  # fmt: skip
def test_a_device_id_a_name_or_a_field_no_type_has_is_refused_before_the_passphrase(
    files: Path, args: list[str], code: int, message: str
) -> None:
    _refused(files, code, message, *args)
