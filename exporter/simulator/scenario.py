"""Scenario files: a YAML description of a simulated fleet, validated with the key path of every fault."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from exporter.simulator.faults import Fault, decode_marker
from exporter.simulator.profile import (
    LAB_STATES,
    LICENCES,
    NODE_STATES,
    VERSIONS,
    BootTimeline,
    ComputeSpec,
    LabSpec,
    WorkerProfile,
    generate_labs,
)
from exporter.simulator.server import is_loopback
from exporter.simulator.worker import ENDPOINTS

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

_TOP_KEYS = ("listen", "defaults", "workers")
_LISTEN_KEYS = ("host", "port", "allow_non_loopback")
_PROFILE_KEYS = (
    "version",
    "version_string",
    "licence",
    "registration_expires",
    "authorization_expires",
    "admin",
    "username",
    "password",
    "token_ttl",
    "populate_lab_tiles",
    "boot",
    "lab_count",
    "nodes_per_lab",
    "labs",
    "computes",
)
_WORKER_ONLY_KEYS = ("name", "replicas", "port")
_PLACEMENT_KEYS = ("own_port", "tls", "tls_hostname", "faults")
_BOOT_KEYS = ("refused", "bad_gateway", "not_ready")
_LAB_KEYS = ("title", "owner_username", "owner_fullname", "state", "nodes", "description", "shared")
_COMPUTE_KEYS = tuple(item.name for item in fields(ComputeSpec))
_FAULT_KEYS = tuple(item.name for item in fields(Fault))


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the key path of every problem, one per line."""


@dataclass(frozen=True)
class ScenarioWorker:
    name: str
    profile: WorkerProfile
    own_port: bool = False
    tls: bool = False
    tls_hostname: str | None = None
    port: int = 0
    faults: dict[str, Fault] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    host: str = "127.0.0.1"
    port: int = 0
    allow_non_loopback: bool = False
    workers: list[ScenarioWorker] = field(default_factory=list)


