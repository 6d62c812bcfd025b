"""The CML fleet simulator, exercised over real loopback sockets with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.simulator import (
    DELETE,
    BootTimeline,
    ComputeSpec,
    Fault,
    LabSpec,
    RawJSON,
    Simulator,
    WorkerProfile,
    generate_labs,
)

FIXTURES = Path(__file__).resolve().parent.parent / "exporter" / "simulator" / "data"
ADMIN_LABS = ["b714c469-0efe-40f3-bb28-224d00b8ca2c", "c45f7a66-3a7f-4ba4-96dc-2aae0343c149"]
ALICE_LABS = ["7fade369-f285-43ac-85a6-3e832142eb8d", "58f460b9-90bb-4f84-986f-b5241e7bdf12"]
MISSING_LAB = "b1487141-fd3f-45d0-8682-ae5dd13c5d4a"
ACTIVE = {"STARTED", "QUEUED", "BOOTED"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as simulator:
        yield simulator


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def login(client: aiohttp.ClientSession, base: str, password: str = "admin-password", user: str = "admin") -> str:
    async with client.post(f"{base}/api/v0/authenticate", json={"username": user, "password": password}) as response:
        assert response.status == 200
        token = await response.json()
    assert isinstance(token, str)
    return token


async def get(
    client: aiohttp.ClientSession, base: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.get(f"{base}/api/v0/{path}", headers=headers, **kwargs) as response:
        return response.status, await response.read(), response


async def get_json(client: aiohttp.ClientSession, base: str, path: str, token: str | None = None) -> Any:
    status, body, _ = await get(client, base, path, token)
    assert status == 200, body
    return json.loads(body)


async def add_and_login(
    sim: Simulator, client: aiohttp.ClientSession, name: str, profile: WorkerProfile | None = None
) -> tuple[str, str]:
    sim.add_worker(name, profile)
    base = sim.base_url(name)
    return base, await login(client, base, user=(profile or WorkerProfile()).username)


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# Version profiles


async def test_default_profile_serves_fixture_bodies(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")

    assert await get_json(client, base, "system_information") == fixture("system_information.2.9")
    assert await get_json(client, base, "system_health", token) == fixture("system_health.2.9")
    assert await get_json(client, base, "system_stats", token) == fixture("system_stats.2.9")
    assert await get_json(client, base, "licensing", token) == fixture("licensing.registered")
    assert await get_json(client, base, "populate_lab_tiles", token) == fixture("populate_lab_tiles")
    assert await get_json(client, base, "labs?show_all=true", token) == fixture("labs")
    assert await get_json(client, base, f"labs/{ADMIN_LABS[0]}", token) == fixture("lab.started")
    assert await get_json(client, base, f"labs/{ADMIN_LABS[0]}/state", token) == fixture("lab_state")


@pytest.mark.parametrize(
    ("version", "information_keys", "has_docker_shim", "has_overload", "has_permissions", "has_hyperthreading"),
    [
        ("2.7", {"version", "ready"}, False, False, False, False),
        ("2.8", {"version", "ready", "allow_ssh_pubkey_auth", "oui"}, True, False, True, False),
        ("2.9", {"version", "ready", "allow_ssh_pubkey_auth", "oui"}, True, False, True, True),
        ("2.10", {"version", "ready", "allow_ssh_pubkey_auth", "oui", "timeout", "features"}, True, True, True, True),
    ],
)
async def test_version_selects_field_set(
    sim: Simulator,
    client: aiohttp.ClientSession,
    version: str,
    information_keys: set[str],
    has_docker_shim: bool,
    has_overload: bool,
    has_permissions: bool,
    has_hyperthreading: bool,
) -> None:
    base, token = await add_and_login(sim, client, "w", WorkerProfile(version=version))

    information = await get_json(client, base, "system_information")
    health = await get_json(client, base, "system_health", token)
    stats = await get_json(client, base, "system_stats", token)
    lab = await get_json(client, base, f"labs/{ADMIN_LABS[0]}", token)

    assert set(information) == information_keys
    assert information["version"].startswith(version + ".")
    compute = next(iter(health["computes"].values()))
    assert ("docker_shim" in compute) is has_docker_shim
    assert ("cpu_overload" in compute) is has_overload
    assert ("airhandler" in health["controller"]) is has_overload
    assert ("effective_permissions" in lab) is has_permissions
    assert ("autostart" in lab) is (version == "2.10")
    assert ("hyperthreading" in next(iter(stats["computes"].values()))["stats"]["cpu"]) is has_hyperthreading


async def test_version_210_matches_fixtures(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w", WorkerProfile(version="2.10"))

    assert await get_json(client, base, "system_information") == fixture("system_information.2.10")
    assert await get_json(client, base, "system_health", token) == fixture("system_health.2.10")
    assert await get_json(client, base, "authentication", token) == {
        "id": "3d8b5ec5-6993-4215-9447-d3f4e11b8de1",
        "username": "admin",
        "admin": True,
    }


async def test_version_string_overrides_reported_version(sim: Simulator, client: aiohttp.ClientSession) -> None:
    hostile = 'v"3\n\u2603\ud800' + "x" * 5000
    sim.add_worker("w", WorkerProfile(version_string=hostile))

    information = await get_json(client, sim.base_url("w"), "system_information")

    assert information["version"] == hostile


async def test_authentication_endpoint_missing_before_210(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")

    status, body, _ = await get(client, base, "authentication", token)
    authok = await get_json(client, base, "authok", token)

    assert status == 404
    assert json.loads(body)["code"] == 404
    assert authok == "OK"
    assert sim.count("w", "authentication") == 1


# Licence profiles


@pytest.mark.parametrize(
    ("licence", "registration", "authorization", "is_licensed", "reservation"),
    [
        ("registered", "COMPLETED", "IN_COMPLIANCE", True, False),
        ("unregistered", "NOT_REGISTERED", "EVAL", False, False),
        ("failed", "FAILED", "EVAL", False, False),
        ("reservation", "RESERVATION_IN_PROGRESS", "NOT_AUTHORIZED", False, True),
        ("out_of_compliance", "COMPLETED", "OUT_OF_COMPLIANCE", False, False),
    ],
)
async def test_licence_profile_sets_licensing_and_health(
    sim: Simulator,
    client: aiohttp.ClientSession,
    licence: str,
    registration: str,
    authorization: str,
    is_licensed: bool,
    reservation: bool,
) -> None:
    base, token = await add_and_login(sim, client, "w", WorkerProfile(licence=licence))

    licensing = await get_json(client, base, "licensing", token)
    health = await get_json(client, base, "system_health", token)

    assert licensing["registration"]["status"] == registration
    assert licensing["authorization"]["status"] == authorization
    assert licensing["reservation_mode"] is reservation
    assert health["is_licensed"] is is_licensed


async def test_licence_expiry_overrides(sim: Simulator, client: aiohttp.ClientSession) -> None:
    profile = WorkerProfile(registration_expires="2030-01-02 03:04:05", authorization_expires=None)
    base, token = await add_and_login(sim, client, "w", profile)

    licensing = await get_json(client, base, "licensing", token)

    assert licensing["registration"]["expires"] == "2030-01-02 03:04:05"
    assert licensing["authorization"]["expires"] is None


# Admin rights and labs


async def test_non_admin_gets_403_on_licensing(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w", WorkerProfile(admin=False))

    status, body, _ = await get(client, base, "licensing", token)

    assert status == 403
    assert json.loads(body) == fixture("error.403")


async def test_non_admin_lab_lists_own_then_shared(sim: Simulator, client: aiohttp.ClientSession) -> None:
    profile = WorkerProfile(admin=False, username="alice", password="alice-password")
    sim.add_worker("w", profile)
    base = sim.base_url("w")
    token = await login(client, base, password="alice-password", user="alice")

    own = await get_json(client, base, "labs", token)
    visible = await get_json(client, base, "labs?show_all=true", token)
    tiles = await get_json(client, base, "populate_lab_tiles", token)
    status, _, _ = await get(client, base, f"labs/{ADMIN_LABS[0]}", token)

    assert own == ALICE_LABS
    # Lab 3 is alice's own and shared with a group; admin's labs are not shared, so show_all adds none.
    assert visible == ALICE_LABS
    assert sorted(tiles["lab_tiles"]) == sorted(ALICE_LABS)
    assert status == 403


async def test_non_admin_show_all_adds_shared(sim: Simulator, client: aiohttp.ClientSession) -> None:
    labs = [
        LabSpec("mine", owner_username="bob"),
        LabSpec("shared", owner_username="carol", shared=True),
        LabSpec("private", owner_username="carol"),
    ]
    profile = WorkerProfile(admin=False, username="bob", labs=labs)
    base, token = await add_and_login(sim, client, "w", profile)

    own = await get_json(client, base, "labs", token)
    visible = await get_json(client, base, "labs?show_all=true", token)

    assert own == [labs[0].lab_id]
    assert visible == [labs[0].lab_id, labs[1].lab_id]


async def test_admin_labs_without_show_all_lists_own_only(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")

    own = await get_json(client, base, "labs", token)

    assert own == ADMIN_LABS


async def test_unknown_lab_answers_404_lab_not_found(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")

    for path in (f"labs/{MISSING_LAB}", f"labs/{MISSING_LAB}/state", f"labs/{MISSING_LAB}/lab_element_state"):
        status, body, _ = await get(client, base, path, token)
        assert status == 404
        assert json.loads(body) == fixture("error.404")


async def test_lab_element_state_matches_tile(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")

    tiles = (await get_json(client, base, "populate_lab_tiles", token))["lab_tiles"]
    for lab_id, tile in tiles.items():
        elements = await get_json(client, base, f"labs/{lab_id}/lab_element_state", token)
        assert elements["nodes"] == {node["id"]: node["state"] for node in tile["topology"]["nodes"]}
        assert elements["links"] == {link["id"]: link["state"] for link in tile["topology"]["links"]}
        assert len(elements["interfaces"]) == 2 * len(tile["topology"]["links"])


async def test_populate_lab_tiles_disabled_answers_404(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w", WorkerProfile(populate_lab_tiles=False))

    status, body, _ = await get(client, base, "populate_lab_tiles", token)
    labs = await get_json(client, base, "labs?show_all=true", token)

    assert status == 404
    assert json.loads(body)["code"] == 404
    assert len(labs) == 4


async def test_hostile_owner_and_hostname_strings_survive(sim: Simulator, client: aiohttp.ClientSession) -> None:
    owner = 'ev"il\nowner\\\ud83d' + "o" * 3000
    hostname = "host\u0000\"'{}\n" + "h" * 3000
    profile = WorkerProfile(
        labs=[LabSpec("t", owner_username=owner, state="STARTED", nodes=["BOOTED"])],
        computes=[ComputeSpec(hostname, is_controller=True)],
    )
    base, token = await add_and_login(sim, client, "w", profile)

    tiles = await get_json(client, base, "populate_lab_tiles", token)
    health = await get_json(client, base, "system_health", token)
    stats = await get_json(client, base, "system_stats", token)

    assert next(iter(tiles["lab_tiles"].values()))["owner_username"] == owner
    assert next(iter(health["computes"].values()))["hostname"] == hostname
    assert next(iter(stats["computes"].values()))["hostname"] == hostname


# Tokens


async def test_login_returns_hs256_jwt_with_claims(sim: Simulator, client: aiohttp.ClientSession) -> None:
    before = int(time.time())
    _, token = await add_and_login(sim, client, "w", WorkerProfile(token_ttl=3600))

    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = jwt_claims(token)

    assert header == {"typ": "JWT", "alg": "HS256"}
    assert claims["iss"] == "com.cisco.virl"
    assert claims["sub"] == "3d8b5ec5-6993-4215-9447-d3f4e11b8de1"
    assert before <= claims["iat"] <= time.time()
    assert claims["exp"] - claims["iat"] == 3600


async def test_bearer_endpoints_reject_bad_token(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    base = sim.base_url("w")

    for token in (None, "not-a-token", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.c2ln"):
        for path in ("system_health", "system_stats", "licensing", "populate_lab_tiles", "labs", "authok"):
            status, body, _ = await get(client, base, path, token)
            assert status == 401, path
            assert json.loads(body) == fixture("error.401")


async def test_bad_credentials_answer_403(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    url = f"{sim.base_url('w')}/api/v0/authenticate"

    async with client.post(url, json={"username": "admin", "password": "wrong"}) as response:
        status, body = response.status, await response.json()
    async with client.post(url, data=b"{not json") as response:
        bad_input = response.status

    assert status == 403
    assert body == fixture("error.403.authenticate")
    assert bad_input == 400
    assert sim.count("w", "authenticate") == 2


async def test_token_expires_after_ttl(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w", WorkerProfile(token_ttl=0.3))

    fresh, _, _ = await get(client, base, "system_health", token)
    await asyncio.sleep(0.4)
    expired, body, _ = await get(client, base, "system_health", token)

    assert fresh == 200
    assert expired == 401
    assert json.loads(body)["code"] == 401


async def test_expire_tokens_forces_401_until_relogin(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")

    sim.expire_tokens("w")
    early, _, _ = await get(client, base, "system_stats", token)
    new_token = await login(client, base)
    after, _, _ = await get(client, base, "system_stats", new_token)

    assert early == 401
    assert new_token != token
    assert after == 200


async def test_token_of_one_worker_fails_on_another(sim: Simulator, client: aiohttp.ClientSession) -> None:
    _, token = await add_and_login(sim, client, "a")
    sim.add_worker("b")

    status, _, _ = await get(client, sim.base_url("b"), "system_health", token)

    assert status == 401


# Boot phases


async def test_boot_timeline_phases_in_order(client: aiohttp.ClientSession) -> None:
    profile = WorkerProfile(boot=BootTimeline(refused=0.5, bad_gateway=0.5, not_ready=0.5))
    async with Simulator() as sim:
        sim.add_worker("w", profile, own_port=True)
        base = sim.base_url("w")
        started = time.monotonic()

        async def at(offset: float) -> None:
            await asyncio.sleep(max(started + offset - time.monotonic(), 0))

        await at(0.2)
        with pytest.raises(aiohttp.ClientConnectorError):
            await get(client, base, "system_information")
        await at(0.75)
        gateway, gateway_body, gateway_response = await get(client, base, "system_information")
        await at(1.25)
        not_ready = await get_json(client, base, "system_information")
        token = await login(client, base)
        health = await get_json(client, base, "system_health", token)
        await at(1.7)
        ready = await get_json(client, base, "system_information")

    assert gateway == 502
    assert gateway_response.content_type == "text/html"
    assert b"nginx" in gateway_body
    assert not_ready["ready"] is False
    assert not_ready["version"] == "2.9.1+build.12"
    assert {compute["admission_state"] for compute in health["computes"].values()} == {"ONLINE"}
    assert ready["ready"] is True


async def test_prefix_worker_refused_phase_closes_connection(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    sim.set_boot("w", "refused")

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await login(client, sim.base_url("w"))

    # A POST, because aiohttp's client silently retries an idempotent GET once after a disconnect.
    assert sim.count("w", "authenticate") == 1
    assert sim.requests[-1].status == 0


async def test_set_boot_holds_each_phase(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w", own_port=True)
    base = sim.base_url("w")

    sim.set_boot("w", "refused")
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(client, base, "system_information")
    sim.set_boot("w", "bad_gateway")
    gateway, _, _ = await get(client, base, "licensing")
    sim.set_boot("w", "not_ready")
    not_ready = await get_json(client, base, "system_information")
    sim.set_boot("w", "ready")
    ready = await get_json(client, base, "system_information")

    assert gateway == 502
    assert not_ready["ready"] is False
    assert ready["ready"] is True


async def test_reboot_restarts_timeline(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w", WorkerProfile(boot=BootTimeline(bad_gateway=60)))
    sim.set_boot("w", "ready")
    ready, _, _ = await get(client, sim.base_url("w"), "system_information")

    sim.reboot("w")
    rebooting, _, _ = await get(client, sim.base_url("w"), "system_information")

    assert ready == 200
    assert rebooting == 502
    assert sim.boot_phase("w") == "bad_gateway"


# Faults


async def test_latency_fault_delays_answer(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    sim.set_fault("w", "system_information", Fault(latency=0.3))

    started = time.monotonic()
    status, _, _ = await get(client, sim.base_url("w"), "system_information")
    elapsed = time.monotonic() - started

    assert status == 200
    assert elapsed >= 0.3


async def test_status_fault_sends_error_body_and_retry_after(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")
    sim.set_fault("w", "system_health", Fault(status=429, retry_after="7"))
    sim.set_fault("w", "system_stats", Fault(status=503, retry_after="Wed, 21 Oct 2026 07:28:00 GMT"))

    limited, limited_body, limited_response = await get(client, base, "system_health", token)
    unavailable, unavailable_body, unavailable_response = await get(client, base, "system_stats", token)

    assert limited == 429
    assert json.loads(limited_body) == {"code": 429, "description": "Too Many Requests"}
    assert limited_response.headers["Retry-After"] == "7"
    assert unavailable == 503
    assert unavailable_response.content_type == "text/html"
    assert b"503 Service Unavailable" in unavailable_body
    assert unavailable_response.headers["Retry-After"] == "Wed, 21 Oct 2026 07:28:00 GMT"


async def test_hang_fault_never_answers_and_stops_cleanly(client: aiohttp.ClientSession) -> None:
    async with Simulator() as sim:
        sim.add_worker("w")
        sim.set_fault("w", "system_health", Fault(hang=True))
        base = sim.base_url("w")

        with pytest.raises(asyncio.TimeoutError):
            await get(client, base, "system_health", timeout=aiohttp.ClientTimeout(total=0.3))
        pending = asyncio.create_task(get(client, base, "system_health"))
        await asyncio.sleep(0.1)

    with pytest.raises(aiohttp.ClientError):
        await pending
    assert sim.count("w", "system_health") == 2


async def test_stall_after_sends_headers_and_some_bytes(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    sim.set_fault("w", "system_information", Fault(stall_after=10))
    url = f"{sim.base_url('w')}/api/v0/system_information"

    async with client.get(url) as response:
        first = await response.content.readexactly(10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(response.content.read(1), 0.3)

    assert response.status == 200
    assert first == b'{"version"'
    assert response.content_length == len(fixture_bytes("system_information"))


def fixture_bytes(endpoint: str) -> bytes:
    return json.dumps(fixture(f"{endpoint}.2.9"), separators=(", ", ": ")).encode()


async def test_trickle_sends_one_byte_at_a_time(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    sim.set_fault("w", "lab_state", Fault(trickle=0.05))
    base, token = sim.base_url("w"), await login(client, sim.base_url("w"))

    started = time.monotonic()
    body = await get_json(client, base, f"labs/{ADMIN_LABS[0]}/state", token)
    elapsed = time.monotonic() - started

    assert body == "STARTED"
    assert elapsed >= 0.05 * (len('"STARTED"') - 1)


@pytest.mark.parametrize(
    ("body", "expected", "content_type"),
    [
        ("html", b"<!DOCTYPE html>", "text/html"),
        ("empty", b"", "application/json"),
        ("not_json", b"<not json>{", "application/json"),
        ("null", b"null", "application/json"),
        ("wrong_shape", b'["unexpected", "shape"]', "application/json"),
        (b"\xff\xfe raw", b"\xff\xfe raw", "application/json"),
    ],
)
async def test_body_fault_replaces_body(
    sim: Simulator, client: aiohttp.ClientSession, body: str | bytes, expected: bytes, content_type: str
) -> None:
    sim.add_worker("w")
    sim.set_fault("w", "system_information", Fault(body=body))

    status, received, response = await get(client, sim.base_url("w"), "system_information")

    assert status == 200
    assert received.startswith(expected)
    assert response.content_type == content_type


async def test_wrong_shape_on_list_endpoint_sends_object(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")
    sim.set_fault("w", "labs", Fault(body="wrong_shape"))

    body = await get_json(client, base, "labs", token)

    assert body == {"unexpected": "shape"}


async def test_truncated_body_fault_cuts_the_response(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    sim.set_fault("w", "system_information", Fault(body="truncated"))

    with pytest.raises(aiohttp.ClientPayloadError):
        await get(client, sim.base_url("w"), "system_information")


async def test_redirect_fault_points_at_login_page(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    sim.set_fault("w", "system_information", Fault(redirect=True))

    status, _, response = await get(client, sim.base_url("w"), "system_information", allow_redirects=False)

    assert status == 302
    assert response.headers["Location"].startswith("/w/w/login")


async def test_refuse_fault_closes_connection(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w", own_port=True)
    sim.set_fault("w", "*", Fault(refuse=True))

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await login(client, sim.base_url("w"))

    assert sim.count("w", "authenticate") == 1


async def test_values_fault_injects_bad_numbers(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")
    values = {
        "stats.cpu.percent": "N/A",
        "all.cpu.count": RawJSON("1e400"),
        "all.cpu.percent": float("nan"),
        "all.memory.total": None,
        "controller": DELETE,
    }
    sim.set_fault("w", "system_stats", Fault(values=values))
    sim.set_fault("w", "system_information", Fault(values={"ready": "yes", "extra.field": 1}))

    _, raw, _ = await get(client, base, "system_stats", token)
    stats = json.loads(raw)
    information = await get_json(client, base, "system_information")

    assert b'"count": 1e400' in raw
    assert b'"percent": NaN' in raw
    assert {compute["stats"]["cpu"]["percent"] for compute in stats["computes"].values()} == {"N/A"}
    assert stats["all"]["memory"]["total"] is None
    assert "controller" not in stats
    assert information["ready"] == "yes"
    assert information["extra"] == {"field": 1}


async def test_endpoint_fault_overrides_worker_wide_fault(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    sim.set_fault("w", "*", Fault(status=500))
    sim.set_fault("w", "system_information", Fault(status=418))

    other, _, _ = await get(client, sim.base_url("w"), "system_health")
    specific, _, _ = await get(client, sim.base_url("w"), "system_information")
    sim.clear_faults("w")
    cleared, _, _ = await get(client, sim.base_url("w"), "system_information")

    assert other == 500
    assert specific == 418
    assert cleared == 200


async def test_set_fault_rejects_unknown_endpoint(sim: Simulator) -> None:
    sim.add_worker("w")

    with pytest.raises(ValueError, match="endpoint 'system_helth' is unknown"):
        sim.set_fault("w", "system_helth", Fault(latency=1))


# Counters, request log, workers


async def test_counters_and_request_log(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "a")
    sim.add_worker("b")

    await get(client, base, "system_health", token)
    await get(client, base, "system_health")
    status, body, _ = await get(client, base, "no/such/path")
    await get(client, sim.base_url("b"), "system_information")

    assert status == 404
    assert json.loads(body)["code"] == 404
    assert sim.counts("a") == {"authenticate": 1, "system_health": 2, "other": 1}
    assert sim.count("b", "system_information") == 1
    assert sim.count("b", "licensing") == 0
    assert sim.total_requests() == 5
    records = sim.requests
    assert [(r.worker, r.endpoint, r.status, r.had_token) for r in records] == [
        ("a", "authenticate", 200, False),
        ("a", "system_health", 200, True),
        ("a", "system_health", 401, False),
        ("a", "other", 404, False),
        ("b", "system_information", 200, False),
    ]
    assert records[0].method == "POST"
    assert records[1].path == "/w/a/api/v0/system_health"

    sim.reset_counters()

    assert sim.counts("a") == {}
    assert sim.total_requests() == 0
    assert sim.requests == []


async def test_set_profile_changes_data_while_running(sim: Simulator, client: aiohttp.ClientSession) -> None:
    base, token = await add_and_login(sim, client, "w")

    sim.set_profile("w", dataclasses.replace(sim.profile("w"), licence="unregistered", version="2.10"))
    health = await get_json(client, base, "system_health", token)
    information = await get_json(client, base, "system_information")

    assert health["is_licensed"] is False
    assert information["version"] == "2.10.0+build.31"


async def test_removed_prefix_worker_answers_404_html(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    base = sim.base_url("w")

    sim.remove_worker("w")
    status, body, response = await get(client, base, "system_information")

    assert status == 404
    assert response.content_type == "text/html"
    assert b"404 Not Found" in body
    with pytest.raises(KeyError, match="worker 'w' is unknown"):
        sim.count("w", "system_information")


async def test_removed_own_port_worker_refuses(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w", own_port=True)
    base = sim.base_url("w")
    before, _, _ = await get(client, base, "system_information")

    sim.remove_worker("w")
    await asyncio.sleep(0.05)

    assert before == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(client, base, "system_information")


async def test_add_worker_while_running(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("late", own_port=True)

    information = await get_json(client, sim.base_url("late"), "system_information")

    assert information["ready"] is True


async def test_thousand_prefix_workers_share_one_port(client: aiohttp.ClientSession) -> None:
    async with Simulator() as sim:
        for index in range(1000):
            sim.add_worker(f"w{index:04d}")
        semaphore = asyncio.Semaphore(50)

        async def probe(name: str) -> int:
            async with semaphore:
                status, _, _ = await get(client, sim.base_url(name), "system_information")
                return status

        statuses = await asyncio.gather(*(probe(name) for name in sim.workers))

    assert set(statuses) == {200}
    assert sim.total_requests() == 1000
    assert {sim.count(name, "system_information") for name in sim.workers} == {1}
    assert len({sim.base_url(name).rsplit("/w/", 1)[0] for name in sim.workers}) == 1


# Data consistency


@pytest.mark.parametrize(
    "profile",
    [
        WorkerProfile(),
        WorkerProfile(labs=generate_labs(200), version="2.10"),
        WorkerProfile(
            labs=generate_labs(31, nodes_per_lab=7),
            computes=[
                ComputeSpec("ctl", is_controller=True, cpu_count=8),
                ComputeSpec("c1", cpu_count=24, cpu_percent=50.0),
                ComputeSpec("c2", cpu_count=64, admission_state="ONLINE", valid=False),
            ],
        ),
    ],
    ids=["default", "200-labs", "three-computes"],
)
async def test_bodies_agree_with_each_other(
    sim: Simulator, client: aiohttp.ClientSession, profile: WorkerProfile
) -> None:
    base, token = await add_and_login(sim, client, "w", profile)

    health = await get_json(client, base, "system_health", token)
    stats = await get_json(client, base, "system_stats", token)
    tiles = (await get_json(client, base, "populate_lab_tiles", token))["lab_tiles"]
    labs = await get_json(client, base, "labs?show_all=true", token)

    assert {k: v["hostname"] for k, v in health["computes"].items()} == {
        k: v["hostname"] for k, v in stats["computes"].items()
    }
    assert labs == list(tiles)
    nodes = [node for tile in tiles.values() for node in tile["topology"]["nodes"]]
    running = sum(compute["stats"]["dominfo"]["running_nodes"] for compute in stats["computes"].values())
    assert running == sum(1 for node in nodes if node["state"] in ACTIVE)
    for tile in tiles.values():
        assert tile["node_count"] == len(tile["topology"]["nodes"])
        assert tile["link_count"] == len(tile["topology"]["links"])
        states = {node["state"] for node in tile["topology"]["nodes"]}
        if tile["state"] == "STARTED":
            assert states & ACTIVE
        if tile["state"] == "DEFINED_ON_CORE":
            assert states <= {"DEFINED_ON_CORE"}
    for key in ("used", "free", "total"):
        assert stats["all"]["memory"][key] == sum(c["stats"]["memory"][key] for c in stats["computes"].values())
        assert stats["all"]["disk"][key] == sum(c["stats"]["disk"][key] for c in stats["computes"].values())
    assert stats["all"]["cpu"]["count"] == sum(c["stats"]["cpu"]["count"] for c in stats["computes"].values())


async def test_computes_not_ready_make_system_not_ready(sim: Simulator, client: aiohttp.ClientSession) -> None:
    profile = WorkerProfile(computes=[ComputeSpec("ctl", is_controller=True, admission_state="ONLINE")])
    base, token = await add_and_login(sim, client, "w", profile)

    information = await get_json(client, base, "system_information")
    health = await get_json(client, base, "system_health", token)

    assert information["ready"] is False
    assert health["valid"] is False


# TLS


async def test_tls_worker_verifies_with_simulator_ca(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("secure", tls=True)
    base = sim.base_url("secure")
    trusted = ssl.create_default_context(cadata=sim.ca_cert_pem.decode())

    information = await get(client, base, "system_information", ssl=trusted)

    assert base.startswith("https://127.0.0.1:")
    assert information[0] == 200
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(client, base, "system_information")


async def test_tls_wrong_hostname_fails_verification(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("wrong", tls_hostname="wrong.example")
    trusted = ssl.create_default_context(cadata=sim.ca_cert_pem.decode())

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(client, sim.base_url("wrong"), "system_information", ssl=trusted)
    unverified, _, _ = await get(client, sim.base_url("wrong"), "system_information", ssl=False)

    assert unverified == 200


# Control endpoint


async def test_control_endpoint_counts_faults_boot_and_reset(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    base = sim.base_url("w")
    control = f"{sim.url}/_sim"

    async with client.put(f"{control}/workers/w/faults/system_information", json={"status": 500}) as response:
        put_status = response.status
    faulted, _, _ = await get(client, base, "system_information")
    async with client.delete(f"{control}/workers/w/faults/system_information") as response:
        delete_status = response.status
    cleared, _, _ = await get(client, base, "system_information")
    async with client.post(f"{control}/workers/w/boot", json={"phase": "bad_gateway"}) as response:
        boot = await response.json()
    booting, _, _ = await get(client, base, "system_information")
    async with client.get(f"{control}/counts") as response:
        counts = await response.json()
    async with client.post(f"{control}/reset") as response:
        reset_status = response.status

    assert (put_status, delete_status, reset_status) == (200, 200, 200)
    assert (faulted, cleared, booting) == (500, 200, 502)
    assert boot == {"worker": "w", "phase": "bad_gateway"}
    assert counts == {"w": {"system_information": 3}}
    assert sim.counts("w") == {}


async def test_control_fault_accepts_raw_value_markers(sim: Simulator, client: aiohttp.ClientSession) -> None:
    sim.add_worker("w")
    fault = {"values": {"ready": {"$raw": "NaN"}, "oui": {"$delete": True}}}

    async with client.put(f"{sim.url}/_sim/workers/w/faults/system_information", json=fault) as response:
        assert response.status == 200
    _, body, _ = await get(client, sim.base_url("w"), "system_information")

    assert b'"ready": NaN' in body
    assert b"oui" not in body


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "message"),
    [
        ("PUT", "workers/nobody/faults/labs", {"hang": True}, 404, "worker 'nobody' is unknown"),
        ("PUT", "workers/w/faults/labz", {"hang": True}, 400, "endpoint 'labz' is unknown"),
        ("PUT", "workers/w/faults/labs", {"hung": True}, 400, "unknown fault field 'hung'"),
        ("PUT", "workers/w/faults/labs", {"body": "garbage"}, 400, "fault body 'garbage' is not supported"),
        ("POST", "workers/w/boot", {"phase": "asleep"}, 400, "boot phase 'asleep' is unknown"),
        ("GET", "nothing", None, 404, "is not a control route"),
    ],
)
async def test_control_endpoint_rejects_bad_requests(
    sim: Simulator, client: aiohttp.ClientSession, method: str, path: str, payload: Any, status: int, message: str
) -> None:
    sim.add_worker("w")

    async with client.request(method, f"{sim.url}/_sim/{path}", json=payload) as response:
        received, body = response.status, await response.json()

    assert received == status
    assert message in body["error"]
    assert sim.faults("w") == {}
