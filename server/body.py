"""Reading a request body: only once the request is authenticated, bounded in size and time.

Every route reads its body through `read()`, after the signature over the headers
has verified (`server.auth`); a stranger's body is never read at all. A declared
`Content-Length` over the limit is refused before anything else (`server.app`);
a chunked body is refused as soon as it passes the limit. Under the hardened
gunicorn worker (`server.worker`) the socket carries a deadline while the body is
read, so a client that trickles its body gets `408 slow_body` instead of holding
a thread; under other servers (Flask's test client) there is no socket to bound.
"""

from __future__ import annotations

import time

from flask import g, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException

from protocol.attachment import MAX_CHUNK_CT

from .errors import ApiError
from .sockets import DeadlineSocket

CHUNK = 64 * 1024
# POST /v1/workspaces is read before any signature can be checked (the founder's
# key is in it): a genesis is about 3 KiB, so its body is bounded far below MAX_BODY.
CREATE_MAX_BODY = 64 * 1024
# Routes whose bodies have a bound of their own, whatever FIELDSYNC_MAX_BODY says: a
# chunk is at most 1 MiB and its tag, and a list of 1,024 chunk ids about 48 KiB.
ROUTE_LIMITS = {
    "workspaces.create": CREATE_MAX_BODY,
    "chunks.put": MAX_CHUNK_CT,
    "chunks.missing": 64 * 1024,
    "chunks.release": 64 * 1024,
}
# Routes whose body is not JSON.
ROUTE_TYPES = {"chunks.put": "application/octet-stream"}


def _socket() -> DeadlineSocket | None:
    sock = request.environ.get("gunicorn.socket")
    return sock if isinstance(sock, DeadlineSocket) else None


def has_body() -> bool:
    """Does the request announce a body (a length above zero, or chunks)?"""
    return (
        bool(request.content_length)
        or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )


def too_large(limit: int) -> ApiError:
    return ApiError("too_large", f"the body is larger than {limit} bytes", 413)


def read(limit: int, timeout: float) -> bytes:
    """The whole body, at most `limit` bytes, read within `timeout` seconds."""
    cached = g.get("fs_body")
    if cached is not None:
        return bytes(cached)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    env = request.environ
    # gunicorn ends the input stream itself (length or chunks); elsewhere werkzeug
    # wraps it to the declared length.
    stream = env["wsgi.input"] if env.get("wsgi.input_terminated") else request.stream
    sock = _socket()
    deadline = time.monotonic() + timeout
    if sock is not None:
        sock.read_deadline = deadline
    parts: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = stream.read(min(CHUNK, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large(limit)
    except ApiError:
        _unfinished(sock)
        raise
    except (TimeoutError, OSError, ValueError, ParseException, HTTPException) as exc:
        _unfinished(sock)
        if isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
            raise ApiError(
                "slow_body", f"the body did not arrive within {timeout:g} seconds", 408
            ) from None
        raise ApiError("invalid_request", "the body ended early or is malformed", 400) from None
    finally:
        if sock is not None:
            sock.read_deadline = None
    body = b"".join(parts)
    g.fs_body = body
    return body


def _unfinished(sock: DeadlineSocket | None) -> None:
    """The rest of this body will not be read: the connection must close after the answer."""
    g.fs_body_refused = True
    if sock is not None:
        sock.close_after = True


def close_if_unread() -> None:
    """After an answer given without reading an announced body (a refusal before
    authentication, for one): close rather than drain a stranger's body."""
    if g.get("fs_body") is None and has_body():
        _unfinished(_socket())
