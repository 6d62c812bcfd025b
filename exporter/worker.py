"""One configured worker at run time: its client, breakers, token, cached results and counters."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from exporter.auth import TokenManager
from exporter.breaker import Breaker
from exporter.client import CmlClient
from exporter.config import ExporterSettings, WorkerConfig
from exporter.errors import ProbeError
from exporter.snapshot import ENDPOINTS, Attempt, EndpointState, WorkerSnapshot, decide_status

log = logging.getLogger(__name__)

# Requests of the regular endpoints in flight to one worker at once. With two, a cold refresh takes
# three round trips (information and login, then two rounds of authenticated calls) instead of two.
# In exchange each worker needs only two connections, and opening connections was the largest CPU
# cost of the first scrape of a large fleet (see docs/performance.md).
PRIMARY_CONCURRENCY = 2


class Worker:
    """The state of one worker between scrapes; ``probe.py`` fills it, ``snapshot()`` reads it."""

    def __init__(self, config: WorkerConfig, settings: ExporterSettings) -> None:
        self.config = config
        self.settings = settings
        self.client = CmlClient(config, settings)
        self.breakers = {endpoint: Breaker(config.name, endpoint, config.breaker) for endpoint in ENDPOINTS}
        self.auth = TokenManager(config, self.breakers["authenticate"], self._login)
        # populate_lab_tiles is unofficial: once a worker returns 404 there, labs come from the lab list.
        self.lab_tiles_supported: bool | None = None
        self.refresh_task: asyncio.Task[None] | None = None
        # What the latest scrape showed; the landing page reads it so that viewing the page neither
        # expires cached results nor moves the status-since time.
        self.last_snapshot: WorkerSnapshot | None = None
        self.probe_duration: float | None = None
        self._attempts: dict[str, Attempt] = {}
        self._data: dict[str, tuple[float, Any]] = {}  # endpoint -> (monotonic time of success, parsed data)
        self._last_success_at: dict[str, float] = {}
        self._next_due: dict[str, float] = {}
        self._requests: Counter[str] = Counter()
        self._failures: Counter[tuple[str, str]] = Counter()
        self._primary_slots = asyncio.Semaphore(PRIMARY_CONCURRENCY)
        self._hold_until = 0.0
        self._hold_until_unix = 0.0
        self._hold_reason = "http_429"
        self._status = "unavailable"
        self._status_since = time.time()

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        task = self.refresh_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.auth.close()
        await self.client.close()

    def ttl(self, endpoint: str) -> float:
        return self.config.cache.licensing_ttl if endpoint == "licensing" else self.config.cache.ttl

    def max_age(self, endpoint: str) -> float:
        """Age after which an endpoint's data is no longer served: its TTL plus its request timeout."""
        return self.ttl(endpoint) + self.config.timeout

    def due_endpoints(self, now: float | None = None) -> list[str]:
        """Endpoints whose cached result has expired, none while a Retry-After delay is in force."""
        now = time.monotonic() if now is None else now
        if now < self._hold_until:
            return []
        return [endpoint for endpoint in ENDPOINTS[:-1] if now >= self._next_due.get(endpoint, 0.0)]

    async def send(
        self,
        endpoint: str,
        path: str,
        *,
        token: str | None = None,
        method: str = "GET",
        body: Any = None,
        bulk: bool = False,
    ) -> Any:
        """Send one request, counting it, and hold the worker back when it responds with Retry-After.

        Requests of the regular endpoints run at most PRIMARY_CONCURRENCY at a time per worker; ``bulk``
        requests (the per-lab calls of the lab-list fallback) may use every connection of the client.
        """
        if time.monotonic() < self._hold_until:
            message = "not sent: the worker asked to wait (Retry-After)"
            raise ProbeError(self.name, endpoint, self._hold_reason, message)
        try:
            if bulk:
                return await self._timed_request(endpoint, path, token, method, body)
            async with self._primary_slots:
                return await self._timed_request(endpoint, path, token, method, body)
        except ProbeError as error:
            if error.retry_after is not None and endpoint == "authenticate":
                self.auth.hold_logins(min(error.retry_after, self.settings.retry_after_max))
            elif error.retry_after is not None:
                self.hold(error.retry_after, error.reason)
            raise

    async def _timed_request(self, endpoint: str, path: str, token: str | None, method: str, body: Any) -> Any:
        # The timeout starts when the request goes out, so waiting for a free slot does not count against it.
        self._requests[endpoint] += 1
        timeout = self.config.timeout
        try:
            async with asyncio.timeout(timeout):
                return await self.client.request_json(endpoint, path, token=token, method=method, body=body)
        except TimeoutError:
            message = f"no complete response within the {timeout:g}s timeout"
            raise ProbeError(self.name, endpoint, "timeout", message) from None

    def hold(self, seconds: float, reason: str) -> None:
        """Send nothing to this worker for ``seconds``, capped by ``exporter.retry_after_max``."""
        seconds = min(seconds, self.settings.retry_after_max)
        until = time.monotonic() + seconds
        if until > self._hold_until:
            self._hold_until = until
            self._hold_until_unix = time.time() + seconds
            self._hold_reason = reason
            log.warning("worker asked to wait (Retry-After)", extra={"worker": self.name, "retry_seconds": seconds})

    async def _login(self) -> str:
        credentials = self.config.credentials
        body = {"username": credentials.username, "password": credentials.password.reveal()}
        started = time.monotonic()
        timeout = self.config.timeout
        try:
            # The login runs shielded from the timeouts of the endpoints waiting for it, so it has its own.
            async with asyncio.timeout(timeout):
                token = await self.send("authenticate", "authenticate", method="POST", body=body)
            if not isinstance(token, str) or not token:
                raise ProbeError(self.name, "authenticate", "bad_response", "expected the token as a JSON string")
        except TimeoutError:
            error = ProbeError(self.name, "authenticate", "timeout", f"no response within the {timeout:g}s timeout")
            self.record_failure("authenticate", error, time.monotonic() - started)
            raise error from None
        except ProbeError as error:
            self.record_failure("authenticate", error, time.monotonic() - started)
            raise
        self.record_success("authenticate", None, time.monotonic() - started)
        return token

    def record_success(self, endpoint: str, data: Any, duration: float | None) -> None:
        now = time.monotonic()
        self._attempts[endpoint] = Attempt(ok=True, at=time.time(), duration=duration)
        self._data[endpoint] = (now, data)
        self._last_success_at[endpoint] = time.time()
        self._next_due[endpoint] = now + self.ttl(endpoint)

    def record_failure(self, endpoint: str, error: ProbeError, duration: float | None) -> None:
        now = time.monotonic()
        previous = self._attempts.get(endpoint)
        self._attempts[endpoint] = Attempt(False, time.time(), duration, error.reason, error.message)
        self._failures[(endpoint, error.reason)] += 1
        next_due = now + self.ttl(endpoint)
        if error.reason == "breaker_open":
            # Come back as soon as the breaker allows a trial, not a whole TTL later.
            retry_at = self.breakers[endpoint].retry_at()
            if retry_at:
                next_due = min(next_due, now + max(0.0, retry_at - time.time()))
        self._next_due[endpoint] = next_due
        if previous is None or previous.ok or previous.reason != error.reason:
            log.debug(
                "endpoint failed",
                extra={"worker": self.name, "endpoint": endpoint, "reason": error.reason, "error": error.message},
            )

    def _endpoint_state(self, endpoint: str, now: float) -> EndpointState:
        attempt = self._attempts.get(endpoint)
        stored = self._data.get(endpoint)
        data = None
        fresh = False
        if stored is not None and now - stored[0] <= self.max_age(endpoint):
            data, fresh = stored[1], True
        up = attempt is not None and attempt.ok and (fresh or endpoint == "authenticate")
        failures = {reason: count for (name, reason), count in self._failures.items() if name == endpoint}
        return EndpointState(
            endpoint=endpoint,
            up=up,
            attempt=attempt,
            last_success_at=self._last_success_at.get(endpoint),
            requests_total=self._requests[endpoint],
            failures_total=failures,
            breaker_state=self.breakers[endpoint].state,
            data=data if up else None,
        )

    def snapshot(self) -> WorkerSnapshot:
        """Build the immutable view of this worker that a scrape renders, updating the status-since time."""
        now = time.monotonic()
        endpoints = {endpoint: self._endpoint_state(endpoint, now) for endpoint in ENDPOINTS}
        status = decide_status(endpoints)
        if status != self._status:
            log_fields = {"worker": self.name, "status": status, "previous": self._status}
            if status == "unavailable":
                log.warning("worker status changed", extra=log_fields)
            else:
                log.info("worker status changed", extra=log_fields)
            self._status = status
            self._status_since = time.time()
        snapshot = WorkerSnapshot(
            worker=self.name,
            status=status,
            status_since=self._status_since,
            endpoints=endpoints,
            probe_duration=self.probe_duration,
            per_owner=self.config.collect.per_owner,
            retry_after_until=self._hold_until_unix if now < self._hold_until else None,
        )
        self.last_snapshot = snapshot
        return snapshot
