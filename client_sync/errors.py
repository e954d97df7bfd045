"""The client's failures, each with the exit code the command line returns for it.

Exit codes (documented in README.md and `fieldsync --help`):

  0  success
  1  a general failure: a bad field value, an unknown record, a refused bundle
  2  usage: a missing or malformed option or argument
  3  not allowed: wrong passphrase, revoked or unknown device, a role that may not do this
  4  network: the server cannot be reached or keeps failing; a rerun resumes
  5  integrity: the server's answer failed verification (a forged, forked or
     rolled-back key log, a bundle that does not verify); do not trust this server

Every expected failure is one `CliError`: the command line prints its message as
one line on stderr and exits with its code, never with a traceback.
"""

from __future__ import annotations

GENERAL = 1
USAGE = 2
NOT_ALLOWED = 3
NETWORK = 4
INTEGRITY = 5

EXIT_CODES = {
    0: "success",
    GENERAL: "general failure (bad value, unknown record, refused bundle)",
    USAGE: "usage error (missing or malformed option or argument)",
    NOT_ALLOWED: "not allowed (wrong passphrase, revoked device, role may not do this)",
    NETWORK: "network failure (server unreachable or failing; rerun to resume)",
    INTEGRITY: "integrity failure (server's answer failed verification)",
}


class CliError(Exception):
    """An expected failure: one line for a person, and an exit code."""

    exit_code = GENERAL

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    exit_code = USAGE


class NotAllowed(CliError):
    exit_code = NOT_ALLOWED


class NetworkError(CliError):
    exit_code = NETWORK


class IntegrityError(CliError):
    exit_code = INTEGRITY


class ServerError(CliError):
    """The server answered with an API error: `code` is its stable error code, `detail`
    the server's own message (unauthenticated: for people, never for decisions)."""

    def __init__(
        self, code: str, message: str, status: int, exit_code: int = GENERAL, detail: str = ""
    ) -> None:
        super().__init__(message, exit_code)
        self.code = code
        self.status = status
        self.detail = detail
