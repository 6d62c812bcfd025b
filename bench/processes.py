"""Child processes of the benchmark, and their CPU time and memory read from /proc (Linux only)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPOSITORY = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU seconds that process ``pid`` has used so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name in field 2 may contain spaces, so count fields after its closing parenthesis.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_bytes(pid: int) -> dict[str, int]:
    """Return the resident set size now (``rss``) and its peak (``peak_rss``) of process ``pid``."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024  # /proc reports kB
    return {"rss": values["VmRSS"], "peak_rss": values["VmHWM"]}


def free_port() -> int:
    """Return a loopback port that is free now; another process could still take it before it is used."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    return environment


class Child:
    """A Python child process started with ``python -m MODULE``, stopped with SIGTERM."""

    def __init__(self, module: str, arguments: list[str], log_file: Path, *, read_stdout: bool = False) -> None:
        self._log: TextIO = log_file.open("w")
        self.log_file = log_file
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdout=subprocess.PIPE if read_stdout else self._log,
            stderr=self._log,
            text=True,
            env=_environment(),
            cwd=REPOSITORY,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> dict[str, int]:
        return memory_bytes(self.pid)

    def read_line(self, timeout: float) -> str:
        """Return the child's next stdout line; raise RuntimeError when it exits or says nothing in time."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.process.stdout.fileno(), True)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            line = self.process.stdout.readline()
            if line:
                return line
        msg = f"{self.describe()} printed nothing within {timeout:g}s; see {self.log_file}"
        raise RuntimeError(msg)

    def describe(self) -> str:
        return f"child process {' '.join(self.process.args[2:4])} (pid {self.pid})"  # type: ignore[index]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def start_simulator(workers: int, latency: float, lab_workers: int, log_file: Path) -> tuple[Child, dict[str, Any]]:
    """Start ``bench.simulate``; return the child and its announcement (control URL and worker URLs)."""
    child = Child(
        "bench.simulate",
        ["--workers", str(workers), "--latency", repr(latency), "--lab-workers", str(lab_workers)],
        log_file,
        read_stdout=True,
    )
    try:
        announcement = json.loads(child.read_line(timeout=120))
    except BaseException:
        child.stop()
        raise
    return child, announcement


async def start_exporter(config_file: Path, log_file: Path) -> tuple[Child, str]:
    """Start the exporter on a free loopback port; return the child and its base URL once /-/ready answers."""
    port = free_port()
    child = Child(
        "exporter",
        [f"--config.file={config_file}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warning"],
        log_file,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(child, url + "/-/ready", within=60)
    except BaseException:
        child.stop()
        raise
    return child, url


async def _wait_ready(child: Child, url: str, within: float) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                msg = f"{child.describe()} exited with status {child.process.returncode}; see {child.log_file}"
                raise RuntimeError(msg)
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    msg = f"{child.describe()} was not ready within {within:g}s; see {child.log_file}"
    raise RuntimeError(msg)
