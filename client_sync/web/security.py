"""Who may use the workbench: only the browser that `fieldsync ui` handed its token to.

The model is Jupyter's: the command prints a URL with a one-time launch token;
the browser that opens it gets an HttpOnly, SameSite=Strict session cookie and
the token stops working. After that:

- a request without the session cookie (another local user, another browser, a
  page of another site) gets 403 and no data;
- a `Host` header other than `127.0.0.1:PORT` or `localhost:PORT` gets 403, so a
  hostile site that rebinds its own name to 127.0.0.1 (DNS rebinding) reads nothing;
- every POST carries the session's CSRF token, or gets 403;
- every answer carries a Content-Security-Policy that allows this origin only and
  no framing, and every page `Cache-Control: no-store` (pages show record content).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from flask import Flask, Response, abort, current_app, g, request
from werkzeug.wrappers import Response as BaseResponse

from .i18n import gettext as _

# Cookies are scoped by host, not port: two workbenches on 127.0.0.1 (two profiles)
# keep their sessions apart by the port in the cookie's name.
COOKIE = "fieldsync_session"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Paths that need no session: the launch exchange itself and the stylesheet/script.
OPEN_PATHS = ("/launch", "/static/")


@dataclass
class Gate:
    """The launch token (until used) and the one browser session it became."""

    port: int
    launch_token: str | None = field(default_factory=lambda: secrets.token_urlsafe(32))
    session_id: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def cookie(self) -> str:
        return f"{COOKIE}_{self.port}"

    def hosts(self) -> tuple[str, str]:
        return (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    def exchange(self, token: str) -> str | None:
        """The launch token, once: a new session id, or None when it is wrong or used."""
        expected = self.launch_token
        if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
            return None
        self.launch_token = None
        self.session_id = secrets.token_urlsafe(32)
        return self.session_id

    def has_session(self, cookie: str | None) -> bool:
        sid = self.session_id
        return bool(cookie and sid and hmac.compare_digest(cookie.encode(), sid.encode()))

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token).encode(), self.csrf.encode())


def gate() -> Gate:
    found: Gate = current_app.extensions["fieldsync_gate"]
    return found


def _check() -> None:
    gt = gate()
    if request.host not in gt.hosts():
        abort(403, _("This workbench answers only at 127.0.0.1 or localhost."))
    if request.path.startswith(OPEN_PATHS):
        return
    if not gt.has_session(request.cookies.get(gt.cookie)):
        abort(403, _("No workbench session: open the address that `fieldsync ui` printed."))
    if request.method == "POST" and not gt.csrf_ok(request.form.get("csrf")):
        abort(403, _("This form is stale or came from another site: reload the page."))
    g.csrf = gt.csrf
    g.authorized = True


def _headers(resp: Response) -> Response:
    resp.headers.setdefault("Content-Security-Policy", CSP)  # a download sets a stricter one
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if not request.path.startswith("/static/"):
        # Pages show record content: never kept in the browser's cache on disk.
        resp.headers["Cache-Control"] = "no-store"
    return resp


def set_session_cookie(resp: BaseResponse, session_id: str) -> None:
    resp.set_cookie(gate().cookie, session_id, httponly=True, samesite="Strict", path="/")


def init_app(app: Flask, gt: Gate) -> None:
    app.extensions["fieldsync_gate"] = gt
    app.before_request(_check)
    app.after_request(_headers)
