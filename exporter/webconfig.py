"""Web configuration (``--web.config.file``): TLS and basic auth for the exporter's own HTTP server.

The file has the layout the Prometheus exporters use (exporter-toolkit's web configuration):

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
    basic_auth_users:
      prometheus: $2b$12$...   # a bcrypt hash, made with `htpasswd -nBC 12 prometheus` or Python's bcrypt

Relative paths are resolved from the file's directory. The health endpoints stay open so that
probes of a load balancer or an orchestrator work without credentials; everything else needs
them. Checking a bcrypt hash needs the optional ``bcrypt`` package.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter.config import load_yaml_file, short_repr
from exporter.errors import ConfigError

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/-/healthy", "/-/ready"})
BCRYPT_MISSING = (
    "basic_auth_users needs the bcrypt package to check passwords, and it is not installed; "
    "install it with `pip install bcrypt` (or `pip install 'cml-exporter[web]'`)"
)

# Costs above 15 take seconds per check, and each unknown user is checked at the highest cost.
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|1[0-5])\$[./A-Za-z0-9]{53}$")
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version")
_TOP_KEYS = ("tls_server_config", "basic_auth_users")
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Successful checks are remembered so that a scrape every few seconds does not cost a bcrypt
# round each time. The cache contains digests, never passwords, and is emptied when it is full.
_CACHE_SIZE = 1024


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None


@dataclass(frozen=True)
class WebConfig:
    tls: TLSServerConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict)
    source: str | None = None


def load_web_config(path: str) -> WebConfig:
    """Read and validate a web configuration file, or raise ConfigError naming each problem."""
    file_path = Path(path)
    try:
        # The same reader as the main configuration: UTF-8 only, bounded alias expansion, and YAML errors
        # by position, never quoting a line.
        raw = load_yaml_file(file_path)
    except ValueError as error:
        raise ConfigError([str(error)], path) from None
    problems: list[str] = []
    top = _mapping(raw, "", _TOP_KEYS, problems)
    tls = _tls(top.get("tls_server_config"), file_path.parent, problems) if "tls_server_config" in top else None
    users = _users(top.get("basic_auth_users"), problems)
    if users and not _bcrypt_available():
        problems.append(BCRYPT_MISSING)
    if problems:
        raise ConfigError(problems, path)
    web_config = WebConfig(tls, users, path)
    if tls is not None:
        make_ssl_context(tls)  # fail at start-up, not at the first connection
    return web_config


def _mapping(raw: Any, path: str, allowed: tuple[str, ...], problems: list[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{path or 'the file'}: expected a mapping, got {type(raw).__name__}")
        return {}
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            problems.append(f"{where}: unknown key; expected one of {', '.join(allowed)}")
    return dict(raw)


def _tls(raw: Any, base_dir: Path, problems: list[str]) -> TLSServerConfig | None:
    values = _mapping(raw, "tls_server_config", _TLS_KEYS, problems)
    files: dict[str, str | None] = {}
    for key in ("cert_file", "key_file", "client_ca_file"):
        value = values.get(key)
        if value is None:
            files[key] = None
        elif isinstance(value, str) and value:
            files[key] = str(base_dir / value)
        else:
            problems.append(f"tls_server_config.{key}: expected a file path, got {value!r}")
            files[key] = None
    for key in ("cert_file", "key_file"):
        if key not in values:
            problems.append(f"tls_server_config.{key}: missing; TLS needs both cert_file and key_file")
    client_auth = values.get("client_auth_type", "NoClientCert")
    if not isinstance(client_auth, str) or client_auth not in _CLIENT_AUTH:
        problems.append(
            f"tls_server_config.client_auth_type: {short_repr(client_auth)} is not supported; "
            f"expected one of {', '.join(_CLIENT_AUTH)}"
        )
    elif client_auth != "NoClientCert" and files["client_ca_file"] is None:
        problems.append(f"tls_server_config.client_ca_file: missing; client_auth_type {client_auth} needs it")
    for key, default in (("min_version", "TLS12"), ("max_version", None)):
        version = values.get(key, default)
        if version is not None and (not isinstance(version, str) or version not in _TLS_VERSIONS):
            shown = short_repr(version)
            problems.append(f"tls_server_config.{key}: invalid {shown}; expected one of {', '.join(_TLS_VERSIONS)}")
    cert_file, key_file = files["cert_file"], files["key_file"]
    if cert_file is None or key_file is None:
        return None
    return TLSServerConfig(
        cert_file,
        key_file,
        files["client_ca_file"],
        str(client_auth),
        str(values.get("min_version", "TLS12")),
        values.get("max_version"),
    )


def _users(raw: Any, problems: list[str]) -> dict[str, str]:
    users: dict[str, str] = {}
    if raw is None:
        return users
    if not isinstance(raw, Mapping):
        kind = type(raw).__name__
        problems.append(f"basic_auth_users: expected a mapping of user names to bcrypt hashes, got {kind}")
        return users
    for name, hashed in raw.items():
        if not isinstance(name, str) or not name or ":" in name:
            problems.append(f"basic_auth_users: invalid user name {name!r}; expected a non-empty name without ':'")
        elif not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
            # The value is not echoed: it may be a plain password put there by mistake.
            problems.append(f"basic_auth_users.{name}: expected a bcrypt hash ($2b$..., cost 04 to 15, 60 characters)")
        else:
            users[name] = hashed
    return users


def _bcrypt_available() -> bool:
    try:
        import bcrypt  # noqa: F401  # optional dependency, only checked for here
    except ImportError:
        return False
    return True


def make_ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """Build the server's TLS context, or raise ConfigError naming the file that could not be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        context.maximum_version = _TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as error:
        message = f"tls_server_config: cannot load cert_file {tls.cert_file!r} with key_file {tls.key_file!r}: {error}"
        raise ConfigError([message]) from None
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as error:
            message = f"tls_server_config.client_ca_file: cannot load {tls.client_ca_file!r}: {error}"
            raise ConfigError([message]) from None
    return context


