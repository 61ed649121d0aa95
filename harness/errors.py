"""The one error tree of atomiclab.

Every failure of the harness itself is a ``HarnessError``; library errors (yaml, lxml, evtx, pypsrp,
paramiko, sqlite, httpx ...) are caught at the edge where they happen and re-raised as one of these,
with the original chained as ``__cause__``. The outcome of an atomic test (passed, failed, skipped)
is *data* (see ``harness.results``), never an exception.

::

    HarnessError                      base; str(e) is one line: what, where, what to do
     ├── ContentError                 an atomic, expectation, rule or lab file is invalid (file, line)
     ├── TelemetryError               an event source cannot be read or is hostile (file/host, reason)
     ├── DetectionError               a rule cannot be run
     │    ├── RuleSyntaxError         the rule text does not parse (file, line, column)
     │    ├── UnsupportedRuleError    valid rule using a feature this engine does not implement
     │    │    └── NotSupportedLocallyError  valid Sumo the local engine does not run (file:line:col)
     │    └── RemoteSearchError       the Sumo Search Job API refused or failed
     ├── TransportError               talking to a target failed (host)
     │    ├── ConnectError            cannot reach the host / TLS / host key refused
     │    ├── AuthError               credentials refused
     │    ├── DeadlineExceeded        a remote command overran its deadline
     │    └── ProtocolError           the peer answered something we cannot accept
     ├── CredentialError              a secret is missing from the environment / keyring
     ├── EmulationError               the emulated host cannot start or was misused
     ├── LabError                     vagrant/provider missing, lab not provisioned
     └── ReportError                  reports cannot be written or verified

Messages are built so that ``str(err)`` alone is a good CLI error line.
"""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base of every error atomiclab raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def _where(file: str | Path | None, line: int | None, column: int | None = None) -> str:
    if file is None:
        return ""
    loc = str(file)
    if line is not None:
        loc += f":{line}"
        if column is not None:
            loc += f":{column}"
    return loc


class ContentError(HarnessError):
    """Invalid content file. ``str()`` is ``FILE:LINE: YAML-PATH: message``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.path = path
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        parts = [p for p in (_where(self.file, self.line), self.path) if p]
        body = f"{self.message} ({self.hint})" if self.hint else self.message
        return ": ".join([*parts, body])


class TelemetryError(HarnessError):
    """An event source cannot be read (unknown format, damaged, hostile XML ...)."""

    def __init__(self, message: str, *, source: str | Path | None = None, hint: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message, hint=hint)


class DetectionError(HarnessError):
    """A detection rule cannot be run."""


class RuleSyntaxError(DetectionError):
    """A rule does not parse. ``str()`` is ``FILE:LINE:COL: message``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.detail = message  # the message without its FILE:LINE:COL prefix
        where = _where(file if file is not None else "<rule>", line, column)
        super().__init__(f"{where}: {message}", hint=hint)


class UnsupportedRuleError(DetectionError):
    """A valid rule uses a feature this engine does not implement."""


class NotSupportedLocallyError(UnsupportedRuleError):
    """Valid Sumo Logic the local engine does not evaluate. ``str()`` is
    ``FILE:LINE:COL: <what> is not supported by the local engine`` (never the user's syntax error)."""

    def __init__(self, what: str, *, file: str | Path | None = None, line: int | None = None,
                 column: int | None = None, hint: str | None = None) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.detail = f"{what} is not supported by the local engine"
        where = _where(file if file is not None else "<rule>", line, column)
        super().__init__(f"{where}: {self.detail}",
                         hint=hint or "run this rule with the remote Sumo engine (Search Job API), or rewrite it")


class RemoteSearchError(DetectionError):
    """The Sumo Logic Search Job API refused or failed."""


class TransportError(HarnessError):
    """Talking to a target failed. Always names the host."""

    def __init__(self, message: str, *, host: str, hint: str | None = None) -> None:
        self.host = host
        super().__init__(f"{host}: {message}", hint=hint)


class ConnectError(TransportError):
    """The host cannot be reached, TLS failed, or its host key was refused."""


class AuthError(TransportError):
    """The host refused the credentials."""


class DeadlineExceeded(TransportError):
    """A remote command overran its deadline (it was terminated)."""


class ProtocolError(TransportError):
    """The peer answered something the protocol does not allow."""


class CredentialError(HarnessError):
    """A secret is missing from the environment or keyring."""


class EmulationError(HarnessError):
    """The emulated host cannot start or was asked for something it cannot do."""


class LabError(HarnessError):
    """The Vagrant lab cannot be driven (vagrant or provider missing, not provisioned)."""


class ReportError(HarnessError):
    """Reports cannot be written, read or verified."""


__all__ = [
    "AuthError",
    "ConnectError",
    "ContentError",
    "CredentialError",
    "DeadlineExceeded",
    "DetectionError",
    "EmulationError",
    "HarnessError",
    "LabError",
    "NotSupportedLocallyError",
    "ProtocolError",
    "RemoteSearchError",
    "ReportError",
    "RuleSyntaxError",
    "TelemetryError",
    "TransportError",
    "UnsupportedRuleError",
]
