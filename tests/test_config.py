"""Configuration loading: every invalid file names its key path, secrets never show, the example is valid."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from exporter.config import ConfigError, Secret, load_config, parse_duration

ROOT = Path(__file__).resolve().parent.parent
INVALID = ROOT / "tests" / "data" / "config"

EXPECTED_PROBLEMS = {
    "invalid-unknown-key.yaml": [
        "workers[0].tsl: unknown key; expected one of name, url, credentials, timeout, tls, cache, breaker, "
        "collect, proxy_url",
    ],
    "invalid-duplicate-name.yaml": ["workers[1].name: duplicate worker name 'worker-01', first used by workers[0]"],
    "invalid-url-scheme.yaml": ["workers[2].url: scheme 'ftp' is not supported; expected http or https"],
    "invalid-url-userinfo.yaml": [
        "workers[0].url: contains user info; remove it and put the user name and password under credentials",
    ],
    "invalid-duration.yaml": [
        "defaults.cache.ttl: invalid duration 15; expected a number and a unit, such as 500ms, 5s, 2m or 1h",
        "workers[0].timeout: invalid duration '5 seconds'; expected a number and a unit, such as 500ms, 5s, 2m or 1h",
    ],
    "invalid-missing-env.yaml": [
        "credentials.default.password: environment variable CML_EXPORTER_TEST_UNSET_VARIABLE is not set",
    ],
    "invalid-unknown-credentials.yaml": ["workers[0].credentials: no credentials named 'ops' under credentials"],
    "invalid-several-faults.yaml": [
        "credentials.default: missing password or password_file",
        "workers[0].name: invalid name 'worker 01'; expected 1-128 letters, digits, '.', '_', ':' or '-'",
        "workers[1].url: missing; expected the worker's base URL, such as https://cml-01.example.net",
        "workers[1].breaker.fail_max: invalid value 0; expected a whole number of at least 1",
        "workers[1].breaker.max_reset_timeout: must not be shorter than reset_timeout",
    ],
    "invalid-url-without-scheme.yaml": [
        "workers[0].url: 'cml-1.example.net' has no scheme; start it with https:// (or http://), "
        "as in https://cml-01.example.net",
    ],
    "invalid-ca-file.yaml": [
        "workers[0].tls.ca_file: cannot read '{dir}/no-such-ca.pem': No such file or directory",
    ],
}


@pytest.mark.parametrize("file_name", sorted(EXPECTED_PROBLEMS))
def test_invalid_config_names_key_path(file_name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(INVALID / file_name)

    expected = [problem.replace("{dir}", str(INVALID)) for problem in EXPECTED_PROBLEMS[file_name]]
    assert caught.value.problems == expected


def test_every_invalid_file_has_expected_problems() -> None:
    assert sorted(path.name for path in INVALID.glob("invalid-*.yaml")) == sorted(EXPECTED_PROBLEMS)


def test_url_with_user_info_never_echoes_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(INVALID / "invalid-url-userinfo.yaml")

    assert "hunter2" not in str(caught.value)


def _example_in(tmp_path: Path) -> Path:
    example = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config.example.yaml", example)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cml-readonly-password").write_text("from-a-file\n")
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "cml-ca.pem"))
    return example


def test_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_PASSWORD", "from-the-environment")
    monkeypatch.setenv("CML_READONLY_USER", "viewer")

    config = load_config(_example_in(tmp_path))

    assert [worker.name for worker in config.workers] == ["worker-01", "worker-02", "worker-03"]
    first, second, third = config.workers
    assert first.credentials.password.reveal() == "from-the-environment"
    assert first.tls.insecure_skip_verify is True
    assert second.cache.ttl == 30
    assert second.cache.licensing_ttl == 300
    assert third.credentials.username == "viewer"
    assert third.credentials.password.reveal() == "from-a-file"
    assert third.timeout == 10
    assert third.url == "https://cml-worker-03.example.net:8443"


def test_secret_never_prints() -> None:
    secret = Secret("hunter2")

    assert repr(secret) == "<secret>"
    assert str(secret) == "<secret>"
    assert f"{secret}" == "<secret>"
    assert "hunter2" not in repr({"password": secret})


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("5s", 5), ("2m", 120), ("1h", 3600), ("1m30s", 90), ("1.5s", 1.5)]
)
def test_duration_parses_prometheus_style(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 s", "s", "-1s", "5sec", "1" * 401 + "s", "11y"])
def test_duration_rejects_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_workers_file_in_file_sd_form_adds_workers(tmp_path: Path) -> None:
    (tmp_path / "inventory.json").write_text(
        json.dumps([{"targets": ["cml-9.example.net:8443"], "labels": {"name": "worker-09"}}])
    )
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\n"
        "workers_file: inventory.json\n"
        "workers: [{name: worker-01, url: 'https://cml-1.example.net'}]\n"
    )

    config = load_config(tmp_path / "config.yaml")

    assert [worker.name for worker in config.workers] == ["worker-01", "worker-09"]
    assert config.workers[1].url == "https://cml-9.example.net:8443"


def _check_config(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "exporter", "check-config", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_check_config_command_reports_and_exits() -> None:
    bad = _check_config(str(INVALID / "invalid-url-scheme.yaml"))

    assert bad.returncode == 1
    assert "workers[2].url: scheme 'ftp' is not supported" in bad.stderr


def test_check_config_command_accepts_valid_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\n"
        "workers: [{name: worker-01, url: 'https://cml-1.example.net'}]\n"
    )

    good = _check_config("--config.file", str(tmp_path / "config.yaml"))

    assert good.returncode == 0
    assert "valid, 1 worker(s): worker-01" in good.stdout


def test_ca_file_resolves_against_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\n"
        "workers: [{name: worker-01, url: 'https://cml-1.example.net', tls: {ca_file: ca.pem}}]\n"
    )
    monkeypatch.chdir(ROOT)

    config = load_config(tmp_path / "config.yaml")

    assert config.workers[0].tls.ca_file == str((tmp_path / "ca.pem").resolve())


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("workers: [\n")

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert str(tmp_path / "config.yaml") in caught.value.problems[0]
    assert "<unicode string>" not in str(caught.value)


def test_ca_file_without_certificate_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\n"
        "workers: [{name: worker-01, url: 'https://cml-1.example.net', tls: {ca_file: ca.pem}}]\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert caught.value.problems[0].startswith("workers[0].tls.ca_file: ")
    assert "holds no PEM CA certificate" in caught.value.problems[0]


def test_non_utf8_password_file_is_not_quoted(tmp_path: Path) -> None:
    (tmp_path / "password").write_bytes(b"Hunter2\xff\xfe")
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password_file: password}}\n"
        "workers: [{name: worker-01, url: 'https://cml-1.example.net'}]\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert caught.value.problems == [
        f"credentials.default.password_file: {str(tmp_path / 'password')!r} is not valid UTF-8 "
        "(first invalid byte at offset 7)"
    ]
    assert "Hunter2" not in str(caught.value)


def test_yaml_alias_bomb_is_rejected_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    lines.append("workers: [{name: *i}]")
    (tmp_path / "config.yaml").write_text("\n".join(lines) + "\n")

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert caught.value.problems == [
        f"{str(tmp_path / 'config.yaml')!r} contains more than 200000 values once YAML aliases are expanded"
    ]


def test_misplaced_secrets_never_quoted(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\n"
        "workers:\n"
        "  - {name: a, url: 'admin:Hunter2@cml-1.example.net'}\n"
        "  - {name: b, url: 'https://cml-2.example.net', credentials: {username: u, password: Hunter2}}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert "Hunter2" not in str(caught.value)
    assert "workers[0].url: contains user info" in str(caught.value)


@pytest.mark.parametrize("proxy", ["not a url", "socks5://proxy:1080", "http://"])
def test_invalid_proxy_url_is_rejected(proxy: str, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\n"
        f"workers: [{{name: worker-01, url: 'https://cml-1.example.net', proxy_url: '{proxy}'}}]\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert caught.value.problems[0].startswith("workers[0].proxy_url: invalid proxy URL")


@pytest.mark.parametrize("line", ["password: S3cretPW: x", 'password: "S3cretPW'])
def test_yaml_syntax_error_never_quotes_line(line: str, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        f"credentials:\n  default:\n    username: admin\n    {line}\nworkers: []\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert "S3cretPW" not in str(caught.value)
    assert len(caught.value.problems) == 1
    assert "\n" not in caught.value.problems[0]
    assert "is not valid YAML at line" in caught.value.problems[0]


def test_defaults_ca_file_reported_once(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "defaults: {tls: {ca_file: nope.pem}}\n"
        "credentials: {default: {username: admin, password: x}}\n"
        "workers:\n"
        "  - {name: a, url: 'https://cml-1.example.net'}\n"
        "  - {name: b, url: 'https://cml-2.example.net'}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("defaults.tls.ca_file: cannot read ")


@pytest.mark.parametrize(
    "credentials",
    [
        "{username: admin, password hunter2}",
        "{username: admin, password: !hunter2}",
        "{username: admin, password: *hunter2}",
        "{username: admin, password: !!int hunter2}",
        "{username: admin, password: !!timestamp hunter2}",
    ],
)
def test_mistyped_password_never_quoted(credentials: str, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        f"credentials:\n  default: {credentials}\nworkers: [{{name: a, url: 'https://cml-1.example.net'}}]\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"), [("url", "http://admin:hunter2"), ("proxy_url", "ftp://u:hunter2@proxy.example.net")]
)
def test_bad_url_with_password_never_quoted(key: str, value: str, tmp_path: Path) -> None:
    url = "" if key == "url" else "url: 'https://cml-1.example.net', "
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\n"
        f"workers: [{{name: a, {url}{key}: '{value}'}}]\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert "hunter2" not in str(caught.value)
    assert caught.value.problems[0].startswith(f"workers[0].{key}: ")


def test_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "workers.yml")
    (tmp_path / "config.yaml").write_text(
        "credentials: {default: {username: admin, password: x}}\nworkers_file: workers.yml\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert caught.value.problems == [f"workers_file: {str(tmp_path / 'workers.yml')!r} is not a regular file"]


def test_check_interval_has_a_floor(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("exporter: {workers_file_check_interval: 0.0000001ms}\n")

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")

    assert caught.value.problems[0].startswith("exporter.workers_file_check_interval: invalid interval")
