"""The landing page: the workers with their status, latest probe and failure reasons, as plain HTML."""

from __future__ import annotations

import html
import time
from urllib.parse import quote, urlsplit

from exporter import __version__
from exporter.labels import clean_label
from exporter.snapshot import ENDPOINTS, WorkerSnapshot

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    ".available{color:#1a7f37}.unavailable{color:#cf222e}.error{color:#9a6700}"
)


def _age(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    return f"{max(0.0, now - timestamp):.0f}s ago"


def _worker_row(snapshot: WorkerSnapshot, url: str, now: float) -> str:
    name = html.escape(snapshot.worker)
    failures = []
    for endpoint in ENDPOINTS:
        state = snapshot.endpoints[endpoint]
        attempt = state.attempt
        if attempt is not None and not attempt.ok:
            failures.append(f"{endpoint}: {attempt.reason} ({html.escape(clean_label(attempt.message, '-'))})")
    last_probe = max((s.attempt.at for s in snapshot.endpoints.values() if s.attempt is not None), default=None)
    status = snapshot.status if last_probe is not None else "not probed yet"
    information = snapshot.information
    version = clean_label(information.version if information is not None else None)
    return (
        f"<tr><td><a href='probe?target={quote(snapshot.worker)}'>{name}</a></td>"
        f"<td>{html.escape(url)}</td>"
        f"<td class='{snapshot.status}'>{status}</td>"
        f"<td>{'yes' if snapshot.ready else 'no'}</td>"
        f"<td>{html.escape(version)}</td>"
        f"<td>{_age(last_probe, now)}</td>"
        f"<td>{'<br>'.join(failures) or '-'}</td></tr>"
    )


def render_landing(snapshots: list[WorkerSnapshot], urls: dict[str, str]) -> str:
    """Render the landing page; worker URLs are shown as scheme://host:port only."""
    now = time.time()
    rows = []
    for snapshot in snapshots:
        parts = urlsplit(urls.get(snapshot.worker, ""))
        rows.append(_worker_row(snapshot, f"{parts.scheme}://{parts.netloc}{parts.path}", now))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>cml-exporter</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>cml-exporter {html.escape(__version__)}</h1>"
        "<p><a href='metrics'>Metrics</a> · <a href='sd'>Service discovery</a> · "
        "<a href='-/healthy'>Health</a></p>"
        f"<h2>Workers ({len(snapshots)})</h2>"
        "<table><tr><th>Worker</th><th>URL</th><th>Status</th><th>Ready</th><th>Version</th>"
        "<th>Latest probe</th><th>Failing endpoints</th></tr>"
        + "".join(rows)
        + "</table><p>The status shown is from cached results; it does not start a probe.</p></body></html>"
    )
