"""Logging that names no client: no addresses, no user agents, no ids.

gunicorn's own error log writes `Invalid request from ip=<address>: …` for a
malformed request (`workers/base.py`, `handle_error`), `Error handling request
<method> <uri>` (the path names a workspace) and `Listening at: http://<addr>`.
`GunicornLogger` (set as `logger_class` in deploy/gunicorn.conf.py) drops the
access log outright and passes every error-log line, tracebacks included, through
`redact`, which replaces IP addresses and base64url ids/hashes.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from typing import Any

from gunicorn.glogging import Logger

_IPV4 = re.compile(r"(?<![0-9.])\d{1,3}(?:\.\d{1,3}){3}(?![0-9])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Za-z:])")
# Workspace, device, bundle and record ids are 22 characters; hashes 43.
_B64_ID = re.compile(r"(?<![A-Za-z0-9_-])(?:[A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")


def _addr(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    return "[addr]"


def redact(text: str) -> str:
    return _B64_ID.sub("[id]", _IPV6.sub(_addr, _IPV4.sub(_addr, text)))


class RedactingFormatter(logging.Formatter):
    """Wrap another formatter and redact what it produces, traceback text included."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class GunicornLogger(Logger):
    """gunicorn's logger with the access log disabled and every error-log line redacted."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(RedactingFormatter(handler.formatter))

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


def configure_app_logging() -> None:
    """The application's own logger ("fieldsync") writes redacted lines to stderr."""
    logger = logging.getLogger("fieldsync")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
