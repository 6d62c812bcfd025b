"""Probing: refresh a worker's due endpoints concurrently, each behind its breaker and its own timeout.

No endpoint gates another, except that authenticated ones wait for a token. ``probe_worker`` →
``probe_endpoint`` → the endpoint's fetcher → ``Worker.send``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from exporter.errors import ProbeError
from exporter.parse import (
    Lab,
    Labs,
    parse_lab,
    parse_lab_ids,
    parse_lab_tiles,
    parse_licensing,
    parse_system_health,
    parse_system_information,
    parse_system_stats,
)
from exporter.worker import Worker

log = logging.getLogger(__name__)

# An endpoint attempt may take this many request timeouts: a wait for a free slot, the login, the
# request, and one more login and request after a 401.
ATTEMPT_TIMEOUTS = 4

# Per-lab requests of the lab-list fallback that one worker may have in flight at once.
LAB_FETCH_CONCURRENCY = 8


def _parsed(worker: Worker, endpoint: str, parse: Callable[[Any], Any], body: Any) -> Any:
    try:
        return parse(body)
    except ValueError as error:
        raise ProbeError(worker.name, endpoint, "bad_response", f"unexpected response: {error}") from None


async def get_authenticated(worker: Worker, endpoint: str, path: str, *, bulk: bool = False) -> Any:
    """GET an endpoint that needs a token; on 401 log in again once and retry once."""
    token = await worker.auth.token(endpoint)
    try:
        body = await worker.send(endpoint, path, token=token, bulk=bulk)
    except ProbeError as error:
        if error.reason != "http_401":
            raise
        worker.auth.invalidate(token)
        token = await worker.auth.token(endpoint)
        try:
            body = await worker.send(endpoint, path, token=token, bulk=bulk)
        except ProbeError as retry_error:
            if retry_error.reason == "http_401":
                worker.auth.reject_fresh(token)
            raise
    worker.auth.accepted()
    return body


async def _fetch_system_information(worker: Worker) -> Any:
    body = await worker.send("system_information", "system_information")
    return _parsed(worker, "system_information", parse_system_information, body)


async def _fetch_system_health(worker: Worker) -> Any:
    body = await get_authenticated(worker, "system_health", "system_health")
    return _parsed(worker, "system_health", parse_system_health, body)


async def _fetch_system_stats(worker: Worker) -> Any:
    body = await get_authenticated(worker, "system_stats", "system_stats")
    return _parsed(worker, "system_stats", parse_system_stats, body)


async def _fetch_licensing(worker: Worker) -> Any:
    body = await get_authenticated(worker, "licensing", "licensing")
    return _parsed(worker, "licensing", parse_licensing, body)


async def _fetch_labs(worker: Worker) -> Labs:
    if worker.lab_tiles_supported is not False:
        try:
            body = await get_authenticated(worker, "labs", "populate_lab_tiles")
            # Tens of thousands of labs take a noticeable time to walk; keep the event loop free meanwhile.
            labs: Labs = await asyncio.to_thread(_parsed, worker, "labs", parse_lab_tiles, body)
            worker.lab_tiles_supported = True
            return labs
        except ProbeError as error:
            # The tiles call is UI-internal: a controller without it, or with a broken one, still lists labs.
            if error.reason not in ("http_404", "bad_response", "http_5xx"):
                raise
            if error.reason == "http_404":
                worker.lab_tiles_supported = False
    return await _fetch_labs_one_by_one(worker)


async def _fetch_labs_one_by_one(worker: Worker) -> Labs:
    ids = _parsed(worker, "labs", parse_lab_ids, await get_authenticated(worker, "labs", "labs?show_all=true"))
    limit = asyncio.Semaphore(LAB_FETCH_CONCURRENCY)

    async def fetch(lab_id: str) -> Lab | None:
        async with limit:
            try:
                lab = await get_authenticated(worker, "labs", f"labs/{lab_id}", bulk=True)
                elements = await get_authenticated(worker, "labs", f"labs/{lab_id}/lab_element_state", bulk=True)
            except ProbeError as error:
                if error.reason == "http_404":
                    return None  # deleted between the list and this call
                raise
        return _parsed(worker, "labs", lambda body: parse_lab(lab_id, body, elements), lab)  # type: ignore[no-any-return]

    labs = await asyncio.gather(*(fetch(lab_id) for lab_id in ids))
    return Labs(tuple(lab for lab in labs if lab is not None))


FETCHERS: dict[str, Callable[[Worker], Awaitable[Any]]] = {
    "system_information": _fetch_system_information,
    "system_health": _fetch_system_health,
    "system_stats": _fetch_system_stats,
    "licensing": _fetch_licensing,
    "labs": _fetch_labs,
}


async def probe_endpoint(worker: Worker, endpoint: str) -> None:
    """Fetch one endpoint behind its breaker, and record the outcome.

    Each request has the worker's timeout. The whole attempt (waiting for a free slot, the login, the
    request and one retry after a 401) is given ATTEMPT_TIMEOUTS times that.
    """
    timeout = worker.config.timeout * ATTEMPT_TIMEOUTS

    async def bounded() -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await FETCHERS[endpoint](worker)
        except TimeoutError:
            message = (
                f"attempt not finished within {timeout:g}s ({ATTEMPT_TIMEOUTS} times the "
                f"{worker.config.timeout:g}s timeout), counting the wait for the login"
            )
            raise ProbeError(worker.name, endpoint, "timeout", message) from None

    started = time.monotonic()
    try:
        data = await worker.breakers[endpoint].call(bounded)
    except ProbeError as error:
        duration = None if error.reason == "breaker_open" else time.monotonic() - started
        worker.record_failure(endpoint, error, duration)
        return
    except Exception as error:
        # A bug, not a worker fault, but the endpoint must not keep showing its previous result as current.
        log.error(
            "probe failed unexpectedly",
            extra={"worker": worker.name, "endpoint": endpoint, "error": repr(error)},
            exc_info=error,
        )
        message = f"unexpected {type(error).__name__} while reading the response"
        failure = ProbeError(worker.name, endpoint, "bad_response", message)
        worker.record_failure(endpoint, failure, time.monotonic() - started)
        return
    worker.record_success(endpoint, data, time.monotonic() - started)


async def probe_worker(worker: Worker, endpoints: list[str] | None = None) -> None:
    """Refresh the given endpoints (default: the due ones) of one worker, all at once."""
    endpoints = worker.due_endpoints() if endpoints is None else endpoints
    if not endpoints:
        return
    started = time.monotonic()
    probes = (probe_endpoint(worker, endpoint) for endpoint in endpoints)
    results = await asyncio.gather(*probes, return_exceptions=True)
    await worker.auth.settle()
    for endpoint, result in zip(endpoints, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            # A bug, not a worker fault: keep the other endpoints and log what broke.
            log.error(
                "probe failed unexpectedly",
                extra={"worker": worker.name, "endpoint": endpoint, "error": repr(result)},
                exc_info=result,
            )
    worker.probe_duration = time.monotonic() - started
    log.debug(
        "probe finished",
        extra={"worker": worker.name, "duration_seconds": worker.probe_duration, "endpoints": ",".join(endpoints)},
    )


def start_refresh(worker: Worker, limit: asyncio.Semaphore) -> asyncio.Task[None] | None:
    """Start a refresh of the worker's due endpoints, or join the one in flight (single flight)."""
    task = worker.refresh_task
    if task is not None and not task.done():
        return task
    if not worker.due_endpoints():
        return None

    async def refresh() -> None:
        async with limit:
            await probe_worker(worker)

    task = asyncio.create_task(refresh(), name=f"refresh {worker.name}")
    worker.refresh_task = task
    return task
