"""The local workbench (`fieldsync ui`): the device's own pages on 127.0.0.1.

    server = serve(device, port=0, idle_minutes=15)
    print(server.url)           # http://127.0.0.1:PORT/launch?token=...
    server.serve_forever()

The second face of the device core (the first is the command line): see app.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from ..device import Device
from .app import create_app
from .security import Gate


@dataclass
class Workbench:
    server: BaseWSGIServer
    gate: Gate
    app: Any

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        """The one-time launch address: works once, then the browser holds a cookie."""
        return f"http://127.0.0.1:{self.port}/launch?token={self.gate.launch_token}"

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.extensions["fieldsync_idle"].stop()


class _Late:
    """The WSGI app, set once the socket is bound (the gate needs the port)."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


def serve(device: Device | None, *, port: int = 0, idle_minutes: float = 15.0) -> Workbench:
    """Bind 127.0.0.1 only (a free port unless one is given) and build the app.

    With `device=None` (no profile on this machine yet) only the setup pages answer:
    join with an invite, or found a workspace."""
    # werkzeug's request log names the client address and every path (record ids):
    # nothing of it is wanted, even on loopback.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    late = _Late()
    server = make_server("127.0.0.1", port, late, threaded=True)
    gate = Gate(int(server.server_port))
    late.app = create_app(device, gate, idle_minutes=idle_minutes)
    return Workbench(server, gate, late.app)
