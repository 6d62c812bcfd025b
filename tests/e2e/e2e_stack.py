"""Processes and configuration for the end-to-end test: exporter, Prometheus, Alertmanager and a webhook.

Everything listens on 127.0.0.1 and talks only to the other parts of the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIGS = ROOT / "deploy" / "prometheus"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.example.yml"
RULES_FILE = ROOT / "alerts" / "cml-exporter.rules.yml"
HOST = "127.0.0.1"

# Prometheus scrapes and evaluates every second in the test, and every alert waits this long in
# the pending state instead of its production `for:` duration.
INTERVAL = "1s"
SHORT_FOR = "4s"



def exporter_command() -> list[str]:
    """Return the command that starts the exporter, preferring the installed console script."""
    script = shutil.which("cml-exporter")
    return [script] if script else [sys.executable, "-m", "exporter"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def shortened_rules() -> dict[str, Any]:
    """Return the project's rules with every `for:` duration cut to SHORT_FOR."""
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        group["interval"] = INTERVAL
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = SHORT_FOR
    return rules


def prometheus_config(mode: str, exporter: str, alertmanager: str, rules: Path, workers_file: Path) -> dict[str, Any]:
    """Load the example configuration of `mode` and point it at the test's processes.

    The relabelling of the multi-target jobs stays as the example has it. Only addresses, paths and
    intervals are rewritten: the exporter in `__address__` and static targets, the file_sd file and
    the /sd URL.
    """
    names = {
        "fleet": "prometheus.fleet.yml",
        "multi-target": "prometheus.multi-target.yml",
        "http-sd": "prometheus.http-sd.yml",
    }
    name = names[mode]
    config = yaml.safe_load((PROMETHEUS_CONFIGS / name).read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL, "scrape_timeout": INTERVAL}
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    for job in config["scrape_configs"]:
        job["scrape_timeout"] = INTERVAL
        for static in job.get("static_configs", []):
            static["targets"] = [exporter]
        if "file_sd_configs" in job:
            job["file_sd_configs"] = [{"files": [str(workers_file)]}]
        for http_sd in job.get("http_sd_configs", []):
            http_sd.update({"url": f"http://{exporter}/sd", "refresh_interval": INTERVAL})
        for relabel in job.get("relabel_configs", []):
            if relabel.get("target_label") == "__address__":
                relabel["replacement"] = exporter
    return config


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """Load the example Alertmanager configuration with its receivers sent to the test's webhook."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config["route"].update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"})
    for receiver in config["receivers"]:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": False}]
    return config


@dataclass
class Process:
    """One started program and the file that collects its output."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@dataclass
class Webhook:
    """An Alertmanager webhook receiver that keeps every alert it is sent."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts += 1
        self.alerts.extend(body["alerts"])
        return web.Response(text="ok")

    def received(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        return [
            alert
            for alert in self.alerts
            if alert["labels"].get("alertname") == alertname
            and all(alert["labels"].get(key) == value for key, value in labels.items())
        ]


class Stack:
    """Starts programs as subprocesses and stops every one of them on close, also after a failure."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[Process] = []
        self.runners: list[web.AppRunner] = []

    def start(self, name: str, command: list[str]) -> Process:
        log = self.folder / f"{name}.log"
        with log.open("wb") as output:
            popen = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.folder
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    async def serve_webhook(self) -> tuple[Webhook, str]:
        webhook = Webhook()
        app = web.Application()
        app.router.add_post("/alerts", webhook.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, HOST, port).start()
        return webhook, f"http://{HOST}:{port}/alerts"

    async def close(self) -> None:
        for process in reversed(self.processes):
            stop_process(process.popen)
        for runner in self.runners:
            await runner.cleanup()

    def diagnostics(self) -> str:
        return "\n".join(f"--- {process.name} output ---\n{process.output()}" for process in self.processes)


def stop_process(popen: subprocess.Popen[bytes]) -> None:
    """Stop a started program with SIGTERM, then SIGKILL after 5 seconds."""
    if popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(timeout=5)


async def wait_until_ready(
    session: aiohttp.ClientSession, url: str, process: Process, seconds: float = 30
) -> None:
    """Poll `url` until it returns 200; fail with the program's output if it exits or times out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            pytest.fail(f"{process.name} exited with {process.popen.returncode}:\n{process.output()}")
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    pytest.fail(f"{process.name} did not become ready at {url} within {seconds} s:\n{process.output()}")


def write_yaml(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


class PrometheusAPI:
    """The parts of the Prometheus HTTP API the test reads."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.base_url}{path}", params=params) as response:
            body = await response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr)
        return list(data["result"])

    async def rules(self) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/rules")
        return [rule for group in data["groups"] for rule in group["rules"]]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables (`$name` or `${name}`) with `values`; longer names first."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert not re.search(r"\$[A-Za-z_{]", expr), f"unsubstituted variable in {expr}"
    return expr
