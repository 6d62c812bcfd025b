"""How a simulated worker answers one CML API request: routing, authentication, faults and writing."""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web

from exporter.simulator.faults import Fault, apply_values, encode_with_raw
from exporter.simulator.profile import load_template, user_id
from exporter.simulator.worker import WorkerState

JSON_TYPE = "application/json"
HTML_TYPE = "text/html"

_SIMPLE_PATHS = {
    "authenticate": "authenticate",
    "authok": "authok",
    "authentication": "authentication",
    "system_information": "system_information",
    "system_health": "system_health",
    "system_stats": "system_stats",
    "licensing": "licensing",
    "populate_lab_tiles": "populate_lab_tiles",
    "labs": "labs",
}
_LAB_SUBPATHS = {"": "lab", "state": "lab_state", "lab_element_state": "lab_element_state"}


class ConnectionDropped(Exception):
    """Raised after a handler closed the connection without sending a response."""


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] | None = None


def classify(path: str) -> tuple[str, str | None]:
    """Return the endpoint name and lab id for a path relative to the worker's base URL."""
    if not path.startswith("/api/v0/"):
        return "other", None
    rest = path[len("/api/v0/") :].rstrip("/")
    if rest in _SIMPLE_PATHS:
        return _SIMPLE_PATHS[rest], None
    parts = rest.split("/")
    if parts[0] == "labs" and len(parts) in (2, 3) and parts[1]:
        endpoint = _LAB_SUBPATHS.get(parts[2] if len(parts) == 3 else "")
        if endpoint is not None:
            return endpoint, parts[1]
    return "other", None


def error_answer(status: int, description: str | None = None) -> Answer:
    """Return CML's error body for ``status``, or nginx's HTML page for 502, 503 and 504."""
    if status in (502, 503, 504):
        return Answer(status, nginx_page(status), HTML_TYPE)
    if description is None:
        description = {
            401: load_template("error.401")["description"],
            403: load_template("error.403")["description"],
        }.get(status) or _phrase(status)
    return Answer(status, json.dumps({"code": status, "description": description}).encode())


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def nginx_page(status: int) -> bytes:
    title = f"{status} {_phrase(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def drop_connection(request: web.BaseRequest) -> NoReturn:
    """Close the connection without a response, as a host whose service is down would."""
    if request.transport is not None:
        request.transport.close()
    raise ConnectionDropped


async def pause(seconds: float, stopping: asyncio.Event) -> bool:
    """Sleep ``seconds``; return True at once if the simulator is stopping."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True


def bearer_token(request: web.BaseRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def answer_endpoint(worker: WorkerState, request: web.BaseRequest, endpoint: str, lab_id: str | None) -> Answer:
    """Return the answer a healthy controller in the worker's boot phase gives."""
    if endpoint == "other":
        return error_answer(404, f"Not found: {request.path}")
    expected_method = "POST" if endpoint == "authenticate" else "GET"
    if request.method != expected_method:
        return error_answer(405, f"Method {request.method} is not allowed here; expected {expected_method}")
    if endpoint == "authenticate":
        return await _authenticate(worker, request)
    if endpoint == "system_information":
        ready = worker.phase() == "ready"
        return Answer(200, worker.bodies.encoded("system_information", ready=ready))
    if endpoint == "authentication" and worker.profile.version_tuple < (2, 10):
        return error_answer(404, f"Not found: {request.path}")
    token = bearer_token(request)
    if token is None or not worker.tokens.is_valid(token):
        return error_answer(401)
    return _authorised_answer(worker, request, endpoint, lab_id)


async def _authenticate(worker: WorkerState, request: web.BaseRequest) -> Answer:
    profile = worker.profile
    try:
        credentials = await request.json()
    except ValueError:
        return error_answer(400, "Bad input: the body is not JSON")
    if not isinstance(credentials, dict):
        return error_answer(400, "Bad input: expected an object with username and password")
    if credentials.get("username") != profile.username or credentials.get("password") != profile.password:
        return error_answer(403, load_template("error.403.authenticate")["description"])
    token = worker.tokens.issue(user_id(profile.username), profile.token_ttl)
    return Answer(200, json.dumps(token).encode())


