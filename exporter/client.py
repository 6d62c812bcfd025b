"""The HTTP side of talking to one CML worker: one aiohttp session, and every failure as a bounded reason.

Breakers, tokens and caching live in the layers above; this module sends one request and returns
decoded JSON or raises ``ProbeError``.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import os
import socket
import ssl
import time
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from exporter import __version__
from exporter.config import ExporterSettings, WorkerConfig
from exporter.errors import ProbeError

API_PREFIX = "/api/v0/"
# Connections to one worker at most; only the per-lab calls of the lab-list fallback use more than two.
MAX_CONNECTIONS = 8
USER_AGENT = f"cml-exporter/{__version__}"


class _Resolver(ThreadedResolver):
    """The system resolver, except that names under ``.invalid`` fail at once without a DNS query.

    RFC 6761 reserves ``.invalid`` for names that never resolve. A query for one would only leak the name,
    so the lookup fails locally, as NXDOMAIN would.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.rstrip(".").lower()
        if name == "invalid" or name.endswith(".invalid"):
            raise OSError(socket.EAI_NONAME, f"{host!r} is under .invalid, which never resolves")
        return await super().resolve(host, port, family)


def make_ssl_context(worker: WorkerConfig) -> ssl.SSLContext | bool:
    """Return the TLS settings for a worker: verification on, unless the configuration turns it off."""
    if worker.tls.insecure_skip_verify:
        return False
    ca_file = worker.tls.ca_file
    if ca_file is None:
        return _verifying_context(None, None)
    try:
        stat = os.stat(ca_file)
    except OSError:
        # Let the ssl module raise its usual error for a missing or unreadable file.
        return ssl.create_default_context(cafile=ca_file)
    return _verifying_context(ca_file, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _verifying_context(ca_file: str | None, version: tuple[int, int] | None) -> ssl.SSLContext:
    # Loading a CA store costs about 1 MiB and 20 ms of CPU per context, so workers with the same CA
    # share one: one context per worker made a fleet of 1000 use 1 GB before its first scrape.
    # ``version`` (mtime and size) makes a CA file that changed on disk load again on the next reload.
    return ssl.create_default_context(cafile=ca_file)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delay in seconds or an HTTP date) into a delay in seconds."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _status_reason(status: int) -> str:
    if status in (401, 403, 404, 429):
        return f"http_{status}"
    if 500 <= status <= 599:
        return "http_5xx"
    if 300 <= status <= 399:
        return "redirect"
    return "http_other"


def _error_description(body: bytes) -> str:
    # CML's error body is {"code": ..., "description": ...}; anything else (nginx HTML) is not quoted back.
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if isinstance(document, dict) and isinstance(document.get("description"), str):
        return document["description"][:200]
    return ""


class CmlClient:
    """Send requests to one worker over its own connection pool."""

    def __init__(self, worker: WorkerConfig, settings: ExporterSettings) -> None:
        self.worker = worker
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Keep-alive connections are reused across scrapes, so a worker pays one TLS handshake, not one per request.
        # Idle connections outlive the cache TTL, so each refresh reuses them instead of reconnecting.
        connector = aiohttp.TCPConnector(
            limit=MAX_CONNECTIONS,
            keepalive_timeout=2 * self.worker.cache.ttl + self.worker.timeout,
            ssl=make_ssl_context(self.worker),
            ttl_dns_cache=300,
            resolver=_Resolver(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            # Proxies from the environment are ignored: a worker uses a proxy only when proxy_url says so.
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        return self.worker.url + API_PREFIX + path

    async def request_json(
        self,
        endpoint: str,
        path: str,
        *,
        method: str = "GET",
        token: str | None = None,
        body: Any = None,
    ) -> Any:
        """Send one request and return its decoded JSON body.

        The caller bounds the time with its own deadline. Raises ProbeError with a bounded reason.
        """
        if self._session is None:
            raise RuntimeError("CmlClient.start() was not called")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        name = self.worker.name
        try:
            async with self._session.request(
                method,
                self.url(path),
                headers=headers,
                json=body,
                allow_redirects=False,
                proxy=self.worker.proxy_url,
            ) as response:
                payload = await self._read_body(response, endpoint)
                status = response.status
                retry_after_header = response.headers.get("Retry-After")
        except ProbeError:
            raise
        except aiohttp.ClientConnectorDNSError as error:
            raise ProbeError(name, endpoint, "dns", f"cannot resolve the host name: {error.os_error}") from None
        except aiohttp.ClientConnectorCertificateError as error:
            message = f"TLS certificate not accepted: {error.certificate_error}"
            raise ProbeError(name, endpoint, "tls", message) from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as error:
            raise ProbeError(name, endpoint, "tls", f"TLS handshake failed: {type(error).__name__}") from None
        except aiohttp.ClientConnectorError as error:
            raise ProbeError(name, endpoint, "connection", f"cannot connect: {error.os_error}") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
            raise ProbeError(name, endpoint, "connection", f"connection failed: {type(error).__name__}") from None
        except aiohttp.ClientResponseError as error:
            raise ProbeError(name, endpoint, "bad_response", f"invalid HTTP response: {error.message}") from None
        except aiohttp.ClientError as error:
            raise ProbeError(name, endpoint, "connection", f"request failed: {type(error).__name__}") from None

        if not 200 <= status <= 299:
            reason = _status_reason(status)
            retry_after = parse_retry_after(retry_after_header) if status in (429, 503) else None
            description = _error_description(payload)
            message = f"HTTP {status}, expected 200" + (f" ({description})" if description else "")
            raise ProbeError(name, endpoint, reason, message, retry_after=retry_after)
        try:
            return json.loads(payload)
        except json.JSONDecodeError as error:
            detail = "empty body" if not payload.strip() else f"not JSON ({error.msg} at byte {error.pos})"
            raise ProbeError(name, endpoint, "bad_response", f"HTTP 200 with {detail}") from None
        except (ValueError, RecursionError) as error:
            # Invalid UTF-8, or JSON that Python cannot hold: nesting past the recursion limit, or an
            # integer longer than sys.get_int_max_str_digits().
            detail = f"unusable JSON ({type(error).__name__})"
            raise ProbeError(name, endpoint, "bad_response", f"HTTP 200 with {detail}") from None

    async def _read_body(self, response: aiohttp.ClientResponse, endpoint: str) -> bytes:
        limit = self.settings.max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            response.close()
            raise ProbeError(
                self.worker.name,
                endpoint,
                "too_large",
                f"response of {response.content_length} bytes exceeds the limit of {limit} bytes "
                "(exporter.max_response_bytes)",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                response.close()
                raise ProbeError(
                    self.worker.name,
                    endpoint,
                    "too_large",
                    f"response exceeds the limit of {limit} bytes (exporter.max_response_bytes)",
                )
            chunks.append(chunk)
            # Yield between chunks of a large body, so other workers and /-/healthy are not starved.
            await asyncio.sleep(0)
        return b"".join(chunks)
