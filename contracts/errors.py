"""The one error tree of scanfleet.

Transient errors (a broker or database that went away) are retried; permanent
ones (bad input, bad configuration, a refused target) are not. Library
exceptions are translated into these at the boundary with ``raise ... from``.
"""


class ScanfleetError(Exception):
    """Base of every error scanfleet raises on purpose."""


class TransientError(ScanfleetError):
    """Retrying later may succeed: a connection dropped, a service restarted."""


class PermanentError(ScanfleetError):
    """Retrying will not help."""


class ConfigError(PermanentError):
    """The configuration is wrong or incomplete."""


class InvalidMessage(PermanentError):
    """A message could not be decoded or failed validation."""

    def __init__(self, reason: str, *, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
