"""The ``/_sim`` control endpoint on the shared listener: counters, faults and boot phases over HTTP.

Routes:
    GET    /_sim/counts                              {worker: {endpoint: n}}
    POST   /_sim/reset                               zero the counters and the request log
    PUT    /_sim/workers/{name}/faults/{endpoint}    body: Fault fields as JSON
    DELETE /_sim/workers/{name}/faults/{endpoint}    clear that fault
    POST   /_sim/workers/{name}/boot                 body: {"phase": ...} or {"reboot": true}
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.simulator.faults import Fault

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(status, {"error": message})


async def _read_object(request: web.BaseRequest) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "request body is not valid JSON; expected an object")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object")
    return body


async def handle(sim: Simulator, request: web.BaseRequest) -> web.StreamResponse:
    """Serve one control request."""
    parts = request.path.strip("/").split("/")[1:]
    method = request.method
    if parts == ["counts"] and method == "GET":
        return _json(200, sim.all_counts())
    if parts == ["reset"] and method == "POST":
        sim.reset_counters()
        return _json(200, {"reset": True})
    if len(parts) >= 3 and parts[0] == "workers":
        if parts[1] not in sim.workers:
            return _error(404, f"worker {parts[1]!r} is unknown")
        return await _handle_worker(sim, request, parts[1], parts[2:])
    return _error(404, f"{method} {request.path} is not a control route; see GET /_sim/counts")


async def _handle_worker(sim: Simulator, request: web.BaseRequest, name: str, parts: list[str]) -> web.Response:
    method = request.method
    if len(parts) == 2 and parts[0] == "faults" and method in ("PUT", "DELETE"):
        endpoint = parts[1]
        if method == "DELETE":
            fault = None
        else:
            body = await _read_object(request)
            if isinstance(body, web.Response):
                return body
            try:
                fault = Fault.from_json(body)
            except (TypeError, ValueError) as error:
                return _error(400, str(error))
        try:
            sim.set_fault(name, endpoint, fault)
        except ValueError as error:
            return _error(400, str(error))
        return _json(200, {"worker": name, "endpoint": endpoint, "fault": None if fault is None else body})
    if parts == ["boot"] and method == "POST":
        body = await _read_object(request)
        if isinstance(body, web.Response):
            return body
        try:
            if body.get("reboot") is True:
                sim.reboot(name)
            else:
                sim.set_boot(name, str(body.get("phase")))
        except ValueError as error:
            return _error(400, str(error))
        return _json(200, {"worker": name, "phase": sim.boot_phase(name)})
    return _error(404, f"{method} {request.path} is not a control route")
