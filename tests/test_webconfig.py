"""Protected endpoints: --web.config.file with TLS and bcrypt basic auth; health endpoints stay open."""

from __future__ import annotations

import base64
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web

from exporter import cli
from exporter.config import load_config
from exporter.errors import ConfigError
from exporter.server import Exporter, make_app
from exporter.simulator import Simulator
from exporter.webconfig import WebConfig, load_web_config
from tests.exporter_process import ExporterProcess, write_config

bcrypt = pytest.importorskip("bcrypt", reason="basic auth needs the optional bcrypt package: pip install bcrypt")

USER = "prometheus"
PASSWORD = "scrape-secret"
PROTECTED = [("GET", "/metrics"), ("GET", "/probe?target=healthy"), ("GET", "/sd"), ("GET", "/"), ("POST", "/-/reload")]


def bcrypt_hash(password: str) -> str:
    # Four rounds keep the test fast; production hashes use 10 or more.
    return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def write_web_config(path: Path, document: object) -> str:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return str(path)


@pytest.fixture
async def protected(simulator: Simulator, tmp_path: Path) -> AsyncIterator[str]:
    """The exporter behind basic auth on a loopback port; yields its base URL."""
    config_file = write_config(tmp_path / "config.yml", {"healthy": simulator.base_url("healthy")})
    web_config = WebConfig(basic_auth_users={USER: bcrypt_hash(PASSWORD)})
    exporter = Exporter(load_config(config_file), str(config_file))
    await exporter.start()
    runner = web.AppRunner(make_app(exporter, web_config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await exporter.close()


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_path_rejects_missing_credentials(
    protected: str, simulator: Simulator, method: str, path: str
) -> None:
    async with aiohttp.ClientSession() as session, session.request(method, protected + path) as response:
        status = response.status
        challenge = response.headers.get("WWW-Authenticate", "")

    assert status == 401
    assert challenge.startswith('Basic realm="cml-exporter"')
    assert simulator.total_requests() == 0


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_path_accepts_configured_user(protected: str, method: str, path: str) -> None:
    auth = basic_auth(USER, PASSWORD)
    async with aiohttp.ClientSession() as session, session.request(method, protected + path, headers=auth) as response:
        status = response.status

    assert status == 200


@pytest.mark.parametrize(
    "auth",
    [
        basic_auth(USER, "wrong"),
        basic_auth("someone-else", PASSWORD),
        basic_auth(USER, ""),
    ],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
async def test_wrong_credentials_are_rejected(protected: str, simulator: Simulator, auth: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as session, session.get(protected + "/metrics", headers=auth) as response:
        status = response.status

    assert status == 401
    assert simulator.total_requests() == 0


async def test_malformed_authorization_header_is_rejected(protected: str) -> None:
    headers = {"Authorization": "Basic !!not-base64!!"}
    async with aiohttp.ClientSession() as session, session.get(protected + "/metrics", headers=headers) as response:
        status = response.status

    assert status == 401


@pytest.mark.parametrize("path", ["/-/healthy", "/-/ready"])
async def test_health_endpoints_stay_open(protected: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(protected + path) as response:
        status = response.status

    assert status == 200


async def test_tls_and_basic_auth_from_web_config_file(simulator: Simulator, tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    web_config_file = write_web_config(
        tmp_path / "web.yml",
        {
            "tls_server_config": {"cert_file": "server.pem", "key_file": "server.key"},
            "basic_auth_users": {USER: bcrypt_hash(PASSWORD)},
        },
    )
    config_file = write_config(tmp_path / "config.yml", {"healthy": simulator.base_url("healthy")})
    process = ExporterProcess(tmp_path, config_file, f"--web.config.file={web_config_file}", scheme="https").start()
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    try:
        async with aiohttp.ClientSession() as session:
            await process.wait_ready(session, ssl=client_context)
            auth = basic_auth(USER, PASSWORD)
            async with session.get(process.url + "/metrics", ssl=client_context, headers=auth) as response:
                status = response.status
                body = await response.text()
            async with session.get(process.url + "/metrics", ssl=client_context) as response:
                status_without_auth = response.status
            with pytest.raises(aiohttp.ClientError):
                async with session.get(process.url.replace("https:", "http:") + "/-/healthy") as response:
                    await response.read()
    finally:
        process.stop()

    assert status == 200
    assert 'cml_up{worker="healthy"} 1.0' in body
    assert status_without_auth == 401
    assert PASSWORD not in process.output()


def test_missing_bcrypt_is_rejected_with_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {USER: bcrypt_hash(PASSWORD)}})
    monkeypatch.setitem(sys.modules, "bcrypt", None)

    with pytest.raises(ConfigError) as caught:
        load_web_config(path)

    assert len(caught.value.problems) == 1
    assert "`pip install bcrypt`" in caught.value.problems[0]


def test_serve_refuses_to_start_without_bcrypt(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    web_config_file = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {USER: bcrypt_hash(PASSWORD)}})
    config_file = write_config(tmp_path / "config.yml", {"healthy": simulator.base_url("healthy")})
    monkeypatch.setitem(sys.modules, "bcrypt", None)

    code = cli.main([f"--config.file={config_file}", f"--web.config.file={web_config_file}",
                     "--web.listen-address=127.0.0.1:0"])

    assert code == 1
    assert "pip install bcrypt" in capsys.readouterr().err
    assert simulator.total_requests() == 0


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"tls_server_config": {"cert_file": "a.pem"}},
         "tls_server_config.key_file: missing; TLS needs both cert_file and key_file"),
        ({"basic_auth_users": {USER: "plain-password"}},
         f"basic_auth_users.{USER}: expected a bcrypt hash ($2b$..., cost 04 to 15, 60 characters)"),
        ({"http_server_config": {"http2": True}},
         "http_server_config: unknown key; expected one of tls_server_config, basic_auth_users"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "RequireAnyClientCert"}},
         "tls_server_config.client_auth_type: 'RequireAnyClientCert' is not supported; "
         "expected one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS99"}},
         "tls_server_config.min_version: invalid 'TLS99'; expected one of TLS10, TLS11, TLS12, TLS13"),
    ],
    ids=["no-key-file", "plain-password", "unknown-key", "client-auth-type", "min-version"],
)
def test_invalid_web_config_names_key(tmp_path: Path, document: object, problem: str) -> None:
    path = write_web_config(tmp_path / "web.yml", document)

    with pytest.raises(ConfigError) as caught:
        load_web_config(path)

    assert caught.value.problems == [problem]
    assert "plain-password" not in str(caught.value)


