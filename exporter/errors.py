"""Exceptions of cml-exporter, and the bounded set of failure reasons.

    CmlExporterError
    ├── ConfigError            the configuration file is invalid (lists every problem)
    └── ProbeError             one request to one worker endpoint failed (carries a bounded reason)

A ``ProbeError`` never escapes a scrape: the probe records it in the worker's snapshot, and the
worker shows as down on its own series.
"""

from __future__ import annotations

# Every failure is classified into one of these, so label values stay bounded and free text never
# becomes a label.
REASONS: tuple[str, ...] = (
    "timeout",
    "connection",
    "dns",
    "tls",
    "http_401",
    "http_403",
    "http_404",
    "http_429",
    "http_5xx",
    "http_other",
    "redirect",
    "bad_response",
    "too_large",
    "auth",
    "breaker_open",
)

# Reasons that say the worker or the network is in trouble right now; only these count towards
# opening a breaker. 401 is missing on purpose: it is handled by logging in again.
TRANSIENT_REASONS: frozenset[str] = frozenset({"timeout", "connection", "dns", "tls", "http_5xx", "http_429"})


class CmlExporterError(Exception):
    """Base class of the exporter's own errors."""


class ConfigError(CmlExporterError):
    """The configuration is invalid; ``problems`` holds one line per fault, each naming its key path."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{where}invalid configuration ({len(problems)} problem(s)):\n{lines}")


class ProbeError(CmlExporterError):
    """A request to one endpoint of one worker failed for a bounded ``reason``."""

    def __init__(
        self,
        worker: str,
        endpoint: str,
        reason: str,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown failure reason {reason!r}; expected one of {', '.join(REASONS)}")
        self.worker = worker
        self.endpoint = endpoint
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"worker {worker!r} endpoint {endpoint}: {message}")

    @property
    def is_transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS
