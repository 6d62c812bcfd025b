"""Tolerant parsing of CML response bodies into typed values.

Every field is optional: a missing, null or unusable value becomes None and costs only the series that
depend on it. Only a body of the wrong overall shape (not an object where one is expected) is rejected,
with ValueError naming what was expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LAB_STATES = ("DEFINED_ON_CORE", "STOPPED", "STARTED")
NODE_STATES = ("DEFINED_ON_CORE", "STOPPED", "STARTED", "QUEUED", "BOOTED", "DISCONNECTED")
ADMISSION_STATES = ("UNREGISTERED", "REGISTERED", "ONLINE", "READY")


@dataclass(frozen=True)
class SystemInformation:
    version: str | None = None
    ready: bool | None = None


@dataclass(frozen=True)
class ComputeHealth:
    hostname: str | None = None
    is_controller: bool | None = None
    valid: bool | None = None
    admission_state: str | None = None


@dataclass(frozen=True)
class SystemHealth:
    valid: bool | None = None
    is_licensed: bool | None = None
    is_enterprise: bool | None = None
    controller_valid: bool | None = None
    computes: dict[str, ComputeHealth] = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeStats:
    hostname: str | None = None
    is_controller: bool | None = None
    cpus: float | None = None
    cpu_percent: float | None = None
    memory_used: float | None = None
    memory_total: float | None = None
    disk_used: float | None = None
    disk_total: float | None = None
    running_nodes: float | None = None


@dataclass(frozen=True)
class SystemStats:
    computes: dict[str, ComputeStats] = field(default_factory=dict)

    @property
    def running_nodes(self) -> float | None:
        counts = [compute.running_nodes for compute in self.computes.values() if compute.running_nodes is not None]
        return sum(counts) if counts else None


@dataclass(frozen=True)
class LicenseFeature:
    name: str
    in_use: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class Licensing:
    product: str | None = None
    registration_status: str | None = None
    authorization_status: str | None = None
    registration_expires: float | None = None
    authorization_expires: float | None = None
    features: tuple[LicenseFeature, ...] = ()


@dataclass(frozen=True)
class Lab:
    id: str
    state: str | None = None
    owner: str | None = None
    node_states: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Labs:
    labs: tuple[Lab, ...] = ()


def _object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError(f"expected a JSON object with {what}, got {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None for strings such as "N/A", booleans, NaN and huge values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        # JSON integers have no size limit; one too large for a float is as unusable as Infinity.
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number >= 0 else None


def parse_system_information(body: Any) -> SystemInformation:
    document = _object(body, "version and ready")
    return SystemInformation(version=_string(document.get("version")), ready=_bool(document.get("ready")))


def parse_system_health(body: Any) -> SystemHealth:
    document = _object(body, "valid, computes and controller")
    computes: dict[str, ComputeHealth] = {}
    for compute_id, raw in _mapping(document.get("computes")).items():
        compute = _mapping(raw)
        admission_state = _string(compute.get("admission_state"))
        computes[str(compute_id)] = ComputeHealth(
            hostname=_string(compute.get("hostname")),
            is_controller=_bool(compute.get("is_controller")),
            valid=_bool(compute.get("valid")),
            admission_state=admission_state,
        )
    return SystemHealth(
        valid=_bool(document.get("valid")),
        is_licensed=_bool(document.get("is_licensed")),
        is_enterprise=_bool(document.get("is_enterprise")),
        controller_valid=_bool(_mapping(document.get("controller")).get("valid")),
        computes=computes,
    )


def parse_system_stats(body: Any) -> SystemStats:
    document = _object(body, "computes")
    computes: dict[str, ComputeStats] = {}
    for compute_id, raw in _mapping(document.get("computes")).items():
        compute = _mapping(raw)
        stats = _mapping(compute.get("stats"))
        cpu, memory, disk = _mapping(stats.get("cpu")), _mapping(stats.get("memory")), _mapping(stats.get("disk"))
        percent = _number(cpu.get("percent"))
        computes[str(compute_id)] = ComputeStats(
            hostname=_string(compute.get("hostname")),
            is_controller=_bool(compute.get("is_controller")),
            cpus=_count(cpu.get("count")),
            cpu_percent=percent if percent is not None and 0 <= percent <= 100 * 1024 else None,
            memory_used=_count(memory.get("used")),
            memory_total=_count(memory.get("total")),
            disk_used=_count(disk.get("used")),
            disk_total=_count(disk.get("total")),
            running_nodes=_count(_mapping(stats.get("dominfo")).get("running_nodes")),
        )
    return SystemStats(computes=computes)


_LICENSING_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def _licensing_time(value: Any) -> float | None:
    # CML writes "YYYY-MM-DD HH:MM:SS" with no zone; the controller keeps these in UTC.
    if not isinstance(value, str) or not _LICENSING_TIME.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_licensing(body: Any) -> Licensing:
    document = _object(body, "registration, authorization and features")
    registration = _mapping(document.get("registration"))
    authorization = _mapping(document.get("authorization"))
    features = []
    raw_features = document.get("features")
    for raw in raw_features if isinstance(raw_features, list) else []:
        feature = _mapping(raw)
        name = _string(feature.get("name")) or _string(feature.get("id"))
        if name is None:
            continue
        features.append(LicenseFeature(name, _count(feature.get("in_use")), _count(feature.get("max"))))
    return Licensing(
        product=_string(_mapping(document.get("product_license")).get("active")),
        registration_status=_string(registration.get("status")),
        authorization_status=_string(authorization.get("status")),
        registration_expires=_licensing_time(registration.get("expires")),
        authorization_expires=_licensing_time(authorization.get("expires")),
        features=tuple(features),
    )


def _lab(lab_id: str, raw: Mapping[str, Any], node_states: tuple[str, ...] | None) -> Lab:
    return Lab(
        id=lab_id,
        state=_string(raw.get("state")),
        owner=_string(raw.get("owner_username")) or _string(raw.get("owner")),
        node_states=node_states,
    )


def parse_lab_tiles(body: Any) -> Labs:
    """Parse ``populate_lab_tiles``: every visible lab with its topology."""
    tiles = _object(body, "lab_tiles").get("lab_tiles")
    if not isinstance(tiles, Mapping):
        raise ValueError(f"expected lab_tiles to be an object of labs, got {_json_type(tiles)}")
    labs = []
    for lab_id, raw in tiles.items():
        lab = _mapping(raw)
        nodes = _mapping(lab.get("topology")).get("nodes")
        node_states = None
        if isinstance(nodes, list):
            node_states = tuple(state for node in nodes if (state := _string(_mapping(node).get("state"))))
        labs.append(_lab(str(lab_id), lab, node_states))
    return Labs(tuple(labs))


def parse_lab_ids(body: Any) -> list[str]:
    """Parse ``labs?show_all=true``: a bare list of lab ids."""
    if not isinstance(body, list):
        raise ValueError(f"expected a JSON list of lab ids, got {_json_type(body)}")
    return [lab_id for lab_id in body if isinstance(lab_id, str) and lab_id]


def parse_lab(lab_id: str, body: Any, element_state: Any) -> Lab:
    """Build one lab from ``labs/{id}`` and, when it answered, ``labs/{id}/lab_element_state``."""
    lab = _object(body, "the lab's state")
    node_states = None
    if isinstance(element_state, Mapping) and isinstance(element_state.get("nodes"), Mapping):
        node_states = tuple(state for state in element_state["nodes"].values() if isinstance(state, str) and state)
    return _lab(lab_id, lab, node_states)