class BasicAuth:
    """Check HTTP basic auth credentials against bcrypt hashes, without revealing which user names exist."""

    def __init__(self, users: Mapping[str, str]) -> None:
        import bcrypt

        self._bcrypt = bcrypt
        self._users = dict(users)
        # Unknown users are checked against this hash too, at the highest cost configured, so that they
        # take as long as the slowest known user.
        rounds = max((int(hashed[4:6]) for hashed in self._users.values()), default=10)
        self._dummy = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=rounds)).decode()
        self._accepted: set[bytes] = set()
        # bcrypt is slow on purpose: its own threads keep a flood of bad logins away from the default pool,
        # which DNS lookups and reloads use.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")

    def _digest(self, username: str, password: str, hashed: str) -> bytes:
        return hashlib.sha256(f"{username}\0{password}\0{hashed}".encode()).digest()

    def _verify(self, password: str, hashed: str) -> bool:
        try:
            return bool(self._bcrypt.checkpw(password.encode(), hashed.encode()))
        except ValueError:
            # bcrypt 5 rejects passwords over 72 bytes instead of truncating them: a wrong password.
            return False

    async def _verify_in_thread(self, password: str, hashed: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._verify, password, hashed)

    async def check(self, header: str | None) -> bool:
        """Return whether an ``Authorization`` header carries a configured user and its password."""
        credentials = _decode_basic(header)
        if credentials is None:
            return False
        username, password = credentials
        hashed = self._users.get(username)
        if hashed is None:
            await self._verify_in_thread(password, self._dummy)
            return False
        digest = self._digest(username, password, hashed)
        if digest in self._accepted:
            return True
        if not await self._verify_in_thread(password, hashed):
            return False
        if len(self._accepted) >= _CACHE_SIZE:
            self._accepted.clear()
        self._accepted.add(digest)
        return True


def _decode_basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, separator, password = decoded.partition(":")
    if not separator:
        return None
    return username, password


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(auth: BasicAuth) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Build a middleware that requires basic auth on every path except the health endpoints."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or await auth.check(request.headers.get("Authorization")):
            return await handler(request)
        log.debug("request rejected: missing or wrong credentials", extra={"path": request.path})
        return web.Response(
            status=401,
            text="unauthorized: this exporter needs HTTP basic auth\n",
            headers={"WWW-Authenticate": 'Basic realm="cml-exporter", charset="UTF-8"'},
        )

    return middleware
