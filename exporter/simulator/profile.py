"""Profile of one simulated CML controller: version, licence, account, labs, computes and boot timeline."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

VERSIONS = ("2.7", "2.8", "2.9", "2.10")
LICENCES = ("registered", "unregistered", "failed", "reservation", "out_of_compliance")
LAB_STATES = ("DEFINED_ON_CORE", "STOPPED", "STARTED")
NODE_STATES = ("DEFINED_ON_CORE", "STOPPED", "STARTED", "QUEUED", "BOOTED", "DISCONNECTED")
ACTIVE_NODE_STATES = frozenset({"STARTED", "QUEUED", "BOOTED"})
ADMISSION_STATES = ("UNREGISTERED", "REGISTERED", "ONLINE", "READY")

DEFAULT_VERSION_STRINGS = {
    "2.7": "2.7.2+build.4",
    "2.8": "2.8.1+build.6",
    "2.9": "2.9.1+build.12",
    "2.10": "2.10.0+build.31",
}

# The user id of "admin" in the fixture bodies, so default tokens and lab owners match them.
ADMIN_USER_ID = "3d8b5ec5-6993-4215-9447-d3f4e11b8de1"
_ID_NAMESPACE = uuid.UUID("6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f")

# "default" keeps the expiry timestamp that the licence profile's own body carries.
Expiry = str | None | Literal["default"]


def derived_id(*parts: object) -> str:
    """Return a stable UUID for the given parts, so generated data is the same on every run."""
    # uuid.uuid5 cannot hash lone surrogates, which tests put into names on purpose.
    name = "\x1f".join(str(part) for part in parts).encode("utf-8", "surrogatepass")
    digest = hashlib.sha1(_ID_NAMESPACE.bytes + name, usedforsecurity=False).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def user_id(username: str) -> str:
    """Return the user UUID that the simulator reports for ``username``."""
    if username == "admin":
        return ADMIN_USER_ID
    return derived_id("user", username)


def load_template(name: str) -> Any:
    """Return a fresh copy of the JSON body stored as ``data/<name>.json``."""
    return json.loads(_template_text(name))


@cache
def _template_text(name: str) -> str:
    return resources.files("exporter.simulator").joinpath("data").joinpath(f"{name}.json").read_text(encoding="utf-8")


@dataclass(frozen=True)
class BootTimeline:
    """Seconds spent in each boot phase, counted from start(), set_boot() or reboot().

    A controller is first unreachable (``refused``), then returns 502 from nginx (``bad_gateway``),
    then serves the API with ``ready: false`` (``not_ready``), and is ready after that.
    """

    refused: float = 0
    bad_gateway: float = 0
    not_ready: float = 0


@dataclass(frozen=True)
class NodeSpec:
    """One lab node; ``compute_id`` None spreads it over the computes by CPU count."""

    state: str
    label: str | None = None
    id: str | None = None
    node_definition: str = "iosv"
    image_definition: str | None = None
    cpus: int | None = None
    ram: int | None = None
    x: int = 0
    y: int = 0


@dataclass(frozen=True)
class LinkSpec:
    """One link between two nodes of a lab, given by their positions in ``LabSpec.nodes``."""

    node_a: int
    node_b: int
    state: str = "DEFINED_ON_CORE"
    id: str | None = None


@dataclass(frozen=True)
class LabSpec:
    """One lab.

    ``nodes`` takes node states or NodeSpec objects. ``links`` None links the nodes in a chain.
    ``shared`` None means shared when ``groups`` is not empty; a non-admin can list shared labs of
    other users only with ``show_all=true``.
    """

    title: str
    owner_username: str = "admin"
    state: str = "DEFINED_ON_CORE"
    nodes: tuple[str | NodeSpec, ...] | list[str | NodeSpec] = ()
    id: str | None = None
    owner_fullname: str = ""
    owner_id: str | None = None
    description: str = ""
    notes: str = ""
    created: str = "2026-01-05T09:00:00+00:00"
    modified: str = "2026-01-05T09:00:00+00:00"
    groups: tuple[dict[str, str], ...] | list[dict[str, str]] = ()
    links: tuple[LinkSpec, ...] | list[LinkSpec] | None = None
    shared: bool | None = None

    @property
    def lab_id(self) -> str:
        return self.id or derived_id("lab", self.title, self.owner_username)

    @property
    def owner_user_id(self) -> str:
        return self.owner_id or user_id(self.owner_username)

    @property
    def is_shared(self) -> bool:
        return bool(self.groups) if self.shared is None else self.shared

    def node_specs(self) -> list[NodeSpec]:
        return [NodeSpec(state=node) if isinstance(node, str) else node for node in self.nodes]

    def link_specs(self) -> list[LinkSpec]:
        if self.links is not None:
            return list(self.links)
        nodes = self.node_specs()
        return [LinkSpec(i, i + 1, _link_state(nodes[i].state, nodes[i + 1].state)) for i in range(len(nodes) - 1)]


def _link_state(state_a: str, state_b: str) -> str:
    if state_a in ACTIVE_NODE_STATES and state_b in ACTIVE_NODE_STATES:
        return "STARTED"
    if "DEFINED_ON_CORE" in (state_a, state_b):
        return "DEFINED_ON_CORE"
    return "STOPPED"


@dataclass(frozen=True)
class ComputeSpec:
    """One compute host; memory and disk are in bytes, ``allocated_memory`` in KiB as CML reports it."""

    hostname: str
    id: str | None = None
    is_controller: bool = False
    admission_state: str = "READY"
    valid: bool = True
    cpu_count: int = 16
    cpu_percent: float = 10.0
    cpu_model: str = "Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz"
    cpu_load: tuple[float, ...] = (1.0, 1.0, 1.0)
    cpu_predicted: int = 2
    memory_used: float = 8 * 2**30
    memory_free: float | None = None
    memory_total: float = 64 * 2**30
    disk_used: float = 100 * 2**30
    disk_free: float | None = None
    disk_total: float = 500 * 2**30
    allocated_cpus: int = 0
    allocated_memory: int = 0
    # The controller's own disk in system_stats "controller"; None repeats disk_used.
    controller_disk_used: float | None = None

    @property
    def compute_id(self) -> str:
        return self.id or derived_id("compute", self.hostname)


def _default_labs() -> list[LabSpec]:
    """Rebuild the four fixture labs from populate_lab_tiles.json, ids and all."""
    tiles = load_template("populate_lab_tiles")["lab_tiles"]
    return [_lab_from_tile(tile) for tile in tiles.values()]


def _lab_from_tile(tile: dict[str, Any]) -> LabSpec:
    nodes = tile["topology"]["nodes"]
    position = {node["id"]: index for index, node in enumerate(nodes)}
    return LabSpec(
        title=tile["lab_title"],
        owner_username=tile["owner_username"],
        state=tile["state"],
        nodes=tuple(
            NodeSpec(
                state=node["state"],
                label=node["label"],
                id=node["id"],
                node_definition=node["node_definition"],
                image_definition=node["image_definition"],
                cpus=node["cpus"],
                ram=node["ram"],
                x=node["x"],
                y=node["y"],
            )
            for node in nodes
        ),
        id=tile["id"],
        owner_fullname=tile["owner_fullname"],
        owner_id=tile["owner"],
        description=tile["lab_description"],
        notes=tile["lab_notes"],
        created=tile["created"],
        modified=tile["modified"],
        groups=tuple(tile["groups"]),
        links=tuple(
            LinkSpec(position[link["node_a"]], position[link["node_b"]], link["state"], link["id"])
            for link in tile["topology"]["links"]
        ),
    )


def _default_computes() -> list[ComputeSpec]:
    """Rebuild the two fixture computes from system_stats.2.9.json and system_health.2.9.json."""
    body = load_template("system_stats.2.9")
    stats = body["computes"]
    computes = []
    for compute_id, entry in stats.items():
        cpu, memory, disk = entry["stats"]["cpu"], entry["stats"]["memory"], entry["stats"]["disk"]
        dominfo = entry["stats"]["dominfo"]
        computes.append(
            ComputeSpec(
                hostname=entry["hostname"],
                id=compute_id,
                is_controller=entry["is_controller"],
                cpu_count=cpu["count"],
                cpu_percent=cpu["percent"],
                cpu_model=cpu["model"],
                cpu_load=tuple(cpu["load"]),
                cpu_predicted=cpu["predicted"],
                memory_used=memory["used"],
                memory_free=memory["free"],
                memory_total=memory["total"],
                disk_used=disk["used"],
                disk_free=disk["free"],
                disk_total=disk["total"],
                allocated_cpus=dominfo["allocated_cpus"],
                allocated_memory=dominfo["allocated_memory"],
                controller_disk_used=body["controller"]["disk"]["used"] if entry["is_controller"] else None,
            )
        )
    return computes


@dataclass(frozen=True)
class WorkerProfile:
    """The data one simulated controller serves; the defaults are a healthy 2.9 controller.

    ``licence`` selects the /licensing body: registered, unregistered, failed, reservation, or
    out_of_compliance (registered, with authorization status OUT_OF_COMPLIANCE). Only
    "registered" reports ``is_licensed: true`` in /system_health. ``admin`` False makes
    /licensing answer 403 and limits the lab lists to the user's own and shared labs.
    Profiles are immutable: change a running worker with ``Simulator.set_profile`` and
    ``dataclasses.replace``.
    """

    version: str = "2.9"
    version_string: str | None = None
    licence: str = "registered"
    registration_expires: Expiry = "default"
    authorization_expires: Expiry = "default"
    admin: bool = True
    username: str = "admin"
    password: str = "admin-password"
    token_ttl: float = 86400
    labs: tuple[LabSpec, ...] | list[LabSpec] = field(default_factory=_default_labs)
    computes: tuple[ComputeSpec, ...] | list[ComputeSpec] = field(default_factory=_default_computes)
    populate_lab_tiles: bool = True
    boot: BootTimeline = field(default_factory=BootTimeline)

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            msg = f"profile version {self.version!r} is not supported; expected one of {', '.join(VERSIONS)}"
            raise ValueError(msg)
        if self.licence not in LICENCES:
            msg = f"profile licence {self.licence!r} is not supported; expected one of {', '.join(LICENCES)}"
            raise ValueError(msg)
        lab_ids = [lab.lab_id for lab in self.labs]
        if len(set(lab_ids)) != len(lab_ids):
            msg = "profile labs have duplicate ids; give each lab a unique title and owner, or an id"
            raise ValueError(msg)

    @property
    def reported_version(self) -> str:
        return self.version_string if self.version_string is not None else DEFAULT_VERSION_STRINGS[self.version]

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.version.split(".")
        return int(major), int(minor)


def generate_labs(
    count: int,
    *,
    nodes_per_lab: int = 5,
    owners: tuple[str, ...] | list[str] = ("admin", "alice", "bob"),
    states: tuple[str, ...] | list[str] = ("STARTED", "STOPPED", "DEFINED_ON_CORE"),
    title_prefix: str = "Generated lab",
) -> list[LabSpec]:
    """Generate ``count`` labs with stable ids for large fleets.

    Lab states and owners rotate through ``states`` and ``owners``. A STARTED lab has its nodes
    BOOTED except the last, which is QUEUED; other labs have every node in the lab's state.
    """
    labs = []
    for index in range(count):
        state = states[index % len(states)]
        if state == "STARTED" and nodes_per_lab:
            nodes = ["BOOTED"] * (nodes_per_lab - 1) + ["QUEUED"]
        else:
            nodes = [state] * nodes_per_lab
        labs.append(
            LabSpec(
                title=f"{title_prefix} {index + 1:05d}",
                owner_username=owners[index % len(owners)],
                state=state,
                nodes=tuple(nodes),
                id=derived_id("generated-lab", title_prefix, index),
            )
        )
    return labs
