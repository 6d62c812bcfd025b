"""Circuit breakers: one pybreaker breaker per (worker, endpoint), driven by awaited outcomes.

pybreaker's decorator does not understand coroutines, so the outcome is passed to the breaker after
the request has been awaited. On top of pybreaker this adds what a fleet needs: half open lets exactly one
trial through, and the reset interval doubles on each failed trial, up to a cap, and resets on success.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import pybreaker

from exporter.config import BreakerConfig
from exporter.errors import ProbeError

T = TypeVar("T")
log = logging.getLogger(__name__)

STATES = ("closed", "open", "half_open")


class _Failure(Exception):
    """Carries a transient ProbeError into pybreaker, which counts it."""


class _Excluded(Exception):
    """Carries a non-transient ProbeError into pybreaker, which then counts a success."""


class _Transitions(pybreaker.CircuitBreakerListener):  # type: ignore[misc]  # pybreaker ships no stubs for this base
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: object, new_state: object) -> None:
        old_name = getattr(old_state, "name", str(old_state))
        new_name = getattr(new_state, "name", str(new_state))
        fields = {"breaker": cb.name, "status": new_name, "previous": old_name, "reset_seconds": cb.reset_timeout}
        if new_name == "open":
            log.warning("breaker opened", extra=fields)
        elif new_name == "closed":
            log.info("breaker closed", extra=fields)
        else:
            log.debug("breaker half open", extra=fields)


class Breaker:
    """Guard one worker endpoint; ``call`` raises ProbeError(reason="breaker_open") while open."""

    def __init__(self, worker: str, endpoint: str, config: BreakerConfig) -> None:
        self.worker = worker
        self.endpoint = endpoint
        self.config = config
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=config.fail_max,
            reset_timeout=config.reset_timeout,
            exclude=[_Excluded],
            listeners=[_Transitions()],
            name=f"{worker}/{endpoint}",
        )
        self._trial_running = False

    @property
    def state(self) -> str:
        """The breaker's state: ``closed``, ``open`` or ``half_open``."""
        state = str(self._breaker.current_state)
        return "half_open" if state == "half-open" else state

    @property
    def reset_timeout(self) -> float:
        return float(self._breaker.reset_timeout)

    def _opened_at(self) -> float:
        opened: datetime | None = self._breaker._state_storage.opened_at
        return opened.timestamp() if opened is not None else 0.0

    def retry_at(self) -> float:
        """Unix time from which a trial request may go through (0 when it may go now)."""
        if self.state != "open":
            return 0.0
        return self._opened_at() + self.reset_timeout

    def _admit(self) -> bool:
        """Decide whether a request may go out now; a True from half open makes this caller the one trial."""
        state = self.state
        if state == "closed":
            return True
        if self._trial_running:
            return False
        if state == "open" and time.time() < self.retry_at():
            return False
        self._trial_running = True
        if state == "open":
            self._breaker.half_open()
        return True

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        """Await ``request`` unless the breaker is open, and record its outcome."""
        if not self._admit():
            message = f"circuit breaker open after {self.config.fail_max} failures; next trial in " + (
                f"{max(0.0, self.retry_at() - time.time()):.0f}s" if not self._trial_running else "progress"
            )
            raise ProbeError(self.worker, self.endpoint, "breaker_open", message)
        was_trial = self._trial_running
        try:
            result = await request()
        except ProbeError as error:
            self._record(error, was_trial)
            raise
        except BaseException:
            # Cancelled or an unexpected error: the trial slot must not stay taken.
            self._trial_running = False
            raise
        self._record(None, was_trial)
        return result

    def _record(self, error: ProbeError | None, was_trial: bool) -> None:
        self._trial_running = False
        if error is not None and error.is_transient:
            if was_trial:
                # A failed trial: wait twice as long before the next one, up to the cap.
                self._breaker.reset_timeout = min(self.reset_timeout * 2, self.config.max_reset_timeout)
            self._feed(_Failure(error.reason))
            return
        if was_trial or self.reset_timeout != self.config.reset_timeout:
            self._breaker.reset_timeout = self.config.reset_timeout
        self._feed(_Excluded() if error is not None else None)

    def _feed(self, outcome: Exception | None) -> None:
        def replay() -> None:
            if outcome is not None:
                raise outcome

        # The state may have been opened by a concurrent failure; then there is nothing to record.
        if self._breaker.current_state == "open":
            return
        with contextlib.suppress(_Failure, _Excluded, pybreaker.CircuitBreakerError):
            self._breaker.call(replay)
