"""Configuration: load the YAML file, validate every key and report each problem by its key path.

Secrets (passwords) are held in ``Secret`` so they never reach a log line, repr or message.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import reprlib
import ssl
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from exporter.errors import ConfigError

T = TypeVar("T")


class Secret:
    """A password or token; prints as ``<secret>`` and compares by value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class TLSConfig:
    insecure_skip_verify: bool = False
    ca_file: str | None = None


@dataclass(frozen=True)
class CacheConfig:
    ttl: float = 15.0
    licensing_ttl: float = 300.0


@dataclass(frozen=True)
class BreakerConfig:
    fail_max: int = 3
    reset_timeout: float = 30.0
    max_reset_timeout: float = 300.0


@dataclass(frozen=True)
class CollectConfig:
    per_owner: bool = False


@dataclass(frozen=True)
class Credentials:
    name: str
    username: str
    password: Secret


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    url: str
    credentials: Credentials
    timeout: float = 5.0
    tls: TLSConfig = field(default_factory=TLSConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    proxy_url: str | None = None


@dataclass(frozen=True)
class ExporterSettings:
    scrape_timeout_offset: float = 0.5
    default_scrape_timeout: float = 10.0
    max_concurrent_workers: int = 256
    max_response_bytes: int = 16 * 1024 * 1024
    retry_after_max: float = 300.0
    workers_file_check_interval: float = 10.0


@dataclass(frozen=True)
class Config:
    workers: tuple[WorkerConfig, ...]
    settings: ExporterSettings = field(default_factory=ExporterSettings)
    source: str | None = None
    # The inventory file's path resolved against the configuration file's directory.
    workers_file: str | None = None

    def worker(self, name: str) -> WorkerConfig | None:
        for worker in self.workers:
            if worker.name == name:
                return worker
        return None


# Values from the file are quoted back in messages through this. A huge value (or a YAML alias that
# expands to one) then cannot blow up a message, and a password typed in the wrong place shows at most
# its first characters.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = 40
_SHORT_REPR.maxother = 40
_SHORT_REPR.maxlevel = 1
_SHORT_REPR.maxlist = _SHORT_REPR.maxdict = _SHORT_REPR.maxtuple = 3
# Values a configuration may hold after YAML aliases are expanded; far above any real fleet.
MAX_CONFIG_VALUES = 200_000
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# No setting needs a longer duration; a longer one is a typo, or a string of digits that becomes infinite.
MAX_DURATION_SECONDS = 10 * 31536000


def short_repr(value: Any) -> str:
    """Quote a value from a configuration file for a message, cut short."""
    return _SHORT_REPR.repr(value)


_show = short_repr


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(text: str) -> float:
    """Parse a Prometheus-style duration (``500ms``, ``5s``, ``1m30s``) into seconds."""
    if not isinstance(text, str) or not text or _DURATION_PART.sub("", text) != "":
        raise ValueError(f"invalid duration {_show(text)}; expected a number and a unit, such as 500ms, 5s, 2m or 1h")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))
    if not seconds < MAX_DURATION_SECONDS:
        raise ValueError(f"invalid duration {_show(text)}; expected less than 10 years")
    return seconds


class _Problems:
    """Collects problems with their key paths, so that every fault in a file is reported at once."""

    def __init__(self) -> None:
        self.items: list[str] = []
        # Names of credentials entries that were present but invalid, already reported on their own.
        self.broken: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], *, quote_keys: bool = True) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key in allowed:
                continue
            if not quote_keys:
                # Under credentials a mistyped key may be a password ("password hunter2"): never show it.
                expected = ", ".join(allowed)
                self.add(path, f"unknown key (not shown, as it may contain a secret); expected one of {expected}")
            else:
                shown = _show(key).strip("'")
                self.add(f"{path}.{shown}" if path else shown, f"unknown key; expected one of {', '.join(allowed)}")
        return dict(value)

    def convert(self, value: Any, path: str, convert: Callable[[Any], T], default: T) -> T:
        try:
            return convert(value)
        except (TypeError, ValueError) as error:
            self.add(path, str(error))
            return default


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"invalid duration {_show(value)}; expected more than zero")
    return seconds


