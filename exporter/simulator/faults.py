"""Faults a simulated worker can inject per endpoint, and the value overrides that corrupt a body."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, fields
from typing import Any

BODY_FAULTS = ("html", "empty", "truncated", "wrong_shape", "not_json", "null")


@dataclass(frozen=True)
class RawJSON:
    """A JSON token written into a body verbatim, such as ``1e400`` or ``NaN``, that json.dumps cannot produce."""

    text: str


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


# A value override that removes the field instead of changing it.
DELETE: Any = _Delete()


@dataclass(frozen=True)
class Fault:
    """What one endpoint of a worker does wrong; every field is optional and they combine.

    Applied in this order: ``latency`` (seconds before anything else), then ``refuse`` (close the
    connection), ``hang`` (read the request and never answer), ``redirect`` (302 to a login page),
    ``status`` (that HTTP status with CML's error body, or nginx HTML for 502/503/504, plus a
    ``Retry-After`` header when ``retry_after`` is set), then the normal answer with ``values``
    overrides and a ``body`` fault, written with ``stall_after`` or ``trickle``.

    ``body`` is one of html, empty, truncated, wrong_shape, not_json, null, or raw bytes.
    ``values`` maps dotted paths to replacement values, see ``apply_values``.
    """

    latency: float | None = None
    status: int | None = None
    retry_after: str | None = None
    hang: bool = False
    stall_after: int | None = None
    trickle: float | None = None
    body: str | bytes | None = None
    redirect: bool = False
    refuse: bool = False
    values: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.body, str) and self.body not in BODY_FAULTS:
            msg = f"fault body {self.body!r} is not supported; expected one of {', '.join(BODY_FAULTS)} or bytes"
            raise ValueError(msg)
        if self.status is not None and not 100 <= self.status <= 599:
            msg = f"fault status {self.status!r} is not an HTTP status; expected 100..599"
            raise ValueError(msg)
        for name in ("latency", "trickle"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                msg = f"fault {name} {value!r} is invalid; expected a finite number of seconds >= 0"
                raise ValueError(msg)
        if self.stall_after is not None and self.stall_after < 0:
            msg = f"fault stall_after {self.stall_after!r} is invalid; expected a byte count >= 0"
            raise ValueError(msg)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build a Fault from JSON fields; ``{"$raw": "1e400"}`` and ``{"$delete": true}`` mark values.

        Raises:
            ValueError: on an unknown field or an invalid value.
        """
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"unknown fault field {unknown[0]!r}; expected one of {', '.join(sorted(known))}"
            raise ValueError(msg)
        arguments = dict(data)
        if arguments.get("values") is not None:
            if not isinstance(arguments["values"], dict):
                msg = "fault values must be a mapping of dotted paths to values"
                raise ValueError(msg)
            arguments["values"] = {path: decode_marker(value) for path, value in arguments["values"].items()}
        return cls(**arguments)


def decode_marker(value: Any) -> Any:
    """Turn the JSON spellings ``{"$raw": TEXT}`` and ``{"$delete": true}`` into RawJSON and DELETE."""
    if isinstance(value, dict) and set(value) == {"$raw"} and isinstance(value["$raw"], str):
        return RawJSON(value["$raw"])
    if isinstance(value, dict) and value == {"$delete": True}:
        return DELETE
    return value


def apply_values(document: Any, overrides: dict[str, Any]) -> Any:
    """Apply ``overrides`` to a parsed body in place and return it.

    A path is a dotted list of keys, where ``*`` matches every key of an object or item of a list
    and a number indexes a list. A path is tried from the root first. If it matches nothing there,
    it is applied at every depth where it matches, so ``stats.cpu.percent`` reaches every compute
    of /system_stats. A path that matches nowhere is created from the root. An empty path replaces
    the whole body.
    """
    for path, value in overrides.items():
        parts = path.split(".") if path else []
        if not parts:
            document = value
            continue
        if _set_path(document, parts, value):
            continue
        if not _set_anywhere(document, parts, value) and isinstance(document, dict):
            _create_path(document, parts, value)
    return document


def _children(node: Any, part: str) -> list[tuple[Any, Any]]:
    """Return (container, key) pairs that ``part`` selects in ``node``."""
    if isinstance(node, dict):
        if part == "*":
            return [(node, key) for key in node]
        return [(node, part)] if part in node else []
    if isinstance(node, list):
        if part == "*":
            return [(node, index) for index in range(len(node))]
        if part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            return [(node, int(part))]
    return []


def _set_path(node: Any, parts: list[str], value: Any) -> bool:
    matched = False
    for container, key in _children(node, parts[0]):
        if len(parts) == 1:
            if value is DELETE:
                del container[key]
            else:
                container[key] = value
            matched = True
        else:
            matched = _set_path(container[key], parts[1:], value) or matched
    return matched


def _set_anywhere(node: Any, parts: list[str], value: Any) -> bool:
    if isinstance(node, dict):
        children = list(node.values())
    elif isinstance(node, list):
        children = list(node)
    else:
        return False
    matched = False
    for child in children:
        matched = _set_path(child, parts, value) or _set_anywhere(child, parts, value) or matched
    return matched


def _create_path(document: dict[str, Any], parts: list[str], value: Any) -> None:
    if value is DELETE:
        return
    node = document
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def encode_with_raw(document: Any) -> bytes:
    """Encode a body, writing RawJSON values verbatim and floats such as NaN as the bare tokens NaN/Infinity."""
    raw_tokens: dict[str, str] = {}
    marker = uuid.uuid4().hex

    def placeholder(value: Any) -> Any:
        if isinstance(value, RawJSON):
            key = f"{marker}{len(raw_tokens)}"
            raw_tokens[key] = value.text
            return key
        msg = f"value {value!r} is not JSON serialisable"
        raise TypeError(msg)

    text = json.dumps(document, default=placeholder, separators=(", ", ": "))
    for key, raw in raw_tokens.items():
        text = text.replace(f'"{key}"', raw)
    return text.encode("utf-8", "surrogatepass")