def test_unreadable_certificate_is_rejected_at_load(tmp_path: Path) -> None:
    path = write_web_config(tmp_path / "web.yml", {"tls_server_config": {"cert_file": "a.pem", "key_file": "a.key"}})

    with pytest.raises(ConfigError) as caught:
        load_web_config(path)

    assert caught.value.problems[0].startswith(f"tls_server_config: cannot load cert_file {str(tmp_path / 'a.pem')!r}")


@pytest.mark.parametrize("user", [USER, "nobody"])
async def test_password_over_72_bytes_is_rejected_not_an_error(protected: str, user: str) -> None:
    headers = basic_auth(user, "x" * 80)
    async with aiohttp.ClientSession() as session, session.get(protected + "/sd", headers=headers) as response:
        status = response.status

    assert status == 401


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"tls_server_config: {client_auth_type: [a, b]}\n", "client_auth_type: ['a', 'b'] is not supported"),
        (b"tls_server_config: {min_version: {a: 1}}\n", "tls_server_config.min_version: invalid {'a': 1}"),
        (b"basic_auth_users: {u: \xff}\n", "is not valid UTF-8"),
        (b"basic_auth_users: {u: secret: x}\n", "is not valid YAML at line 1"),
    ],
    ids=["list-client-auth", "mapping-min-version", "not-utf8", "yaml-error"],
)
def test_malformed_web_config_is_rejected_cleanly(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "web.yml"
    path.write_bytes(content)

    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))

    assert problem in str(caught.value)
    assert "secret" not in str(caught.value)
