"""Response bodies built from a WorkerProfile, shaped by its CML version and cached per profile."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from exporter.simulator.profile import (
    ACTIVE_NODE_STATES,
    ComputeSpec,
    LabSpec,
    WorkerProfile,
    derived_id,
    load_template,
)

_LICENSING_TEMPLATES = {
    "registered": "licensing.registered",
    "unregistered": "licensing.unregistered",
    "failed": "licensing.failed",
    "reservation": "licensing.reservation",
    "out_of_compliance": "licensing.registered",
}

_COMPUTE_HEALTH_FLAGS = (
    "kvm_vmx_enabled",
    "enough_cpus",
    "lld_connected",
    "lld_synced",
    "libvirt",
    "fabric",
    "device_mux",
    "refplat_images_available",
)

_FULL_PERMISSIONS = ["lab_admin", "lab_edit", "lab_exec", "lab_view"]


def encode(body: Any) -> bytes:
    return json.dumps(body, indent=None, separators=(", ", ": ")).encode()


def apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into integer shares proportional to ``weights`` (largest remainder, ties to the first)."""
    weight_sum = sum(weights)
    if not weights:
        return []
    if weight_sum <= 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    exact = [total * weight / weight_sum for weight in weights]
    shares = [int(value) for value in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


class BodySet:
    """Every body one profile serves, as parsed JSON (for value overrides) and encoded bytes.

    Bodies are built on first use and kept, so a fleet of workers sharing a profile shares one
    set. ``ready`` False gives the boot phase in which the API answers but no compute is READY.
    """

    def __init__(self, profile: WorkerProfile) -> None:
        self.profile = profile
        self._lab_bodies: dict[str, bytes] = {}
        self._encoded: dict[tuple[str, bool], bytes] = {}

    def document(self, endpoint: str, *, ready: bool = True) -> Any:
        """Return a fresh copy of the body of a fixed-body endpoint, for a fault to change."""
        return json.loads(self.encoded(endpoint, ready=ready))

    def encoded(self, endpoint: str, *, ready: bool = True) -> bytes:
        key = (endpoint, ready)
        body = self._encoded.get(key)
        if body is None:
            body = encode(self._build(endpoint, ready))
            self._encoded[key] = body
        return body

    def _build(self, endpoint: str, ready: bool) -> Any:
        if endpoint == "system_information":
            return self._system_information(ready)
        if endpoint == "system_health":
            return self._system_health(ready)
        if endpoint == "system_stats":
            return self._system_stats()
        if endpoint == "licensing":
            return self._licensing()
        if endpoint == "populate_lab_tiles":
            return {"lab_tiles": {lab.lab_id: self._tile(lab) for lab in self.visible_labs(show_all=True)}}
        msg = f"endpoint {endpoint!r} has no fixed body"
        raise KeyError(msg)

    @cached_property
    def labs_by_id(self) -> dict[str, LabSpec]:
        return {lab.lab_id: lab for lab in self.profile.labs}

    def visible_labs(self, *, show_all: bool) -> list[LabSpec]:
        """Return the labs GET /labs lists: own labs, plus with show_all all (admin) or shared ones."""
        username = self.profile.username
        if show_all and self.profile.admin:
            return list(self.profile.labs)
        return [lab for lab in self.profile.labs if lab.owner_username == username or (show_all and lab.is_shared)]

    def can_view(self, lab: LabSpec) -> bool:
        return self.profile.admin or lab.owner_username == self.profile.username or lab.is_shared

    def labs_list(self, *, show_all: bool) -> bytes:
        key = ("labs", show_all)
        body = self._encoded.get(key)
        if body is None:
            body = encode([lab.lab_id for lab in self.visible_labs(show_all=show_all)])
            self._encoded[key] = body
        return body

    def lab(self, lab_id: str) -> bytes:
        body = self._lab_bodies.get(lab_id)
        if body is None:
            body = encode(self._lab_object(self.labs_by_id[lab_id]))
            self._lab_bodies[lab_id] = body
        return body

    def lab_element_state(self, lab: LabSpec) -> bytes:
        nodes = self._node_ids(lab)
        links = {self._link_id(lab, i, link.id): link.state for i, link in enumerate(lab.link_specs())}
        interfaces: dict[str, str] = {}
        for i, link in enumerate(lab.link_specs()):
            for end in (link.node_a, link.node_b):
                interfaces[derived_id("interface", lab.lab_id, i, end)] = link.state
        return encode({"nodes": nodes, "links": links, "interfaces": interfaces})

    def _system_information(self, ready: bool) -> dict[str, Any]:
        profile = self.profile
        any_compute_ready = any(compute.admission_state == "READY" for compute in profile.computes)
        body: dict[str, Any] = {"version": profile.reported_version, "ready": ready and any_compute_ready}
        if profile.version_tuple >= (2, 8):
            body["allow_ssh_pubkey_auth"] = profile.version_tuple >= (2, 10)
            body["oui"] = "52:54:00:00:00:00"
        if profile.version_tuple >= (2, 10):
            body["timeout"] = 10
            body["features"] = ["pcap", "telemetry"]
        return body

    def _system_health(self, ready: bool) -> dict[str, Any]:
        profile = self.profile
        version = profile.version_tuple
        computes = {}
        for compute in profile.computes:
            admission_state = compute.admission_state if ready else "ONLINE"
            valid = compute.valid and admission_state == "READY"
            entry: dict[str, Any] = dict.fromkeys(_COMPUTE_HEALTH_FLAGS, True)
            entry["enough_cpus"] = compute.cpu_count >= 4
            if version >= (2, 8):
                entry["docker_shim"] = True
            if version >= (2, 10):
                entry.update(cpu_overload=False, memory_overload=False, disk_overload=False)
            entry.update(
                valid=valid,
                admission_state=admission_state,
                is_controller=compute.is_controller,
                hostname=compute.hostname,
            )
            computes[compute.compute_id] = entry
        controller: dict[str, Any] = {"core_connected": True}
        if version >= (2, 10):
            controller.update(airhandler=True, dispatcher=True, ipsnooper=True, pcapdemux=True)
        controller.update(nodes_loaded=True, images_loaded=True, valid=True)
        valid = bool(computes) and all(entry["valid"] for entry in computes.values())
        return {
            "valid": valid,
            "is_licensed": profile.licence == "registered",
            "is_enterprise": True,
            "computes": computes,
            "controller": controller,
        }

    def _node_shares(self) -> tuple[list[int], list[int]]:
        """Return running and total node counts per compute, spread by CPU count."""
        nodes = [node for lab in self.profile.labs for node in lab.node_specs()]
        running = sum(1 for node in nodes if node.state in ACTIVE_NODE_STATES)
        allocated = sum(1 for node in nodes if node.state != "DEFINED_ON_CORE")
        weights = [compute.cpu_count for compute in self.profile.computes]
        return apportion(running, weights), apportion(allocated, weights)

    def _system_stats(self) -> dict[str, Any]:
        computes = list(self.profile.computes)
        running, allocated = self._node_shares()
        body: dict[str, Any] = {"computes": {}}
        for compute, running_nodes, total_nodes in zip(computes, running, allocated, strict=True):
            body["computes"][compute.compute_id] = {
                "hostname": compute.hostname,
                "is_controller": compute.is_controller,
                "stats": self._compute_stats(compute, running_nodes, total_nodes),
            }
        body["all"] = _sum_stats(computes)
        controller = next((compute for compute in computes if compute.is_controller), None)
        if controller is not None:
            used = controller.disk_used if controller.controller_disk_used is None else controller.controller_disk_used
            body["controller"] = {"disk": _usage(used, controller.disk_free, controller.disk_total)}
        return body

    def _compute_stats(self, compute: ComputeSpec, running_nodes: int, total_nodes: int) -> dict[str, Any]:
        cpu: dict[str, Any] = {"count": compute.cpu_count, "percent": compute.cpu_percent, "model": compute.cpu_model}
        if self.profile.version_tuple >= (2, 9):
            cpu["hyperthreading"] = True
        cpu.update(predicted=compute.cpu_predicted, load=list(compute.cpu_load))
        return {
            "cpu": cpu,
            "memory": _usage(compute.memory_used, compute.memory_free, compute.memory_total),
            "disk": _usage(compute.disk_used, compute.disk_free, compute.disk_total),
            "dominfo": {
                "total_nodes": total_nodes,
                "total_orphans": 0,
                "running_nodes": running_nodes,
                "running_orphans": 0,
                "allocated_cpus": compute.allocated_cpus,
                "allocated_memory": compute.allocated_memory,
            },
        }

    def _licensing(self) -> dict[str, Any]:
        profile = self.profile
        body = load_template(_LICENSING_TEMPLATES[profile.licence])
        if profile.licence == "out_of_compliance":
            body["authorization"]["status"] = "OUT_OF_COMPLIANCE"
            for feature in body["features"]:
                feature["status"] = "OUT_OF_COMPLIANCE"
        if profile.registration_expires != "default":
            body["registration"]["expires"] = profile.registration_expires
        if profile.authorization_expires != "default":
            body["authorization"]["expires"] = profile.authorization_expires
        return body

    def _node_ids(self, lab: LabSpec) -> dict[str, str]:
        return {
            node.id or derived_id("node", lab.lab_id, index): node.state for index, node in enumerate(lab.node_specs())
        }

    @staticmethod
    def _link_id(lab: LabSpec, index: int, given: str | None) -> str:
        return given or derived_id("link", lab.lab_id, index)

    def _lab_object(self, lab: LabSpec) -> dict[str, Any]:
        version = self.profile.version_tuple
        body: dict[str, Any] = {
            "id": lab.lab_id,
            "created": lab.created,
            "modified": lab.modified,
            "lab_description": lab.description,
            "lab_notes": lab.notes,
            "lab_title": lab.title,
            "owner": lab.owner_user_id,
            "owner_username": lab.owner_username,
            "owner_fullname": lab.owner_fullname,
            "state": lab.state,
            "node_count": len(lab.nodes),
            "link_count": len(lab.link_specs()),
            "groups": [dict(group) for group in lab.groups],
        }
        if version >= (2, 8):
            body["effective_permissions"] = list(_FULL_PERMISSIONS) if self.profile.admin else ["lab_view"]
        if version >= (2, 10):
            body["autostart"] = {"enabled": False, "priority": None, "delay": None}
            body["node_staging"] = {"enabled": False, "start_remaining": False, "abort_on_failure": False}
        return body

    def _tile(self, lab: LabSpec) -> dict[str, Any]:
        tile = self._lab_object(lab)
        node_ids = list(self._node_ids(lab))
        nodes = []
        for node_id, node in zip(node_ids, lab.node_specs(), strict=True):
            nodes.append(
                {
                    "id": node_id,
                    "label": node.label if node.label is not None else f"node{len(nodes)}",
                    "x": node.x,
                    "y": node.y,
                    "node_definition": node.node_definition,
                    "image_definition": node.image_definition,
                    "state": node.state,
                    "cpus": node.cpus,
                    "cpu_limit": None,
                    "ram": node.ram,
                    "data_volume": None,
                    "boot_disk_size": None,
                }
            )
        links = [
            {
                "id": self._link_id(lab, index, link.id),
                "node_a": node_ids[link.node_a],
                "node_b": node_ids[link.node_b],
                "state": link.state,
            }
            for index, link in enumerate(lab.link_specs())
        ]
        tile["topology"] = {"nodes": nodes, "links": links}
        return tile


def _usage(used: float, free: float | None, total: float) -> dict[str, float]:
    return {"used": float(used), "free": float(total - used if free is None else free), "total": float(total)}


def _sum_stats(computes: list[ComputeSpec]) -> dict[str, Any]:
    cpus = sum(compute.cpu_count for compute in computes)
    weighted = sum(compute.cpu_percent * compute.cpu_count for compute in computes)
    memory = [_usage(c.memory_used, c.memory_free, c.memory_total) for c in computes]
    disk = [_usage(c.disk_used, c.disk_free, c.disk_total) for c in computes]
    return {
        "cpu": {"count": cpus, "percent": round(weighted / cpus, 1) if cpus else 0.0},
        "memory": {key: sum(entry[key] for entry in memory) for key in ("used", "free", "total")},
        "disk": {key: sum(entry[key] for entry in disk) for key in ("used", "free", "total")},
    }
