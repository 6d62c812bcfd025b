"""A naive collector, the yardstick: it walks one worker the way common single-controller exporters do.

One call after another over one keep-alive connection: log in, then system_information,
system_health, system_stats, licensing, the lab list, and GET labs/{id} for each lab. It counts
labs by state and their nodes, so its work is comparable with the exporter's, and it caches nothing.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class NaiveResult:
    """One walk over a worker: how long it took, how many requests it sent and what it counted."""

    seconds: float
    requests: int
    labs: Counter[str] = field(default_factory=Counter)
    nodes: int = 0


class _Connection:
    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            msg = f"base URL {base_url!r} is not plain HTTP; the naive collector talks to the simulator only"
            raise ValueError(msg)
        self._prefix = parts.path.rstrip("/") + "/api/v0/"
        self._connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        self.requests = 0

    def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        headers = {"Accept": "application/json"}
        payload = None
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self._connection.request(method, self._prefix + path, body=payload, headers=headers)
        self.requests += 1
        response = self._connection.getresponse()
        data = response.read()
        if response.status != 200:
            msg = f"{method} {path}: HTTP {response.status}, expected 200"
            raise RuntimeError(msg)
        return json.loads(data)

    def close(self) -> None:
        self._connection.close()


def collect(base_url: str, username: str, password: str, timeout: float = 30.0) -> NaiveResult:
    """Walk one worker sequentially and return the time taken, the requests sent and the counts.

    Raises:
        RuntimeError: when any call answers other than 200.
    """
    started = time.monotonic()
    connection = _Connection(base_url, timeout)
    labs: Counter[str] = Counter()
    nodes = 0
    try:
        token = connection.call("POST", "authenticate", body={"username": username, "password": password})
        for path in ("system_information", "system_health", "system_stats", "licensing"):
            connection.call("GET", path, token)
        for lab_id in connection.call("GET", "labs?show_all=true", token):
            lab = connection.call("GET", f"labs/{lab_id}", token)
            labs[str(lab.get("state"))] += 1
            nodes += int(lab.get("node_count") or 0)
    finally:
        connection.close()
    return NaiveResult(time.monotonic() - started, connection.requests, labs, nodes)
