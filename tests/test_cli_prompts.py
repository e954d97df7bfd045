"""`fieldsync add TYPE` on a terminal asks for each field, as a person at a picket meets it.

Driven through a real pseudo-terminal (the standard library's `pty`): the passphrase
prompt (no echo), then the record's fields, required ones first with their choices
listed; a wrong value is asked again at once; a blank answer skips an optional field.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from clientkit import FAST_ENV, PASSPHRASE, new_team, records, server  # noqa: F401

from client_sync.demo import ServerProcess, client_command


class Terminal:
    """A command on a pseudo-terminal: read what it prints, answer its prompts."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"never printed {text!r}; printed:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the command ended
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    raise AssertionError(f"ended before {text!r}; printed:\n{self.seen}")
                self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.seen

    def answer(self, line: str) -> None:
        os.write(self.master, line.encode("utf-8") + b"\n")

    def pump(self, wait: float = 0.2) -> bool:
        """Read what is there; False once the command ended and all was read."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the command ended and its terminal closed
            return False
        self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return bool(chunk)

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pump():
            if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
        code = self.proc.wait(timeout=10)
        os.close(self.master)
        return code


def test_add_asks_for_each_field_on_a_terminal(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol", "volunteer")
    env = {k: v for k, v in vol.env.items() if k != "FIELDSYNC_PASSPHRASE"}
    term = Terminal([*client_command(), "add", "relative"], {**env, **FAST_ENV})
    term.expect("fieldsync passphrase:")
    term.answer(PASSPHRASE)
    term.expect("Required fields are marked *")
    term.expect("full_name *")
    term.answer("")  # required: asked again
    term.expect("required: fill this in")
    term.answer("Ainur Inventedkyzy")
    term.expect("status: one of camp, prison, detained")
    term.answer("holiday")  # not a choice
    term.expect("Must be one of:")
    term.answer("camp")
    # The optional fields follow, each skippable with Enter; one is answered.
    term.expect("name_kazakh")
    term.answer("Айнұр Ойдан-шығарылған-қызы")
    prompts = term.seen.count(": ")
    while "bundle(s) waiting to sync" not in term.seen and term.proc.poll() is None:
        term.pump()
        if term.seen.rstrip().endswith(":") and term.seen.count(": ") > prompts:
            prompts = term.seen.count(": ")
            term.answer("")  # skip this optional field
    assert term.finish() == 0, term.seen
    record_id = term.seen.strip().splitlines()[-1].strip()
    assert len(record_id) == 22
    vol.run("sync")
    admin.run("sync")
    assert [(r["id"], r["fields"]) for r in records(admin)] == [
        (
            record_id,
            {
                "full_name": "Ainur Inventedkyzy",
                "name_kazakh": "Айнұр Ойдан-шығарылған-қызы",
                "status": "camp",
            },
        )
    ]
