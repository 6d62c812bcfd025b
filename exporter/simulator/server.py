"""The Simulator: a fleet of fake CML controllers served by aiohttp on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from exporter.simulator import control
from exporter.simulator.bodies import BodySet
from exporter.simulator.faults import Fault
from exporter.simulator.profile import WorkerProfile
from exporter.simulator.responses import (
    HTML_TYPE,
    ConnectionDropped,
    answer_endpoint,
    apply_fault_before,
    apply_fault_to_body,
    bearer_token,
    classify,
    drop_connection,
    error_answer,
    nginx_page,
    write_answer,
)
from exporter.simulator.tls import CertificateAuthority
from exporter.simulator.worker import BOOT_PHASES, ENDPOINTS, RequestRecord, WorkerState

if TYPE_CHECKING:
    from exporter.simulator.scenario import Scenario

# The request log keeps the latest records only, so a long benchmark run cannot exhaust memory.
MAX_REQUEST_RECORDS = 100_000
# aiohttp waits this long for each idle keep-alive connection at shutdown before closing it, and
# hanging handlers end at once through the stopping event, so a short wait loses nothing.
_SHUTDOWN_TIMEOUT = 0.1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Simulator:
    """A fleet of simulated CML controllers ("workers") on one shared port plus optional own ports.

    Prefix workers are served under ``http://HOST:PORT/w/NAME`` on the shared listener, which also
    carries the ``/_sim`` control endpoint. Own-port and HTTPS workers get a listener each.
    Nothing listens until ``start()``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, allow_non_loopback: bool = False) -> None:
        if not allow_non_loopback and not is_loopback(host):
            msg = f"simulator host {host!r} is not a loopback address; pass allow_non_loopback=True to listen on it"
            raise ValueError(msg)
        self.host = host
        self.port = port
        self._workers: dict[str, WorkerState] = {}
        self._bodies: dict[int, BodySet] = {}
        self._log: deque[RequestRecord] = deque(maxlen=MAX_REQUEST_RECORDS)
        self._total = 0
        self._ca: CertificateAuthority | None = None
        self._shared_server: web.Server | None = None
        self._shared_listener: asyncio.Server | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._default_profile: WorkerProfile | None = None

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> Simulator:
        """Build an unstarted simulator with the scenario's workers, faults and listen address."""
        sim = cls(scenario.host, scenario.port, allow_non_loopback=scenario.allow_non_loopback)
        for worker in scenario.workers:
            sim.add_worker(
                worker.name,
                worker.profile,
                own_port=worker.own_port,
                tls=worker.tls,
                tls_hostname=worker.tls_hostname,
                port=worker.port,
            )
            for endpoint, fault in worker.faults.items():
                sim.set_fault(worker.name, endpoint, fault)
        return sim

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    def add_worker(
        self,
        name: str,
        profile: WorkerProfile | None = None,
        *,
        own_port: bool = False,
        tls: bool = False,
        tls_hostname: str | None = None,
        port: int = 0,
    ) -> None:
        """Add a worker; HTTPS (``tls`` or ``tls_hostname``) implies its own port.

        ``tls_hostname`` serves a certificate for that name only, so hostname verification fails.
        """
        if not name or "/" in name:
            msg = f"worker name {name!r} is invalid; expected a non-empty name without '/'"
            raise ValueError(msg)
        if name in self._workers:
            msg = f"worker {name!r} already exists; remove it first or pick another name"
            raise ValueError(msg)
        if profile is None:
            profile = self._shared_default_profile()
        tls = tls or tls_hostname is not None
        worker = WorkerState(
            name,
            profile,
            self._bodies_for(profile),
            own_port=own_port or tls or port != 0,
            tls=tls,
            tls_hostname=tls_hostname,
            port=port,
        )
        self._workers[name] = worker
        if self._running:
            worker.boot_started = time.monotonic()
            if worker.own_port:
                self._prepare_own_port(worker)
                self._sync_listener(worker)

    def remove_worker(self, name: str) -> None:
        """Remove a worker. Its prefix URL then returns 404 like a missing host; its own port rejects connections."""
        worker = self._worker(name)
        del self._workers[name]
        if worker.own_port:
            self._close_listener(worker)
            if worker.web_server is not None:
                self._spawn(worker.web_server.shutdown(_SHUTDOWN_TIMEOUT))

    async def start(self) -> None:
        """Bind the shared listener and every own-port listener."""
        if self._running:
            return
        # A fresh event per start, because an asyncio.Event belongs to the loop that first waits on it.
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._shared_server = web.Server(self._handle_shared, handler_cancellation=True, access_log=None)
        self._shared_listener = await loop.create_server(self._shared_server, self.host, self.port, reuse_address=True)
        self.port = self._shared_listener.sockets[0].getsockname()[1]
        self._running = True
        now = time.monotonic()
        for worker in self._workers.values():
            worker.boot_started = now
            if worker.own_port:
                self._prepare_own_port(worker)
                self._sync_listener(worker)
        await self._settle()

    async def stop(self) -> None:
        """Close every listener and connection; hanging and stalled handlers end here."""
        if not self._running:
            return
        self._running = False
        self._stopping.set()
        servers = [self._shared_server]
        for worker in self._workers.values():
            self._close_listener(worker)
            servers.append(worker.web_server)
        if self._shared_listener is not None:
            self._shared_listener.close()
        await self._settle()
        for server in servers:
            if server is not None:
                await server.shutdown(_SHUTDOWN_TIMEOUT)
        if self._shared_listener is not None:
            await self._shared_listener.wait_closed()
        self._shared_listener = None
        await self._settle()

    @property
    def url(self) -> str:
        """The shared listener's root URL, where ``/_sim`` lives."""
        return f"http://{self._host_in_url()}:{self.port}"

    def base_url(self, name: str) -> str:
        worker = self._worker(name)
        if worker.own_port:
            scheme = "https" if worker.tls else "http"
            return f"{scheme}://{self._host_in_url()}:{worker.port}"
        return f"{self.url}/w/{quote(name, safe='')}"

    @property
    def ca_cert_pem(self) -> bytes:
        """The PEM certificate of the CA that signs every HTTPS worker's certificate."""
        return self._certificate_authority().cert_pem

    @property
    def workers(self) -> list[str]:
        return list(self._workers)

    def set_fault(self, name: str, endpoint: str = "*", fault: Fault | None = None) -> None:
        """Set (or with None clear) the fault of one endpoint, or of every endpoint with ``*``."""
        worker = self._worker(name)
        if endpoint != "*" and endpoint not in ENDPOINTS:
            msg = f"endpoint {endpoint!r} is unknown; expected '*' or one of {', '.join(ENDPOINTS)}"
            raise ValueError(msg)
        if fault is None:
            worker.faults.pop(endpoint, None)
        else:
            worker.faults[endpoint] = fault

    def clear_faults(self, name: str | None = None) -> None:
        for worker in self._selected(name):
            worker.faults.clear()

    def faults(self, name: str) -> dict[str, Fault]:
        return dict(self._worker(name).faults)

    def profile(self, name: str) -> WorkerProfile:
        return self._worker(name).profile

    def set_profile(self, name: str, profile: WorkerProfile) -> None:
        """Serve ``profile`` from the next request on; issued tokens stay valid."""
        worker = self._worker(name)
        worker.profile = profile
        worker.bodies = self._bodies_for(profile)

    def expire_tokens(self, name: str) -> None:
        """Invalidate every token the worker has issued, so requests that carry one get 401."""
        self._worker(name).tokens.expire_all()

    def set_boot(self, name: str, phase: str) -> None:
        """Hold the worker in a boot phase until the next set_boot or reboot."""
        if phase not in BOOT_PHASES:
            msg = f"boot phase {phase!r} is unknown; expected one of {', '.join(BOOT_PHASES)}"
            raise ValueError(msg)
        worker = self._worker(name)
        worker.forced_phase = phase
        self._sync_listener(worker)

    def reboot(self, name: str) -> None:
        """Restart the worker's boot timeline (its profile's ``boot``) from now; issued tokens stay valid."""
        worker = self._worker(name)
        worker.forced_phase = None
        worker.boot_started = time.monotonic()
        self._sync_listener(worker)

    def boot_phase(self, name: str) -> str:
        return self._worker(name).phase()

    def count(self, name: str, endpoint: str) -> int:
        """Return the requests the worker received for ``endpoint``, faulted and dropped ones included."""
        return self._worker(name).counts[endpoint]

    def counts(self, name: str) -> dict[str, int]:
        return dict(self._worker(name).counts)

    def all_counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(worker.counts) for name, worker in self._workers.items()}

    def total_requests(self) -> int:
        return self._total

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self._log)

    def reset_counters(self) -> None:
        for worker in self._workers.values():
            worker.counts.clear()
        self._log.clear()
        self._total = 0

    def _shared_default_profile(self) -> WorkerProfile:
        if self._default_profile is None:
            self._default_profile = WorkerProfile()
        return self._default_profile

    def _bodies_for(self, profile: WorkerProfile) -> BodySet:
        """Return the body cache of ``profile``; workers given the same profile object share it."""
        bodies = self._bodies.get(id(profile))
        if bodies is None or bodies.profile is not profile:
            bodies = BodySet(profile)
            self._bodies[id(profile)] = bodies
        return bodies

    def _worker(self, name: str) -> WorkerState:
        try:
            return self._workers[name]
        except KeyError:
            msg = f"worker {name!r} is unknown; known workers: {', '.join(sorted(self._workers)) or 'none'}"
            raise KeyError(msg) from None

    def _selected(self, name: str | None) -> list[WorkerState]:
        return list(self._workers.values()) if name is None else [self._worker(name)]

    def _host_in_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _certificate_authority(self) -> CertificateAuthority:
        if self._ca is None:
            self._ca = CertificateAuthority()
        return self._ca

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _prepare_own_port(self, worker: WorkerState) -> None:
        if worker.web_server is None:

            async def handle(request: web.BaseRequest) -> web.StreamResponse:
                return await self._handle_own_port(worker, request)

            worker.web_server = web.Server(handle, handler_cancellation=True, access_log=None)
        if worker.tls and worker.ssl_context is None:
            hostnames = (worker.tls_hostname,) if worker.tls_hostname else ("127.0.0.1", "localhost", "::1")
            worker.ssl_context = self._certificate_authority().server_context(hostnames)
        if worker.port == 0:
            # Pick a port number now, so base_url works even while the boot timeline keeps it closed.
            # NOTE: another process could take the port before it is bound again; nothing prevents that.
            worker.bind_socket(self.host).close()

    def _sync_listener(self, worker: WorkerState) -> None:
        """Open or close an own-port listener to match the boot phase; schedule the next change."""
        if not worker.own_port or not self._running or self._workers.get(worker.name) is not worker:
            return
        if worker.phase_timer is not None:
            worker.phase_timer.cancel()
            worker.phase_timer = None
        if worker.phase() == "refused":
            self._close_listener(worker)
            wait = worker.seconds_until_listening()
            if wait > 0:
                loop = asyncio.get_running_loop()
                worker.phase_timer = loop.call_later(wait, self._sync_listener, worker)
        elif worker.listener is None and worker.opening is None:
            sock = worker.bind_socket(self.host)
            worker.opening = self._spawn(self._serve_socket(worker, sock))

    async def _serve_socket(self, worker: WorkerState, sock: Any) -> None:
        loop = asyncio.get_running_loop()
        assert worker.web_server is not None
        try:
            listener = await loop.create_server(worker.web_server, sock=sock, ssl=worker.ssl_context)
        except BaseException:
            sock.close()
            raise
        finally:
            worker.opening = None
        # The phase may have turned to "refused", or the worker may be gone, while the server started.
        if self._wants_listener(worker):
            worker.listener = listener
        else:
            listener.close()

    def _wants_listener(self, worker: WorkerState) -> bool:
        return self._running and self._workers.get(worker.name) is worker and worker.phase() != "refused"

    def _close_listener(self, worker: WorkerState) -> None:
        """Stop listening on the worker's own port; a listener still starting closes itself when ready."""
        if worker.phase_timer is not None:
            worker.phase_timer.cancel()
            worker.phase_timer = None
        if worker.listener is not None:
            worker.listener.close()
            worker.listener = None

    async def _handle_shared(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == "/_sim" or path.startswith("/_sim/"):
            return await control.handle(self, request)
        name, _, rest = path.removeprefix("/w/").partition("/") if path.startswith("/w/") else ("", "", "")
        worker = self._workers.get(name)
        if worker is None or worker.own_port:
            return web.Response(status=404, body=nginx_page(404), content_type=HTML_TYPE)
        return await self._serve(worker, request, "/" + rest, f"/w/{quote(name, safe='')}")

    async def _handle_own_port(self, worker: WorkerState, request: web.BaseRequest) -> web.StreamResponse:
        if self._workers.get(worker.name) is not worker:
            drop_connection(request)
        return await self._serve(worker, request, request.path, "")

    async def _serve(
        self, worker: WorkerState, request: web.BaseRequest, path: str, base_path: str
    ) -> web.StreamResponse:
        endpoint, lab_id = classify(path)
        worker.counts[endpoint] += 1
        self._total += 1
        status = 0
        try:
            response = await self._respond(worker, request, endpoint, lab_id, base_path)
            status = response.status
            return response
        except ConnectionDropped:
            # aiohttp treats a cancelled handler as a client that went away and logs nothing.
            raise asyncio.CancelledError from None
        finally:
            record = RequestRecord(
                worker.name,
                endpoint,
                request.method,
                request.path,
                status,
                time.time(),
                bearer_token(request) is not None,
            )
            self._log.append(record)

    async def _respond(
        self, worker: WorkerState, request: web.BaseRequest, endpoint: str, lab_id: str | None, base_path: str
    ) -> web.StreamResponse:
        phase = worker.phase()
        if phase == "refused":
            drop_connection(request)
        if phase == "bad_gateway":
            return await write_answer(request, error_answer(502), None, self._stopping)
        fault = worker.fault_for(endpoint)
        answer = None
        if fault is not None:
            answer = await apply_fault_before(fault, request, base_path, self._stopping)
        if answer is None:
            answer = await answer_endpoint(worker, request, endpoint, lab_id)
            if fault is not None:
                answer = apply_fault_to_body(fault, answer)
        return await write_answer(request, answer, fault, self._stopping)