def _check_interval(value: Any) -> float:
    seconds = _duration(value)
    if seconds < 0.1:
        raise ValueError(f"invalid interval {_show(value)}; expected at least 100ms, as each check reads the file")
    return seconds


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"invalid value {_show(value)}; expected true or false")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"invalid value {_show(value)}; expected a whole number of at least 1")
    return value


def _optional_string(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"invalid value {_show(value)}; expected a non-empty string")
    return value


def _section(
    problems: _Problems, raw: Any, path: str, cls: type[T], base: T, parsers: Mapping[str, Callable[[Any], Any]]
) -> T:
    values = problems.mapping(raw, path, tuple(parsers))
    merged = dict(vars(base))
    for key, parse in parsers.items():
        if key in values:
            merged[key] = problems.convert(values[key], f"{path}.{key}", parse, merged[key])
    return cls(**merged)


def _proxy_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
        raise ValueError("invalid proxy URL; expected http://HOST:PORT or https://HOST:PORT")
    return value


_TLS_KEYS = {"insecure_skip_verify": _boolean, "ca_file": _optional_string}
_CACHE_KEYS = {"ttl": _duration, "licensing_ttl": _duration}
_BREAKER_KEYS = {"fail_max": _positive_int, "reset_timeout": _duration, "max_reset_timeout": _duration}
_COLLECT_KEYS = {"per_owner": _boolean}
_SETTINGS_KEYS = {
    "scrape_timeout_offset": parse_duration,
    "default_scrape_timeout": _duration,
    "max_concurrent_workers": _positive_int,
    "max_response_bytes": _positive_int,
    "retry_after_max": _duration,
    "workers_file_check_interval": _check_interval,
}
_WORKER_KEYS = ("name", "url", "credentials", "timeout", "tls", "cache", "breaker", "collect", "proxy_url")
_DEFAULT_KEYS = ("credentials", "timeout", "tls", "cache", "breaker", "collect", "proxy_url")
_TOP_KEYS = ("exporter", "defaults", "credentials", "workers", "workers_file")


def _expand_env(text: str, path: str, problems: _Problems) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            problems.add(path, f"environment variable {name} is not set")
            return ""
        return os.environ[name]

    return _ENV_REFERENCE.sub(replace, text)


def _credentials(raw: Any, base_dir: Path, problems: _Problems) -> dict[str, Credentials]:
    """Read the named credentials; an invalid entry is reported once and its name kept in ``problems.broken``."""
    result: dict[str, Credentials] = {}
    if raw is None:
        return result
    if not isinstance(raw, Mapping):
        problems.add("credentials", f"expected a mapping of names to credentials, got {type(raw).__name__}")
        return result
    for name, entry in raw.items():
        path = f"credentials.{name}"
        values = problems.mapping(entry, path, ("username", "password", "password_file"), quote_keys=False)
        username = values.get("username")
        if not isinstance(username, str) or not username:
            problems.add(f"{path}.username", "missing; expected the CML user name")
            problems.broken.add(str(name))
            continue
        username = _expand_env(username, f"{path}.username", problems)
        password = _password(values, path, base_dir, problems)
        if password is None:
            problems.broken.add(str(name))
        else:
            result[str(name)] = Credentials(str(name), username, Secret(password))
    return result


def _password(values: dict[str, Any], path: str, base_dir: Path, problems: _Problems) -> str | None:
    if "password" in values and "password_file" in values:
        problems.add(path, "both password and password_file are set; keep one")
        return None
    if "password_file" in values:
        file_name = values["password_file"]
        if not isinstance(file_name, str) or not file_name:
            problems.add(f"{path}.password_file", "expected a file path")
            return None
        file_path = base_dir / os.path.expandvars(file_name)
        try:
            return read_text_file(file_path, max_bytes=4096).rstrip("\r\n")
        except ValueError as error:
            problems.add(f"{path}.password_file", str(error))
            return None
    if "password" in values:
        password = values["password"]
        if not isinstance(password, str):
            problems.add(f"{path}.password", "expected a string; quote it in YAML")
            return None
        return _expand_env(password, f"{path}.password", problems)
    problems.add(path, "missing password or password_file")
    return None


