"""Put on PYTHONPATH of a server process by tests/test_fuzz_privacy.py: record its network calls.

Python imports `sitecustomize` at start-up, before gunicorn or the app. The audit
hook (PEP 578) sees every socket the process creates, binds or connects and every
name it resolves, from any library in any thread, and appends each as one JSON line
to $FIELDSYNC_NET_AUDIT. The test then holds the server to: one listening socket
bound to loopback, no connect, no name lookup, no datagram sent.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

_PATH = os.environ.get("FIELDSYNC_NET_AUDIT")
_EVENTS = frozenset(
    (
        "socket.__new__",
        "socket.bind",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyaddr",
        "socket.gethostbyname",
        "socket.gethostname",
        "socket.getnameinfo",
        "socket.sendmsg",
        "socket.sendto",
        "http.client.connect",
        "urllib.Request",
        "smtplib.connect",
        "ftplib.connect",
    )
)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS or _PATH is None:
        return
    if event == "socket.__new__":  # (socket, family, type, proto): the socket is not set up yet
        args = args[1:]
    line = json.dumps({"pid": os.getpid(), "event": event, "args": [repr(a) for a in args]})
    with open(_PATH, "a", encoding="utf-8") as out:  # "open" is not in _EVENTS: no recursion
        out.write(line + "\n")


if _PATH:
    sys.addaudithook(_hook)
