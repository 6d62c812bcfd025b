"""Test support: the `cml-exporter` command as a subprocess on a loopback port, and configuration files for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support import PASSWORD

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, workers: dict[str, str], **top: Any) -> Path:
    """Write a configuration file with the simulator's credentials and the given worker names and URLs."""
    document: dict[str, Any] = {
        "defaults": {"timeout": "1s"},
        "credentials": {"default": {"username": "admin", "password": PASSWORD}},
        "workers": [{"name": name, "url": url} for name, url in workers.items()],
    }
    document.update(top)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def replace_file(path: Path, text: str) -> None:
    """Rewrite ``path`` the safe way, by renaming a finished file over it."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class ExporterProcess:
    """One `cml-exporter` process; its output goes to a file that ``output()`` reads."""

    def __init__(self, folder: Path, config_file: Path, *extra_arguments: str, scheme: str = "http") -> None:
        self.port = free_port()
        self.url = f"{scheme}://{HOST}:{self.port}"
        self.log = folder / f"exporter-{self.port}.log"
        self.command = [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={config_file}",
            f"--web.listen-address={HOST}:{self.port}",
            "--log.level=debug",
            *extra_arguments,
        ]
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ExporterProcess:
        with self.log.open("wb") as output:
            self.popen = subprocess.Popen(
                self.command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def signal(self, number: signal.Signals) -> None:
        assert self.popen is not None
        self.popen.send_signal(number)

    async def wait_exit(self, seconds: float) -> int:
        """Wait for the process to exit and return its exit code; fail after ``seconds``."""
        assert self.popen is not None
        deadline = time.monotonic() + seconds
        while self.popen.poll() is None:
            assert time.monotonic() < deadline, f"exporter still running after {seconds} s:\n{self.output()}"
            await asyncio.sleep(0.05)
        return self.popen.returncode

    async def wait_ready(self, session: aiohttp.ClientSession, seconds: float = 20, **request: Any) -> None:
        """Poll /-/ready until it returns 200; fail with the output when the process exits or times out."""
        assert self.popen is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, f"exporter exited with {self.popen.returncode}:\n{self.output()}"
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(self.url + "/-/ready", timeout=aiohttp.ClientTimeout(total=2), **request) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"exporter not ready within {seconds} s:\n{self.output()}")

    def stop(self) -> None:
        """Stop the process with SIGTERM, then SIGKILL after 10 seconds; safe to call twice."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)