def check_worker_url(url: Any) -> str:
    """Return ``url`` without a trailing slash, or raise ValueError saying what is wrong with it."""
    if not isinstance(url, str) or not url:
        raise ValueError("missing; expected the worker's base URL, such as https://cml-01.example.net")
    parts = urlsplit(url)
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    if "@" in authority:
        raise ValueError("contains user info; remove it and put the user name and password under credentials")
    if not parts.scheme or "://" not in url:
        raise ValueError(f"{_show(url)} has no scheme; start it with https:// (or http://), as in https://cml-01.example.net")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"scheme {_show(parts.scheme)} is not supported; expected http or https")
    if parts.username is not None or parts.password is not None:
        raise ValueError("contains user info; remove it and put the user name and password under credentials")
    if not parts.hostname:
        raise ValueError("has no host name")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port; expected a number from 1 to 65535") from None
    return url.rstrip("/")


@dataclass(frozen=True)
class _WorkerDefaults:
    credentials: str = "default"
    timeout: float = 5.0
    tls: TLSConfig = field(default_factory=TLSConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    proxy_url: str | None = None


def _worker_settings(raw: dict[str, Any], path: str, base: _WorkerDefaults, problems: _Problems) -> _WorkerDefaults:
    """Apply the keys in ``raw`` over ``base``; nested sections override key by key."""
    credentials = raw.get("credentials", base.credentials)
    if not isinstance(credentials, str):
        got = type(credentials).__name__
        problems.add(f"{path}.credentials", f"expected the name of an entry under credentials, got a {got}")
        credentials = base.credentials
    timeout = base.timeout
    if "timeout" in raw:
        timeout = problems.convert(raw["timeout"], f"{path}.timeout", _duration, base.timeout)
    proxy_url = base.proxy_url
    if "proxy_url" in raw:
        proxy_url = problems.convert(raw["proxy_url"], f"{path}.proxy_url", _proxy_url, None)
    breaker = _section(problems, raw.get("breaker"), f"{path}.breaker", BreakerConfig, base.breaker, _BREAKER_KEYS)
    if breaker.max_reset_timeout < breaker.reset_timeout:
        problems.add(f"{path}.breaker.max_reset_timeout", "must not be shorter than reset_timeout")
    return _WorkerDefaults(
        credentials=credentials,
        timeout=timeout,
        tls=_section(problems, raw.get("tls"), f"{path}.tls", TLSConfig, base.tls, _TLS_KEYS),
        cache=_section(problems, raw.get("cache"), f"{path}.cache", CacheConfig, base.cache, _CACHE_KEYS),
        breaker=breaker,
        collect=_section(problems, raw.get("collect"), f"{path}.collect", CollectConfig, base.collect, _COLLECT_KEYS),
        proxy_url=proxy_url,
    )


def _ca_file(tls: TLSConfig, path: str, base_dir: Path, problems: _Problems) -> TLSConfig:
    """Resolve ``ca_file`` against the configuration's folder and check that it can be read."""
    if tls.ca_file is None:
        return tls
    file_path = (base_dir / os.path.expandvars(tls.ca_file)).resolve()
    try:
        stat = file_path.stat()
        problem = _ca_file_problem(str(file_path), stat.st_mtime_ns, stat.st_size)
    except OSError as error:
        problem = f"cannot read {str(file_path)!r}: {error.strerror}"
    if problem is not None:
        problems.add(f"{path}.tls.ca_file", problem)
    return dataclasses.replace(tls, ca_file=str(file_path))


@functools.lru_cache(maxsize=64)
def _ca_file_problem(path: str, mtime_ns: int, size: int) -> str | None:
    # Loading a CA file takes milliseconds, and a fleet's workers usually share one: check each version
    # of a file once (the modification time and size are part of the cache key).
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as error:
        return f"{path!r} holds no PEM CA certificate that Python can load ({error.reason or error})"
    except OSError as error:
        return f"cannot read {path!r}: {error.strerror}"
    return None


def _worker(
    raw: Any,
    path: str,
    defaults: _WorkerDefaults,
    credentials: dict[str, Credentials],
    problems: _Problems,
    base_dir: Path,
) -> WorkerConfig | None:
    if isinstance(raw, Mapping) and not raw:
        problems.add(path, "empty worker; expected at least name and url")
        return None
    values = problems.mapping(raw, path, _WORKER_KEYS)
    if not values:
        return None
    name = values.get("name")
    if not isinstance(name, str) or not _WORKER_NAME.match(name):
        expected = "expected 1-128 letters, digits, '.', '_', ':' or '-'"
        problems.add(f"{path}.name", f"invalid name {_show(name)}; {expected}")
        name = None
    url = problems.convert(values.get("url"), f"{path}.url", check_worker_url, None)
    settings = _worker_settings(values, path, defaults, problems)
    # An inherited ca_file was checked once, under defaults.
    sets_ca_file = isinstance(values.get("tls"), Mapping) and "ca_file" in values["tls"]
    tls = _ca_file(settings.tls, path, base_dir, problems if sets_ca_file else _Problems())
    chosen = credentials.get(settings.credentials)
    if chosen is None and settings.credentials not in problems.broken:
        key = f"{path}.credentials" if "credentials" in values else path
        problems.add(key, f"no credentials named {_show(settings.credentials)} under credentials")
    if name is None or url is None or chosen is None:
        return None
    return WorkerConfig(
        name,
        url,
        chosen,
        settings.timeout,
        tls,
        settings.cache,
        settings.breaker,
        settings.collect,
        settings.proxy_url,
    )


def parse_config(raw: Any, base_dir: Path | None = None, source: str | None = None) -> Config:
    """Validate a parsed YAML document and build the configuration, or raise ConfigError listing every problem."""
    base_dir = base_dir or Path.cwd()
    problems = _Problems()
    top = problems.mapping(raw, "", _TOP_KEYS)
    settings = _section(problems, top.get("exporter"), "exporter", ExporterSettings, ExporterSettings(), _SETTINGS_KEYS)
    raw_defaults = problems.mapping(top.get("defaults"), "defaults", _DEFAULT_KEYS)
    defaults = _worker_settings(raw_defaults, "defaults", _WorkerDefaults(), problems)
    _ca_file(defaults.tls, "defaults", base_dir, problems)
    credentials = _credentials(top.get("credentials"), base_dir, problems)

    entries = _worker_entries(top.get("workers", []), problems)
    workers_file = problems.convert(top.get("workers_file"), "workers_file", _optional_string, None)
    if workers_file is not None:
        workers_file = str(base_dir / workers_file)
        entries += _read_workers_file(Path(workers_file), problems)

    workers: list[WorkerConfig] = []
    seen: dict[str, str] = {}
    for path, entry in entries:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        duplicate = isinstance(name, str) and name in seen
        if duplicate:
            problems.add(f"{path}.name", f"duplicate worker name {_show(name)}, first used by {seen[name]}")
        elif isinstance(name, str):
            seen[name] = path
        worker = _worker(entry, path, defaults, credentials, problems, base_dir)
        if worker is not None and not duplicate:
            workers.append(worker)

    if problems.items:
        raise ConfigError(problems.items, source)
    return Config(tuple(workers), settings, source, workers_file)


def _worker_entries(raw: Any, problems: _Problems) -> list[tuple[str, Any]]:
    """Pair each entry of the ``workers`` list with its key path."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add("workers", f"expected a list of workers, got {type(raw).__name__}")
        return []
    return [(f"workers[{index}]", entry) for index, entry in enumerate(raw)]


def _read_workers_file(path: Path, problems: _Problems) -> list[tuple[str, Any]]:
    """Read an inventory of workers: a YAML list of workers, or Prometheus file_sd JSON.

    Problems in it are reported under ``workers_file[N]``, so they are not mistaken for entries of
    the main file's ``workers`` list.
    """
    try:
        if path.suffix == ".json":
            try:
                document = json.loads(read_text_file(path))
            except json.JSONDecodeError as error:
                raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
        else:
            document = load_yaml_file(path)
    except ValueError as error:
        problems.add("workers_file", str(error))
        return []
    if isinstance(document, Mapping) and "workers" in document:
        document = document["workers"]
    if document is None:
        return []  # an empty file: the inventory has no workers right now
    if not isinstance(document, list):
        problems.add("workers_file", f"{str(path)!r}: expected a list of workers or of file_sd target groups")
        return []
    entries: list[tuple[str, Any]] = []
    for index, entry in enumerate(document):
        path_text = f"workers_file[{index}]"
        if isinstance(entry, Mapping) and "targets" in entry:
            entries += _from_target_group(entry, path_text, problems)
        else:
            entries.append((path_text, entry))
    return entries


def _from_target_group(group: Mapping[str, Any], path: str, problems: _Problems) -> list[tuple[str, Any]]:
    """Turn a file_sd target group into workers: one per target, each target a worker's URL or host:port.

    A ``name`` (or ``worker``) label names the worker when the group has a single target; otherwise
    each worker is named after its host. A ``credentials`` label applies to every target. Other
    labels are ignored.
    """
    labels = group.get("labels") or {}
    targets = group.get("targets")
    if not isinstance(labels, Mapping):
        problems.add(f"{path}.labels", f"expected a mapping of label names to values, got {type(labels).__name__}")
        return []
    if not isinstance(targets, list) or not targets:
        problems.add(f"{path}.targets", "expected a non-empty list of worker URLs or host:port")
        return []
    name = labels.get("name", labels.get("worker"))
    if name is not None and len(targets) > 1:
        problems.add(f"{path}.labels", "a name label needs a group with exactly one target; split the group")
        return []
    entries: list[tuple[str, Any]] = []
    for index, url in enumerate(targets):
        if isinstance(url, str) and "://" not in url:
            url = f"https://{url}"
        worker: dict[str, Any] = {"url": url, "name": name}
        if name is None and isinstance(url, str):
            worker["name"] = urlsplit(url).hostname
        if "credentials" in labels:
            worker["credentials"] = labels["credentials"]
        entries.append((f"{path}.targets[{index}]", worker))
    return entries


def read_text_file(path: Path, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """Read a UTF-8 text file; raise ValueError with a message that never quotes the file's content."""
    try:
        # Only regular files: opening a FIFO would block the reload, and with it every later reload.
        if not stat.S_ISREG(path.stat().st_mode):
            raise ValueError(f"{str(path)!r} is not a regular file")
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise ValueError(f"cannot read {str(path)!r}: {error.strerror}") from None
    if len(data) > max_bytes:
        raise ValueError(f"{str(path)!r} is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        # The error's own text quotes the bytes, which may be a password: give the offset only.
        raise ValueError(f"{str(path)!r} is not valid UTF-8 (first invalid byte at offset {error.start})") from None


def _check_expanded_size(document: Any, limit: int = MAX_CONFIG_VALUES) -> None:
    """Raise ValueError when the document contains more than ``limit`` values once YAML aliases are expanded.

    A few lines of nested aliases can stand for billions of values; validating or quoting them would
    exhaust memory, so such a file is rejected before anything walks it.
    """
    pending = [document]
    seen = 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > limit:
            raise ValueError(f"contains more than {limit} values once YAML aliases are expanded")
        if isinstance(value, Mapping):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _yaml_error(path: Path, error: yaml.YAMLError) -> str:
    """Describe a YAML syntax error by position only: PyYAML's own text quotes the line, password and all."""
    mark = getattr(error, "problem_mark", None)
    # PyYAML quotes names from the file (an alias or tag that may be a mistyped password): drop them.
    problem = _QUOTED.sub("'…'", getattr(error, "problem", None) or "syntax error")
    context = getattr(error, "context", None)
    context = _QUOTED.sub("'…'", context) if context else None
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    detail = f"{problem} ({context})" if context else problem
    return f"{str(path)!r} is not valid YAML{where}: {detail}"


def load_yaml_file(path: Path) -> Any:
    """Read and parse a YAML file; raise ValueError naming the file and what is wrong with it."""
    text = read_text_file(path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(_yaml_error(path, error)) from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as error:
        # A tag such as !!int or !!timestamp on a value that is not one; the error text quotes the value.
        detail = f"a value does not fit its tag ({type(error).__name__})"
        raise ValueError(f"{str(path)!r} is not valid YAML: {detail}") from None
    try:
        _check_expanded_size(document)
    except ValueError as error:
        raise ValueError(f"{str(path)!r} {error}") from None
    return document


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at ``path``."""
    file_path = Path(path)
    try:
        raw = load_yaml_file(file_path)
    except ValueError as error:
        raise ConfigError([str(error)], str(file_path)) from None
    return parse_config(raw, file_path.parent, str(file_path))
