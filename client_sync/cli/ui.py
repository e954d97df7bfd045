"""`fieldsync ui`: the local workbench in a browser, a second face of the same device."""

from __future__ import annotations

import socket
import sys

import click

from ..errors import UsageError
from .kit import cli, emit


def _check_port(port: int) -> None:
    """Refuse a port that is taken, as one line and before the passphrase (werkzeug would
    print two lines of its own and exit once the keys were already unlocked)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(
                f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror});"
                " choose another port, or leave --port out for a free one"
            ) from None


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Default: a free port.")
@click.option("--no-browser", is_flag=True, help="Print the address; do not open a browser.")
@click.option(
    "--idle-lock",
    "idle",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    metavar="MINUTES",
    help="Drop the keys from memory after this long without a request.",
)
def ui(port: int, no_browser: bool, idle: float) -> None:
    """Open the workbench: unlock once, then capture, review and export in a browser.

    Served by this device on 127.0.0.1 only, never by the sync server. The address
    it prints carries a one-time token; Ctrl-C ends it.

    Example: fieldsync ui --no-browser
    """
    from ..device import Device
    from ..profile import VAULT_FILE, home_dir
    from ..web import serve

    if port:
        _check_port(port)  # before the passphrase is asked for
    # No profile on this machine yet: the workbench opens on joining or founding one.
    device = Device.unlock() if (home_dir() / VAULT_FILE).exists() else None
    bench = serve(device, port=port, idle_minutes=idle)
    emit(bench.url)
    emit("open this address in a browser on this machine (it works once);")
    emit(f"the keys leave memory after {idle:g} minutes idle or on Lock; Ctrl-C ends it")
    sys.stdout.flush()
    if not no_browser:
        import webbrowser

        webbrowser.open(bench.url)
    try:
        bench.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        bench.shutdown()
        served = bench.app.extensions["fieldsync_device"]
        if served is not None:
            served.lock()
        emit("the workbench stopped; its keys are gone from memory")
