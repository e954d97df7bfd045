"""HTTP to the sync server: signed requests (RFC 9421), retries, one-line errors.

Stdlib `urllib.request` only. Every request but health is signed by the device key
(or, while joining, by the invite's one-time key) with a fresh nonce and the
current time. API errors are mapped to messages a person can act on; network
failures and 5xx answers are retried with exponential back-off when the call is
idempotent (every read, every push: the server answers `stored` for a retry).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import httpsig
from protocol.encoding import b64e, parse_json
from protocol.errors import InvalidEncoding

from .errors import GENERAL, NETWORK, NetworkError, ServerError

USER_AGENT = "fieldsync-client/1"
JSON = "application/json"
OCTETS = "application/octet-stream"
# 429: another request of this device is still in progress on the server (it stored
# nothing of this one); retried like a failure, with the same back-off.
RETRY_STATUSES = {429, 500, 502, 503, 504}

# Messages for the API's stable codes (docs/PROTOCOL.md, HTTP API).
# `{detail}` is the server's message.
_MESSAGES: dict[str, tuple[str, int]] = {
    "revoked_device": ("this device was revoked by a coordinator; it can no longer sync", 3),
    "unknown_device": (
        "the server does not know this device or invite (used, expired, or another workspace)",
        3,
    ),
    "not_approved": (
        "this coordinator is not approved yet: ask an admin to run `fieldsync approve <device id>`",
        3,
    ),
    "wrong_role": ("this device's role may not do that: {detail}", 3),
    "wrong_workspace": ("the server refused: wrong workspace ({detail})", 3),
    "unknown_workspace": (
        "the server has no such workspace: it was deleted or this is the wrong server",
        1,
    ),
    "stale_signature": (
        "this device's clock is more than 2 minutes off the server's: set the clock and retry",
        1,
    ),
    "missing_signature": ("the server saw no request signature: {detail}", 1),
    "bad_signature": ("the server refused the request signature: {detail}", 1),
    "replayed_nonce": ("the server saw this request twice: retry", 1),
    "bad_code": (
        "the workspace code is unknown or already used:"
        " ask the server operator for a new one (`fieldsync-server workspace-code`)",
        1,
    ),
    "workspace_exists": ("the server already has this workspace", 1),
    "invalid_event": ("the server refused the key-log event: {detail}", 1),
    "log_conflict": ("another admin changed the key log at the same time: retry", 1),
    "too_large": ("the request is too large for the server: {detail}", 1),
    "busy": ("the server is still busy with another request from this device: retry", 1),
    "slow_body": (
        "the connection is too slow to send this to the server in time:"
        " retry on a better connection",
        1,
    ),
    "disk_full": (
        "the server is short of disk space and stores nothing for now: tell its operator",
        1,
    ),
    "stale_epoch": ("the key epoch changed during the re-key: run it again", 1),
    "unknown_bundle": ("the server does not know a bundle being re-keyed: {detail}", 1),
    "internal": ("the server failed (internal error); try again later", 4),
    "quota_exceeded": (
        "this device has stored as much as the server allows it ({detail}):"
        " ask the server's operator for a larger quota",
        1,
    ),
    "chunk_mismatch": ("the server refused an attachment chunk as damaged: {detail}", 1),
    "invalid_release": ("the server refused to release attachment chunks: {detail}", 1),
}


def _message(code: str, detail: str, status: int) -> tuple[str, int]:
    if code in _MESSAGES:
        text, exit_code = _MESSAGES[code]
        return text.format(detail=detail or code), exit_code
    return f"the server refused ({status} {code}): {detail}", GENERAL


class Client:
    """A signing HTTP client for one workspace and one key."""

    def __init__(
        self,
        server: str,
        workspace: str,
        key: Ed25519PrivateKey,
        key_id: str,
        *,
        timeout: float = 60.0,
        attempts: int | None = None,
        backoff: float = 0.25,
    ) -> None:
        self.server = server.rstrip("/")
        self.workspace = workspace
        self.key = key
        self.keyid = f"{workspace}.{key_id}"
        self.timeout = timeout
        self.attempts = attempts or int(os.environ.get("FIELDSYNC_RETRIES", "4"))
        self.backoff = backoff

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return self.call("GET", path, query=query, retry=True)

    def post(self, path: str, body: Any, *, retry: bool = False) -> Any:
        return self.call("POST", path, body=body, retry=retry)

    def put_bytes(self, path: str, data: bytes) -> Any:
        """PUT raw bytes (a chunk: `application/octet-stream`); idempotent, so retried."""
        return self._retrying(lambda: self._once("PUT", self.url(path), data, OCTETS))

    def get_bytes(self, path: str) -> bytes:
        """GET an answer that is bytes, not JSON (a chunk)."""
        raw: bytes = self._retrying(lambda: self._once("GET", self.url(path), b"", raw=True))
        return raw

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        retry: bool = False,
    ) -> Any:
        url = self.url(path, query)
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        if not retry:
            return self._once(method, url, data)
        return self._retrying(lambda: self._once(method, url, data))

    def _retrying(self, once: Any) -> Any:
        attempts = self.attempts
        for attempt in range(attempts):
            try:
                return once()
            except NetworkError:
                if attempt + 1 >= attempts:
                    raise
            except ServerError as exc:
                if exc.status not in RETRY_STATUSES or attempt + 1 >= attempts:
                    raise
            # Jittered exponential back-off: many phones coming back online after a
            # picket must not hit the server in lock-step.
            time.sleep(self.backoff * (2**attempt) * (0.5 + random.random()))  # noqa: S311
        raise AssertionError("unreachable")

    def _once(
        self, method: str, url: str, data: bytes, ctype: str = JSON, *, raw: bool = False
    ) -> Any:
        headers = httpsig.sign_request(
            method=method,
            url=url,
            body=data,
            key=self.key,
            keyid=self.keyid,
            created=int(time.time()),
            nonce=b64e(os.urandom(16)),
        )
        headers["User-Agent"] = USER_AGENT
        headers["Accept"] = OCTETS if raw else JSON
        if method != "GET":
            headers["Content-Type"] = ctype
        req = urllib.request.Request(  # noqa: S310 -- the URL is the configured server
            url, data=data if method != "GET" else None, headers=headers, method=method
        )
        return _send(req, self.timeout, raw=raw)


def health(server: str, timeout: float = 10.0) -> bool:
    req = urllib.request.Request(server.rstrip("/") + "/v1/health")  # noqa: S310
    try:
        _send(req, timeout)
    except (NetworkError, ServerError):
        return False
    return True


def _send(req: urllib.request.Request, timeout: float, *, raw: bool = False) -> Any:
    host = urllib.parse.urlsplit(req.full_url).netloc
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise _api_error(exc) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(
            f"cannot reach the server at {host} ({reason}): check the connection and rerun",
            NETWORK,
        ) from None
    except (http.client.HTTPException, OSError) as exc:
        raise NetworkError(
            f"the connection to {host} broke ({type(exc).__name__}): rerun to resume", NETWORK
        ) from None
    if raw:
        return body
    try:
        # Strict, as the server reads: one reading of every answer (no duplicate
        # members, no fractions), whatever parser another client uses.
        return parse_json(body)
    except InvalidEncoding as exc:
        raise NetworkError(
            f"the server at {host} answered something that is not strict JSON ({exc.code})"
        ) from None


def _api_error(exc: urllib.error.HTTPError) -> ServerError:
    try:
        raw = exc.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    code, detail = "", ""
    try:
        err = json.loads(raw)["error"]
        code, detail = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        pass
    if not code:
        status_exit = NETWORK if exc.code in RETRY_STATUSES else GENERAL
        return ServerError(
            "http_error", f"the server answered HTTP {exc.code} {exc.reason}", exc.code, status_exit
        )
    detail = " ".join(detail.split())
    text, exit_code = _message(code, detail, exc.code)
    return ServerError(code, text, exc.code, exit_code, detail)
