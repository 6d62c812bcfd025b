"""Login and token handling for one worker: one login at a time, token reuse, and back-off after refusals."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable

from exporter.breaker import Breaker
from exporter.config import WorkerConfig
from exporter.errors import ProbeError

log = logging.getLogger(__name__)

# Renew a token this long before its "exp", so a scrape never starts with a token about to expire.
RENEW_BEFORE_SECONDS = 300.0

LoginRequest = Callable[[], Awaitable[str]]


def token_expiry(token: str) -> float | None:
    """Read ``exp`` (unix seconds) from a JWT without checking its signature; None when absent or unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        expiry = float(exp)
    except OverflowError:  # an integer too large for a float
        return None
    return expiry if math.isfinite(expiry) else None


def renewal_time(expiry: float | None, now: float) -> float:
    """Return the unix time at which to replace a token that expires at ``expiry``.

    That is RENEW_BEFORE_SECONDS before expiry, or half way through the remaining life of a token that
    lives less than twice as long, so a short-lived token is still reused across refreshes.
    """
    if expiry is None:
        return float("inf")
    return expiry - min(RENEW_BEFORE_SECONDS, max(0.0, expiry - now) / 2)


class TokenManager:
    """Hand out a valid token for one worker, logging in when there is none.

    Concurrent callers share one login. After the worker refuses the credentials (403), or rejects a token
    straight after issuing it (401), further logins back off like an open breaker: from the breaker's reset
    interval, doubling up to its maximum, so wrong credentials are not retried on every scrape.
    """

    def __init__(self, worker: WorkerConfig, breaker: Breaker, login: LoginRequest) -> None:
        self._worker = worker
        self._breaker = breaker
        self._login = login
        self._token: str | None = None
        self._renew_at = 0.0
        self._login_task: asyncio.Task[str] | None = None
        self._backoff_until = 0.0
        self._backoff = 0.0
        self._refusal: str | None = None

    @property
    def backoff_until(self) -> float:
        return self._backoff_until

    async def settle(self) -> None:
        """Wait for a login in flight, so that its outcome is recorded with the refresh that started it."""
        task = self._login_task
        if task is not None:
            await asyncio.wait({task})

    async def close(self) -> None:
        """Cancel a login in flight; used when the worker is removed or the exporter stops."""
        task = self._login_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def token(self, endpoint: str) -> str:
        """Return a token, logging in once for all concurrent callers when needed."""
        if self._token is not None and time.time() < self._renew_at:
            return self._token
        if self._login_task is None:
            if time.time() < self._backoff_until:
                wait = self._backoff_until - time.time()
                message = f"login held back for {wait:.0f}s after {self._refusal}"
                raise ProbeError(self._worker.name, endpoint, "auth", message)
            self._login_task = asyncio.create_task(self._run_login(), name=f"login {self._worker.name}")
            # Every caller may have given up (timed out) before the login ends; its outcome is recorded anyway.
            self._login_task.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            return await asyncio.shield(self._login_task)
        except ProbeError as error:
            raise ProbeError(self._worker.name, endpoint, "auth", f"login failed: {error.message}") from None

    async def _run_login(self) -> str:
        try:
            token = await self._breaker.call(self._login)
        except ProbeError as error:
            if error.reason == "http_403":
                self._refuse("the worker refused the user name or password (HTTP 403); check the credentials")
            raise
        finally:
            self._login_task = None
        self._token = token
        self._renew_at = renewal_time(token_expiry(token), time.time())
        return token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after the worker returned 401 for it; a newer token obtained meanwhile is kept."""
        if self._token == token:
            self._token = None

    def reject_fresh(self, token: str) -> None:
        """Back off logins: the worker returned 401 for a token it had just issued."""
        self.invalidate(token)
        self._refuse("the worker rejected a token it had just issued (HTTP 401)")

    def accepted(self) -> None:
        """Note that a request with the current token succeeded, which ends any back-off."""
        if self._refusal is not None:
            log.info("login works again", extra={"worker": self._worker.name, "endpoint": "authenticate"})
        self._backoff = 0.0
        self._backoff_until = 0.0
        self._refusal = None

    def hold_logins(self, seconds: float) -> None:
        """Send no login for ``seconds``: the worker responded to the login with Retry-After (429 or 503).

        Only logins wait. The unauthenticated system_information call goes on, so a rate-limited login
        cannot hide whether the worker is ready.
        """
        until = time.time() + seconds
        if until <= self._backoff_until:
            return
        self._backoff_until = until
        if self._refusal is None:
            self._refusal = "the worker asked to wait before the next login (Retry-After)"
            log.warning(
                "login rate-limited; waiting",
                extra={"worker": self._worker.name, "endpoint": "authenticate", "retry_seconds": seconds},
            )

    def _refuse(self, refusal: str) -> None:
        breaker = self._worker.breaker
        first = self._backoff == 0.0
        self._backoff = breaker.reset_timeout if first else min(self._backoff * 2, breaker.max_reset_timeout)
        self._backoff_until = time.time() + self._backoff
        self._refusal = refusal
        fields = {"worker": self._worker.name, "endpoint": "authenticate", "error": refusal}
        # Said once when logins start failing, then at debug, so a wrong password does not flood the log.
        if first:
            log.warning("login rejected; backing off", extra={**fields, "retry_seconds": self._backoff})
        else:
            log.debug("login rejected again", extra={**fields, "retry_seconds": self._backoff})
