"""The state of one simulated worker: profile, faults, tokens, counters and boot phase."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from exporter.simulator.bodies import BodySet
from exporter.simulator.faults import Fault
from exporter.simulator.profile import WorkerProfile
from exporter.simulator.tokens import TokenStore

BOOT_PHASES = ("refused", "bad_gateway", "not_ready", "ready")

ENDPOINTS = (
    "authenticate",
    "authok",
    "authentication",
    "system_information",
    "system_health",
    "system_stats",
    "licensing",
    "populate_lab_tiles",
    "labs",
    "lab",
    "lab_state",
    "lab_element_state",
    "other",
)


@dataclass(frozen=True)
class RequestRecord:
    """One request a worker received; ``status`` is 0 when the connection closed before a complete response."""

    worker: str
    endpoint: str
    method: str
    path: str
    status: int
    at: float
    had_token: bool


class WorkerState:
    """Everything the simulator keeps about one worker between requests."""

    def __init__(
        self,
        name: str,
        profile: WorkerProfile,
        bodies: BodySet,
        *,
        own_port: bool,
        tls: bool,
        tls_hostname: str | None,
        port: int,
    ) -> None:
        self.name = name
        self.profile = profile
        self.bodies = bodies
        self.own_port = own_port
        self.tls = tls
        self.tls_hostname = tls_hostname
        self.port = port
        self.faults: dict[str, Fault] = {}
        self.tokens = TokenStore()
        self.counts: Counter[str] = Counter()
        self.boot_started = time.monotonic()
        self.forced_phase: str | None = None
        # Own-port workers only: the aiohttp protocol factory, the listening socket and its server.
        self.web_server: web.Server | None = None
        self.listener: asyncio.Server | None = None
        self.opening: asyncio.Task[None] | None = None
        self.phase_timer: asyncio.TimerHandle | None = None
        self.ssl_context: ssl.SSLContext | None = None

    def fault_for(self, endpoint: str) -> Fault | None:
        """Return the endpoint's own fault, else the worker-wide ``*`` fault."""
        return self.faults.get(endpoint) or self.faults.get("*")

    def phase(self, now: float | None = None) -> str:
        if self.forced_phase is not None:
            return self.forced_phase
        elapsed = (time.monotonic() if now is None else now) - self.boot_started
        boot = self.profile.boot
        for phase, seconds in (
            ("refused", boot.refused),
            ("bad_gateway", boot.bad_gateway),
            ("not_ready", boot.not_ready),
        ):
            if elapsed < seconds:
                return phase
            elapsed -= seconds
        return "ready"

    def seconds_until_listening(self, now: float | None = None) -> float:
        """Return how long the timeline keeps the port closed from ``now``, 0 when it is open."""
        if self.forced_phase is not None:
            return 0.0
        elapsed = (time.monotonic() if now is None else now) - self.boot_started
        return max(self.profile.boot.refused - elapsed, 0.0)

    def bind_socket(self, host: str) -> socket.socket:
        """Bind and listen on the worker's port (a free one the first time), so clients can connect at once."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        return sock