def parse_duration(value: Any) -> float:
    """Return seconds for a number or a Prometheus-style duration such as ``500ms``, ``5s``, ``1h30m``.

    Raises:
        ValueError: when the value is neither.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(value)
        return float(value)
    if isinstance(value, str) and value and _DURATION_PART.sub("", value) == "":
        return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))
    raise ValueError(value)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: when the file cannot be read, is not YAML, or has invalid keys or values.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        msg = f"scenario {str(path)!r} cannot be read: {error.strerror or error}"
        raise ScenarioError(msg) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        msg = f"scenario {str(path)!r} is not valid YAML: {error}"
        raise ScenarioError(msg) from error
    return parse_scenario(data)


def parse_scenario(data: Any) -> Scenario:
    """Validate parsed YAML and build a Scenario, reporting every problem at once."""
    parser = _Parser()
    scenario = parser.scenario(data)
    if parser.errors:
        raise ScenarioError("\n".join(parser.errors))
    return scenario


class _Parser:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, problem: str) -> None:
        self.errors.append(f"{path}: {problem}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown key; expected one of {', '.join(allowed)}")
        return {key: item for key, item in value.items() if key in allowed}

    def duration(self, value: Any, path: str) -> float:
        try:
            return parse_duration(value)
        except ValueError:
            self.fail(path, f"invalid duration {value!r}; expected seconds or a string such as 500ms, 5s, 2m, 1h")
            return 0.0

    def typed(self, value: Any, path: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            self.fail(path, f"expected {_kind_name(kind)}, got a boolean")
            return default
        if not isinstance(value, kind):
            self.fail(path, f"expected {_kind_name(kind)}, got {type(value).__name__}")
            return default
        return value

    def choice(self, value: Any, path: str, allowed: tuple[str, ...], default: str) -> str:
        text = str(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        if text not in allowed:
            self.fail(path, f"invalid value {value!r}; expected one of {', '.join(allowed)}")
            return default
        return text

    def scenario(self, data: Any) -> Scenario:
        top = self.mapping(data, "scenario", _TOP_KEYS)
        listen = self.mapping(top.get("listen"), "listen", _LISTEN_KEYS)
        host = self.typed(listen.get("host", "127.0.0.1"), "listen.host", str, "127.0.0.1")
        port = self.typed(listen.get("port", 0), "listen.port", int, 0)
        allow = self.typed(listen.get("allow_non_loopback", False), "listen.allow_non_loopback", bool, False)
        if not allow and not is_loopback(host):
            self.fail("listen.host", f"{host!r} is not a loopback address; set listen.allow_non_loopback: true")
        defaults = self.mapping(top.get("defaults"), "defaults", _PROFILE_KEYS + _PLACEMENT_KEYS)
        workers_data = top.get("workers")
        if not isinstance(workers_data, list) or not workers_data:
            self.fail("workers", "expected a non-empty list of workers")
            workers_data = []
        workers: list[ScenarioWorker] = []
        for index, entry in enumerate(workers_data):
            workers.extend(self.workers(entry, f"workers[{index}]", defaults))
        names = [worker.name for worker in workers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            self.fail("workers", f"duplicate worker names: {', '.join(duplicates)}")
        return Scenario(host, port, allow, workers)

    def workers(self, entry: Any, path: str, defaults: dict[str, Any]) -> list[ScenarioWorker]:
        own = self.mapping(entry, path, _WORKER_ONLY_KEYS + _PROFILE_KEYS + _PLACEMENT_KEYS)
        name = self.typed(own.get("name"), f"{path}.name", str, "")
        if not name or "/" in name:
            if isinstance(own.get("name"), str):
                self.fail(f"{path}.name", "expected a non-empty name without '/'")
            name = name or f"worker-{path}"
        merged = {**defaults, **own}
        profile = self.profile(merged, path, defaults)
        faults = self.faults(own.get("faults", defaults.get("faults")), f"{path}.faults")
        replicas = self.typed(own.get("replicas", 1), f"{path}.replicas", int, 1)
        if replicas < 1:
            self.fail(f"{path}.replicas", f"invalid value {replicas}; expected at least 1")
        placement = {
            "own_port": self.typed(merged.get("own_port", False), self.where("own_port", path, own), bool, False),
            "tls": self.typed(merged.get("tls", False), self.where("tls", path, own), bool, False),
            "tls_hostname": self.typed(
                merged.get("tls_hostname"), self.where("tls_hostname", path, own), (str, type(None)), None
            ),
            "port": self.typed(own.get("port", 0), f"{path}.port", int, 0),
        }
        if replicas == 1:
            return [ScenarioWorker(name, profile, faults=faults, **placement)]
        if placement["port"]:
            self.fail(f"{path}.port", "a fixed port cannot be shared by replicas; remove port or replicas")
        width = len(str(replicas))
        return [
            ScenarioWorker(f"{name}-{number:0{width}d}", profile, faults=faults, **placement)
            for number in range(1, replicas + 1)
        ]

    @staticmethod
    def where(key: str, path: str, own: dict[str, Any]) -> str:
        return f"{path}.{key}" if key in own else f"defaults.{key}"

    def profile(self, merged: dict[str, Any], path: str, defaults: dict[str, Any]) -> WorkerProfile:
        def at(key: str) -> str:
            return f"defaults.{key}" if key in defaults and merged.get(key) is defaults.get(key) else f"{path}.{key}"

        arguments: dict[str, Any] = {}
        if "version" in merged:
            arguments["version"] = self.choice(merged["version"], at("version"), VERSIONS, "2.9")
        if "licence" in merged:
            arguments["licence"] = self.choice(merged["licence"], at("licence"), LICENCES, "registered")
        for key in ("version_string", "username", "password"):
            if key in merged:
                arguments[key] = self.typed(merged[key], at(key), str, "")
        for key in ("registration_expires", "authorization_expires"):
            if key in merged:
                arguments[key] = self.typed(merged[key], at(key), (str, type(None)), None)
        for key in ("admin", "populate_lab_tiles"):
            if key in merged:
                arguments[key] = self.typed(merged[key], at(key), bool, True)
        if "token_ttl" in merged:
            arguments["token_ttl"] = self.duration(merged["token_ttl"], at("token_ttl"))
        if "boot" in merged:
            boot = self.mapping(merged["boot"], at("boot"), _BOOT_KEYS)
            arguments["boot"] = BootTimeline(**{k: self.duration(v, f"{at('boot')}.{k}") for k, v in boot.items()})
        labs = self.labs(merged, at)
        if labs is not None:
            arguments["labs"] = labs
        if "computes" in merged:
            arguments["computes"] = self.computes(merged["computes"], at("computes"))
        try:
            return WorkerProfile(**arguments)
        except (TypeError, ValueError) as error:
            self.fail(path, str(error))
            return WorkerProfile()

    def labs(self, merged: dict[str, Any], at: Any) -> list[LabSpec] | None:
        if "labs" in merged and "lab_count" in merged:
            self.fail(at("labs"), "give either labs or lab_count, not both")
        if "lab_count" in merged:
            count = self.typed(merged["lab_count"], at("lab_count"), int, 0)
            nodes = self.typed(merged.get("nodes_per_lab", 5), at("nodes_per_lab"), int, 5)
            return generate_labs(max(count, 0), nodes_per_lab=max(nodes, 0))
        if "labs" not in merged:
            return None
        entries = merged["labs"]
        if not isinstance(entries, list):
            self.fail(at("labs"), f"expected a list of labs, got {type(entries).__name__}")
            return None
        labs = []
        for index, entry in enumerate(entries):
            path = f"{at('labs')}[{index}]"
            spec = self.mapping(entry, path, _LAB_KEYS)
            nodes = spec.get("nodes", [])
            if not isinstance(nodes, list):
                self.fail(f"{path}.nodes", "expected a list of node states")
                nodes = []
            for node_index, state in enumerate(nodes):
                self.choice(state, f"{path}.nodes[{node_index}]", NODE_STATES, "STOPPED")
            if "state" in spec:
                spec["state"] = self.choice(spec["state"], f"{path}.state", LAB_STATES, "STOPPED")
            spec["nodes"] = tuple(str(state) for state in nodes)
            if "title" not in spec:
                self.fail(f"{path}.title", "missing; every lab needs a title")
                spec["title"] = f"lab {index}"
            labs.append(LabSpec(**spec))
        return labs

    def computes(self, entries: Any, path: str) -> list[ComputeSpec]:
        if not isinstance(entries, list) or not entries:
            self.fail(path, "expected a non-empty list of computes")
            return []
        computes = []
        for index, entry in enumerate(entries):
            spec = self.mapping(entry, f"{path}[{index}]", _COMPUTE_KEYS)
            if "hostname" not in spec:
                self.fail(f"{path}[{index}].hostname", "missing; every compute needs a hostname")
                spec["hostname"] = f"compute-{index}"
            if "admission_state" in spec:
                spec["admission_state"] = self.choice(
                    spec["admission_state"],
                    f"{path}[{index}].admission_state",
                    ("UNREGISTERED", "REGISTERED", "ONLINE", "READY"),
                    "READY",
                )
            if "cpu_load" in spec and isinstance(spec["cpu_load"], list):
                spec["cpu_load"] = tuple(spec["cpu_load"])
            computes.append(ComputeSpec(**spec))
        return computes

    def faults(self, value: Any, path: str) -> dict[str, Fault]:
        endpoints = ("*", *ENDPOINTS)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping of endpoint to fault, got {type(value).__name__}")
            return {}
        faults = {}
        for endpoint, spec in value.items():
            where = f"{path}.{endpoint}"
            if endpoint not in endpoints:
                self.fail(where, f"unknown endpoint; expected one of {', '.join(endpoints)}")
                continue
            fields_ = self.mapping(spec, where, _FAULT_KEYS)
            for key in ("latency", "trickle"):
                if key in fields_:
                    fields_[key] = self.duration(fields_[key], f"{where}.{key}")
            if "retry_after" in fields_:
                fields_["retry_after"] = str(fields_["retry_after"])
            if isinstance(fields_.get("values"), dict):
                fields_["values"] = {key: decode_marker(item) for key, item in fields_["values"].items()}
            try:
                faults[endpoint] = Fault(**fields_)
            except (TypeError, ValueError) as error:
                self.fail(where, str(error))
        return faults


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {bool: "a boolean", int: "an integer", str: "a string", float: "a number", type(None): "null"}
    return " or ".join(names.get(item, item.__name__) for item in kinds)
