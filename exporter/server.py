"""The HTTP server: /metrics, /probe, /sd, health, reload and the landing page."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from exporter.config import Config, load_config
from exporter.errors import ConfigError
from exporter.exposition import render_metrics, render_probe
from exporter.fleet import Fleet
from exporter.inventory import InventoryWatcher
from exporter.landing import render_landing
from exporter.webconfig import BasicAuth, WebConfig, auth_middleware, make_ssl_context

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
_RENDER_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="render")
EXPORTER_KEY: web.AppKey[Exporter] = web.AppKey("exporter")


class Exporter:
    """The running exporter: the fleet, where its configuration comes from, and reloads."""

    def __init__(self, config: Config, config_file: str | None = None) -> None:
        self.fleet = Fleet(config)
        self.config_file = config_file
        self.ready = False
        self._reload_lock = asyncio.Lock()
        self.last_reload_problems: list[str] = []
        self.inventory = InventoryWatcher(self._inventory_settings, self.reload)

    def _inventory_settings(self) -> tuple[str | None, float]:
        config = self.fleet.config
        return config.workers_file, config.settings.workers_file_check_interval

    async def start(self) -> None:
        await self.fleet.start()
        if self.config_file is not None:
            self.inventory.start()
        self.ready = True
        log.info("exporter started", extra={"workers": len(self.fleet.workers), "config": self.config_file or "-"})

    async def close(self) -> None:
        self.ready = False
        await self.inventory.stop()
        await self.fleet.close()

    async def reload(self) -> bool:
        """Load the configuration file again and swap it in; on any error keep the running one.

        Reloads run one at a time. The workers file is read as part of the configuration, so a
        reload for any reason also picks up the inventory as it is now.
        """
        if self.config_file is None:
            return True
        async with self._reload_lock:
            self.inventory.remember()
            try:
                config = await asyncio.to_thread(load_config, self.config_file)
            except ConfigError as error:
                self.fleet.reload_successful = False
                self.last_reload_problems = error.problems
                log.error(
                    "configuration reload rejected; the running configuration stays in force",
                    extra={"config": self.config_file, "error": "; ".join(error.problems)},
                )
                return False
            except Exception as error:  # a reload must never take the running exporter down
                self.fleet.reload_successful = False
                # Only the type: the error's text may quote the file's content, which may hold a password.
                self.last_reload_problems = [f"unexpected {type(error).__name__} while loading the configuration"]
                log.error(
                    "configuration reload failed unexpectedly; the running configuration stays in force",
                    extra={"config": self.config_file, "error": type(error).__name__},
                )
                return False
            # The inventory was taken as seen before it was read; taking it again now would hide a change
            # made while this reload ran. A changed workers_file path only costs one more reload.
            await self.fleet.apply(config)
            self.fleet.reload_successful = True
            self.fleet.reload_success_at = time.time()
            log.info("configuration reloaded", extra={"config": self.config_file, "workers": len(config.workers)})
            return True


def _format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body + "\n", status=status, content_type="text/plain")


def _worker_urls(exporter: Exporter) -> dict[str, str]:
    return {name: worker.config.url for name, worker in exporter.fleet.workers.items()}


async def handle_metrics(request: web.Request) -> web.StreamResponse:
    """Serve every worker and the exporter's own series; ``?scope=exporter`` serves only the latter.

    The exporter scope probes no worker: replicas that share a fleet through /probe use it, so that
    scraping their own health does not make each of them probe the whole fleet.
    """
    exporter = request.app[EXPORTER_KEY]
    fleet = exporter.fleet
    scope = request.query.get("scope", "fleet")
    if scope not in ("fleet", "exporter"):
        return _text(f"invalid scope {scope[:32]!r}; expected fleet (the default) or exporter", 400)
    snapshots = []
    if scope == "fleet":
        wait_seconds = fleet.scrape_timeout(request.headers.get(SCRAPE_TIMEOUT_HEADER))
        snapshots = await fleet.collect(list(fleet.workers), wait_seconds)
    # Rendering a large fleet takes a while; a thread keeps /-/healthy and other scrapes answering meanwhile.
    # Its own thread pool, so that DNS lookups, which use the default one, cannot hold a scrape back.
    loop = asyncio.get_running_loop()
    arguments = (snapshots, len(fleet.workers), fleet.reload_successful, fleet.reload_success_at)
    parts = await loop.run_in_executor(_RENDER_EXECUTOR, render_metrics, *arguments)
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    response.content_length = sum(len(part) for part in parts)
    try:
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
    except ConnectionResetError:
        # Prometheus gave up on this scrape (its own timeout) or closed the connection: nothing to answer.
        log.debug("scraper closed the connection before the response was sent")
    return response


def _check_target(target: str | None, known: dict[str, object]) -> str | None:
    """Return why ``target`` cannot be probed, or None when it names a configured worker."""
    if target is None or target == "":
        return "missing target parameter; expected /probe?target=WORKER, a worker name from the configuration"
    shown = repr(target[:64] + ("…" if len(target) > 64 else ""))
    if "://" in target or "/" in target:
        return f"target {shown} looks like a URL; expected a worker name from the configuration"
    if target not in known:
        return f"unknown target {shown}; expected a worker name from the configuration (see /sd for the list)"
    return None


async def handle_probe(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    fleet = exporter.fleet
    targets = request.query.getall("target", [])
    if len(targets) > 1:
        return _text("more than one target parameter; expected exactly one worker name", 400)
    target = targets[0] if targets else None
    problem = _check_target(target, fleet.workers)  # type: ignore[arg-type]  # only membership is used
    if problem is not None:
        return _text(problem, 400)
    assert target is not None
    wait_seconds = fleet.scrape_timeout(request.headers.get(SCRAPE_TIMEOUT_HEADER))
    snapshots = await fleet.collect([target], wait_seconds)
    return web.Response(body=render_probe(snapshots), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_sd(request: web.Request) -> web.Response:
    """Prometheus HTTP service discovery: one target group per worker, to be relabelled to /probe."""
    fleet = request.app[EXPORTER_KEY].fleet
    groups = [{"targets": [name], "labels": {}} for name in fleet.workers]
    return web.json_response(groups)


async def handle_healthy(request: web.Request) -> web.Response:
    return _text("healthy")


async def handle_ready(request: web.Request) -> web.Response:
    if not request.app[EXPORTER_KEY].ready:
        return _text("not ready", 503)
    return _text("ready")


async def handle_reload(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    if exporter.config_file is None:
        return _text("nothing to reload: the exporter was started without --config.file", 400)
    if await exporter.reload():
        return _text("configuration reloaded")
    problems = "\n".join(f"  {problem}" for problem in exporter.last_reload_problems)
    return _text(f"configuration reload failed; the running configuration stays in force:\n{problems}", 500)


async def handle_landing(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    workers = exporter.fleet.workers.values()
    snapshots = [worker.last_snapshot or worker.snapshot() for worker in workers]
    return web.Response(text=render_landing(snapshots, _worker_urls(exporter)), content_type="text/html")


def make_app(exporter: Exporter, web_config: WebConfig | None = None) -> web.Application:
    """Build the aiohttp application; the caller starts and closes ``exporter``.

    With ``basic_auth_users`` in ``web_config`` every path except /-/healthy and /-/ready requires them.
    """
    middlewares = []
    if web_config is not None and web_config.basic_auth_users:
        middlewares.append(auth_middleware(BasicAuth(web_config.basic_auth_users)))
    app = web.Application(middlewares=middlewares)
    app[EXPORTER_KEY] = exporter
    app.router.add_get("/", handle_landing)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/probe", handle_probe)
    app.router.add_get("/sd", handle_sd)
    app.router.add_get("/-/healthy", handle_healthy)
    app.router.add_get("/-/ready", handle_ready)
    app.router.add_post("/-/reload", handle_reload)
    return app


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """Split ``HOST:PORT`` (``:PORT`` listens on every address, ``[::1]:PORT`` for IPv6)."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid listen address {address!r}; expected HOST:PORT or :PORT, such as :9877")
    host = host.strip("[]")
    return (host or None), int(port_text)


async def serve(
    exporter: Exporter,
    listen_address: str,
    ready: asyncio.Event | None = None,
    web_config: WebConfig | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; SIGHUP reloads the configuration.

    At a stop signal the exporter turns not ready, answers the scrapes in flight with the latest
    completed results, waits up to 5 s for their responses to go out, then cancels the refreshes
    still running and closes every worker's session.
    """
    host, port = parse_listen_address(listen_address)
    ssl_context = make_ssl_context(web_config.tls) if web_config is not None and web_config.tls else None
    app = make_app(exporter, web_config)
    await exporter.start()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def reload_on_signal() -> None:
        log.info("reloading the configuration", extra={"signal": "SIGHUP"})
        task = asyncio.create_task(exporter.reload(), name="reload on SIGHUP")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop_signal, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
        addresses = ", ".join(_format_address(address) for address in runner.addresses)
        log.info("listening", extra={"address": addresses, "tls": ssl_context is not None})
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down")
    finally:
        for handled in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(handled)
        exporter.ready = False
        exporter.fleet.stop_waiting()
        await asyncio.gather(*reloads, return_exceptions=True)
        await runner.cleanup()
        await exporter.close()
        log.info("stopped")
