"""Check the example Alertmanager configuration: its syntax, its routes and, on a real Alertmanager, its inhibitions."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.example.yml"
STARTUP_TIMEOUT_SECONDS = 15.0



def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _WebhookSink(BaseHTTPRequestHandler):
    """Accept and drop Alertmanager notifications, so no placeholder address is ever contacted."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.end_headers()

    # Keep the test output free of one access-log line per notification.
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def alertmanager_url(tmp_path: Path, webhook_url: str) -> Iterator[str]:
    """Start a real Alertmanager on loopback with the example configuration; return its base URL."""
    binary = require_binary("prometheus-alertmanager")
    config = yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log_file = tmp_path / "alertmanager.log"

    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                f"--storage.path={tmp_path / 'data'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(base_url, process, log_file)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"alertmanager exited with {process.returncode}:\n{log_file.read_text()}")
        try:
            with urllib.request.urlopen(f"{base_url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    pytest.fail(f"alertmanager not ready after {STARTUP_TIMEOUT_SECONDS}s:\n{log_file.read_text()}")


def post_alerts(base_url: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(
        f"{base_url}/api/v2/alerts", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def fetch_inhibited(base_url: str, expected_count: int) -> dict[frozenset[tuple[str, str]], bool]:
    """Return each listed alert's label set mapped to whether it is inhibited.

    Alertmanager fills its inhibition cache from posted alerts asynchronously, so the list is read
    again until it contains `expected_count` alerts and stops changing.
    """
    deadline = time.monotonic() + 5
    previous: dict[frozenset[tuple[str, str]], bool] | None = None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base_url}/api/v2/alerts", timeout=5) as response:
            listed = json.load(response)
        current = {frozenset(item["labels"].items()): bool(item["status"]["inhibitedBy"]) for item in listed}
        if len(current) == expected_count and current == previous:
            return current
        previous = current
        time.sleep(0.3)
    pytest.fail(f"alertmanager listed {previous}, expected {expected_count} alerts")


def is_inhibited(inhibited: dict[frozenset[tuple[str, str]], bool], labels: dict[str, str]) -> bool:
    return inhibited[frozenset(labels.items())]


def alert(alertname: str, severity: str, **labels: str) -> dict[str, str]:
    return {"alertname": alertname, "severity": severity, **labels}


def test_alertmanager_config_passes_amtool_check() -> None:
    amtool = require_binary("amtool")

    result = subprocess.run([amtool, "check-config", str(CONFIG_FILE)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (alert("CmlWorkerStuckUnavailable", "critical", worker="a"), "cml-pager"),
        (alert("CmlExporterDown", "critical", instance="127.0.0.1:9877"), "cml-pager"),
        (alert("CmlWorkerUnavailable", "warning", worker="a"), "cml-ticket"),
        (alert("CmlExporterConfigReloadFailed", "warning", instance="127.0.0.1:9877"), "cml-ticket"),
    ],
    ids=["critical-worker", "critical-exporter", "warning-worker", "warning-exporter"],
)
def test_alertmanager_routes_by_severity(labels: dict[str, str], receiver: str) -> None:
    amtool = require_binary("amtool")
    label_args = [f"{name}={value}" for name, value in labels.items()]

    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG_FILE}", *label_args],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_unavailable_worker_mutes_its_own_alerts(alertmanager_url: str) -> None:
    source = alert("CmlWorkerUnavailable", "warning", worker="a")
    muted = [
        alert("CmlWorkerNotReady", "warning", worker="a"),
        alert("CmlLicenseNotRegistered", "warning", worker="a"),
        alert("CmlEndpointFailing", "warning", worker="a", endpoint="licensing"),
        alert("CmlWorkerLoginFailing", "warning", worker="a"),
        alert("CmlEndpointBreakerOpen", "warning", worker="a", endpoint="system_health"),
    ]
    other_worker = alert("CmlWorkerNotReady", "warning", worker="b")

    post_alerts(alertmanager_url, [source, *muted, other_worker])
    inhibited = fetch_inhibited(alertmanager_url, expected_count=7)

    for labels in muted:
        assert is_inhibited(inhibited, labels), f"{labels['alertname']} of worker a is not muted"
    assert not is_inhibited(inhibited, source)
    assert not is_inhibited(inhibited, other_worker)


def test_exporter_down_mutes_all_worker_alerts(alertmanager_url: str) -> None:
    source = alert("CmlExporterDown", "critical", job="cml-exporter", instance="127.0.0.1:9877")
    muted = [
        alert("CmlWorkerStuckNotReady", "critical", worker="a"),
        alert("CmlWorkerUnavailable", "warning", worker="b"),
        alert("CmlProbeTargetDown", "warning", worker="c", instance="c"),
    ]
    exporter_alert = alert("CmlExporterConfigReloadFailed", "warning", instance="127.0.0.1:9877")

    post_alerts(alertmanager_url, [source, *muted, exporter_alert])
    inhibited = fetch_inhibited(alertmanager_url, expected_count=5)

    for labels in muted:
        assert is_inhibited(inhibited, labels), f"{labels['alertname']} of worker {labels['worker']} is not muted"
    assert not is_inhibited(inhibited, source)
    assert not is_inhibited(inhibited, exporter_alert)


def test_login_failure_mutes_endpoint_alerts_of_same_worker(alertmanager_url: str) -> None:
    source = alert("CmlWorkerLoginFailing", "warning", worker="a")
    same_worker = alert("CmlEndpointFailing", "warning", worker="a", endpoint="system_health")
    other_worker = alert("CmlEndpointFailing", "warning", worker="b", endpoint="system_health")

    post_alerts(alertmanager_url, [source, same_worker, other_worker])
    inhibited = fetch_inhibited(alertmanager_url, expected_count=3)

    assert is_inhibited(inhibited, same_worker)
    assert not is_inhibited(inhibited, other_worker)
    assert not is_inhibited(inhibited, source)


def test_critical_disk_alert_mutes_warning_of_same_host(alertmanager_url: str) -> None:
    critical = alert("CmlComputeDiskNearlyFull", "critical", worker="a", compute="c1")
    warning = alert("CmlComputeDiskNearlyFull", "warning", worker="a", compute="c1")
    other_host = alert("CmlComputeDiskNearlyFull", "warning", worker="a", compute="c2")

    post_alerts(alertmanager_url, [critical, warning, other_host])
    inhibited = fetch_inhibited(alertmanager_url, expected_count=3)

    assert is_inhibited(inhibited, warning)
    assert not is_inhibited(inhibited, other_host)
    assert not is_inhibited(inhibited, critical)