def _authorised_answer(worker: WorkerState, request: web.BaseRequest, endpoint: str, lab_id: str | None) -> Answer:
    profile, bodies = worker.profile, worker.bodies
    ready = worker.phase() == "ready"
    if endpoint == "authok":
        return Answer(200, b'"OK"')
    if endpoint == "authentication":
        body = {"id": user_id(profile.username), "username": profile.username, "admin": profile.admin}
        return Answer(200, json.dumps(body).encode())
    if endpoint in ("system_health", "system_stats"):
        return Answer(200, bodies.encoded(endpoint, ready=ready))
    if endpoint == "licensing":
        return Answer(200, bodies.encoded("licensing")) if profile.admin else error_answer(403)
    if endpoint == "populate_lab_tiles":
        if not profile.populate_lab_tiles:
            return error_answer(404, f"Not found: {request.path}")
        return Answer(200, bodies.encoded("populate_lab_tiles"))
    if endpoint == "labs":
        show_all = request.query.get("show_all", "").lower() == "true"
        return Answer(200, bodies.labs_list(show_all=show_all))
    return _lab_answer(worker, endpoint, lab_id or "")


def _lab_answer(worker: WorkerState, endpoint: str, lab_id: str) -> Answer:
    lab = worker.bodies.labs_by_id.get(lab_id)
    if lab is None:
        return error_answer(404, f"Lab not found: {lab_id}")
    if not worker.bodies.can_view(lab):
        return error_answer(403)
    if endpoint == "lab":
        return Answer(200, worker.bodies.lab(lab_id))
    if endpoint == "lab_state":
        return Answer(200, json.dumps(lab.state).encode())
    return Answer(200, worker.bodies.lab_element_state(lab))


async def apply_fault_before(
    fault: Fault, request: web.BaseRequest, base_path: str, stopping: asyncio.Event
) -> Answer | None:
    """Apply the faults that replace the answer; return that answer, or None to answer normally."""
    if fault.latency and await pause(fault.latency, stopping):
        drop_connection(request)
    if fault.refuse:
        drop_connection(request)
    if fault.hang:
        await stopping.wait()
        drop_connection(request)
    if fault.redirect:
        return Answer(302, b"", HTML_TYPE, {"Location": f"{base_path}/login?next={request.path}"})
    if fault.status is not None:
        answer = error_answer(fault.status)
        if fault.retry_after is not None:
            answer.headers = {"Retry-After": fault.retry_after}
        return answer
    return None


def apply_fault_to_body(fault: Fault, answer: Answer) -> Answer:
    """Change the answer's body as the fault's ``values`` and ``body`` say."""
    if fault.values and answer.content_type == JSON_TYPE and answer.body:
        document: Any = json.loads(answer.body)
        answer.body = encode_with_raw(apply_values(document, dict(fault.values)))
    if isinstance(fault.body, bytes):
        answer.body = fault.body
    elif fault.body == "html":
        answer.body, answer.content_type = (
            b"<!DOCTYPE html><html><head><title>CML</title></head><body></body></html>",
            HTML_TYPE,
        )
    elif fault.body == "empty":
        answer.body = b""
    elif fault.body == "not_json":
        answer.body = b"<not json>{"
    elif fault.body == "null":
        answer.body = b"null"
    elif fault.body == "wrong_shape":
        parsed = json.loads(answer.body) if answer.body else None
        answer.body = b'["unexpected", "shape"]' if isinstance(parsed, dict) else b'{"unexpected": "shape"}'
    return answer


async def write_answer(
    request: web.BaseRequest, answer: Answer, fault: Fault | None, stopping: asyncio.Event
) -> web.StreamResponse:
    """Send the answer, slowly or partly when the fault asks for a stall, a trickle or a truncated body."""
    headers = {"Content-Type": answer.content_type, **(answer.headers or {})}
    streaming = fault is not None and (fault.stall_after is not None or fault.trickle or fault.body == "truncated")
    if not streaming or fault is None:
        return web.Response(status=answer.status, body=answer.body, headers=headers)
    response = web.StreamResponse(status=answer.status, headers=headers)
    response.content_length = len(answer.body)
    # The client giving up (its timeout) while the body is still coming is the usual end of this fault.
    with contextlib.suppress(ConnectionResetError):
        await _write_slowly(request, response, answer, fault, stopping)
    return response


async def _write_slowly(
    request: web.BaseRequest, response: web.StreamResponse, answer: Answer, fault: Fault, stopping: asyncio.Event
) -> None:
    await response.prepare(request)
    limit = len(answer.body)
    if fault.stall_after is not None:
        limit = min(limit, fault.stall_after)
    if fault.body == "truncated":
        limit = min(limit, len(answer.body) // 2)
    if fault.trickle:
        for index in range(limit):
            await response.write(answer.body[index : index + 1])
            if await pause(fault.trickle, stopping):
                drop_connection(request)
    else:
        await response.write(answer.body[:limit])
    if fault.stall_after is not None and limit < len(answer.body):
        await stopping.wait()
        drop_connection(request)
    if limit < len(answer.body):
        drop_connection(request)
    await response.write_eof()
