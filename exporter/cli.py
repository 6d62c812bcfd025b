"""Command line: serve (the default), check-config, probe, demo and simulate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from exporter import __version__
from exporter.config import Config, load_config
from exporter.errors import ConfigError
from exporter.labels import clean_label
from exporter.log import FORMATS, LEVELS, setup_logging
from exporter.probe import probe_worker
from exporter.snapshot import ENDPOINTS
from exporter.worker import Worker

DEFAULT_LISTEN_ADDRESS = ":9877"
DEMO_LISTEN_ADDRESS = "127.0.0.1:9877"
SUBCOMMANDS = ("check-config", "probe", "demo", "simulate")

log = logging.getLogger(__name__)


def _add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log.level", dest="log_level", choices=LEVELS, default="info", help="log level (info)")
    parser.add_argument(
        "--log.format", dest="log_format", choices=FORMATS, default="logfmt", help="log format (logfmt)"
    )


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cml-exporter",
        description="Prometheus exporter for fleets of Cisco Modeling Labs (CML 2.x) controllers.",
        epilog="Sub-commands: check-config FILE, probe NAME --config.file FILE, demo, simulate --scenario FILE. "
        "Run 'cml-exporter SUB-COMMAND --help' for their options.",
    )
    parser.add_argument("--config.file", dest="config_file", required=True, metavar="FILE", help="configuration file")
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN_ADDRESS,
        metavar="HOST:PORT",
        help=f"address to serve /metrics on ({DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="web configuration file with TLS and basic auth settings, in the Prometheus exporters' format",
    )
    parser.add_argument("--version", action="version", version=f"cml-exporter {__version__}")
    _add_logging_flags(parser)
    return parser


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as error:
        print(f"cml-exporter: {error}", file=sys.stderr)
        return None


def run_serve(argv: list[str]) -> int:
    from exporter.server import Exporter, parse_listen_address, serve
    from exporter.webconfig import load_web_config

    arguments = _serve_parser().parse_args(argv)
    setup_logging(arguments.log_level, arguments.log_format)
    try:
        parse_listen_address(arguments.listen_address)
    except ValueError as error:
        print(f"cml-exporter: --web.listen-address: {error}", file=sys.stderr)
        return 2
    config = _load(arguments.config_file)
    if config is None:
        return 1
    web_config = None
    if arguments.web_config_file is not None:
        try:
            web_config = load_web_config(arguments.web_config_file)
        except ConfigError as error:
            print(f"cml-exporter: --web.config.file: {error}", file=sys.stderr)
            return 1
    try:
        asyncio.run(serve(Exporter(config, arguments.config_file), arguments.listen_address, web_config=web_config))
    except OSError as error:
        log.error("cannot listen", extra={"address": arguments.listen_address, "error": str(error)})
        return 1
    return 0


def run_check_config(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cml-exporter check-config", description="Validate a configuration file.")
    parser.add_argument("file", nargs="?", metavar="FILE", help="configuration file")
    parser.add_argument("--config.file", dest="config_file", metavar="FILE", help="configuration file (same as FILE)")
    arguments = parser.parse_args(argv)
    path = arguments.file or arguments.config_file
    if path is None:
        parser.error("expected the configuration file, as FILE or --config.file FILE")
    config = _load(path)
    if config is None:
        return 1
    print(f"{path}: valid, {len(config.workers)} worker(s): {', '.join(w.name for w in config.workers) or '(none)'}")
    return 0


async def _probe_once(config: Config, name: str) -> int:
    worker_config = config.worker(name)
    if worker_config is None:
        known = ", ".join(worker.name for worker in config.workers) or "(none)"
        print(f"cml-exporter probe: no worker named {name!r} in the configuration; workers: {known}", file=sys.stderr)
        return 2
    worker = Worker(worker_config, config.settings)
    await worker.start()
    try:
        started = time.monotonic()
        await probe_worker(worker)
        elapsed = time.monotonic() - started
        snapshot = worker.snapshot()
    finally:
        await worker.close()
    print(f"worker {worker_config.name} at {worker_config.url} (probe took {elapsed:.2f}s)")
    print(f"  {'endpoint':<20}{'outcome':<9}{'duration':>9}  {'reason':<13}detail")
    for endpoint in ENDPOINTS:
        state = snapshot.endpoints[endpoint]
        attempt = state.attempt
        if attempt is None:
            print(f"  {endpoint:<20}{'skipped':<9}{'-':>9}  {'-':<13}not needed (no authenticated call ran)")
            continue
        outcome = "ok" if attempt.ok else "failed"
        duration = f"{attempt.duration:.3f}s" if attempt.duration is not None else "-"
        # Worker text is cleaned like a label, so a worker cannot send terminal escapes or extra lines.
        detail = clean_label(attempt.message, "-")
        print(f"  {endpoint:<20}{outcome:<9}{duration:>9}  {attempt.reason or '-':<13}{detail}")
    information = snapshot.information
    version = clean_label(information.version if information is not None else None)
    print(f"status: {snapshot.status}   ready: {'yes' if snapshot.ready else 'no'}   version: {version}")
    return 0 if snapshot.status == "available" else 1


def run_probe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cml-exporter probe", description="Probe one worker once and print what each endpoint returned."
    )
    parser.add_argument("name", metavar="NAME", help="worker name from the configuration")
    parser.add_argument("--config.file", dest="config_file", required=True, metavar="FILE", help="configuration file")
    _add_logging_flags(parser)
    arguments = parser.parse_args(argv)
    setup_logging(arguments.log_level if arguments.log_level != "info" else "warning", arguments.log_format)
    config = _load(arguments.config_file)
    if config is None:
        return 1
    return asyncio.run(_probe_once(config, arguments.name))


def run_demo(argv: list[str]) -> int:
    from exporter.demo import run_demo as demo

    parser = argparse.ArgumentParser(
        prog="cml-exporter demo", description="Run a simulated CML fleet and the exporter on loopback."
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEMO_LISTEN_ADDRESS,
        metavar="HOST:PORT",
        help=f"address for the exporter ({DEMO_LISTEN_ADDRESS})",
    )
    _add_logging_flags(parser)
    arguments = parser.parse_args(argv)
    setup_logging(arguments.log_level if arguments.log_level != "info" else "warning", arguments.log_format)
    try:
        asyncio.run(demo(arguments.listen_address))
    except OSError as error:
        print(f"cml-exporter demo: cannot listen on {arguments.listen_address}: {error.strerror}", file=sys.stderr)
        print("Choose another address with --web.listen-address 127.0.0.1:PORT", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        command, rest = argv[0], argv[1:]
        if command == "check-config":
            return run_check_config(rest)
        if command == "probe":
            return run_probe(rest)
        if command == "demo":
            return run_demo(rest)
        from exporter.simulator.cli import main_simulate

        return main_simulate(rest)
    return run_serve(argv)
