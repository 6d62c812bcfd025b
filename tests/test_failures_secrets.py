"""Secrets: no password, token or Authorization header in any output, whatever fails.

The exporter runs with debug logging, credentials from the configuration and real tokens from the
simulator, while logins, TLS and HTTP requests fail in turn.
"""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from exporter.config import CacheConfig, Config, Credentials, ExporterSettings, Secret, TLSConfig, parse_config
from exporter.errors import ConfigError
from exporter.log import JsonFormatter, LogfmtFormatter
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.failures_helpers import scrape_on_time
from tests.support import ExporterUnderTest, worker_config

PASSWORD = "s3cret-Pa55word"
SHORT_CACHE = CacheConfig(ttl=0.05, licensing_ttl=0.05)
# Every JWT starts with the base64 of '{"', so any token in a text shows up as "eyJ".
TOKEN_PREFIX = "eyJ"


async def test_no_secret_in_any_output(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rendered = io.StringIO()
    handlers = []
    for formatter in (LogfmtFormatter(), JsonFormatter()):
        handler = logging.StreamHandler(rendered)
        handler.setFormatter(formatter)
        handler.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
    profile = WorkerProfile(password=PASSWORD)
    sim = Simulator()
    for name in ("plain", "rejected", "secure"):
        sim.add_worker(name, profile, tls=name == "secure")
    async with sim:
        credentials = Credentials("default", "admin", Secret(PASSWORD))
        wrong = Credentials("default", "admin", Secret(PASSWORD + "-old"))
        workers = (
            worker_config("plain", sim.base_url("plain"), credentials=credentials, cache=SHORT_CACHE),
            worker_config("rejected", sim.base_url("rejected"), credentials=wrong, cache=SHORT_CACHE),
            worker_config("secure", sim.base_url("secure"), credentials=credentials, tls=TLSConfig()),
        )
        config = Config(workers=workers, settings=ExporterSettings(default_scrape_timeout=5.0))
        outputs = []

        async with ExporterUnderTest(config) as exporter:
            outputs.append((await scrape_on_time(exporter)).text)
            for fault in (Fault(status=500), Fault(status=401), Fault(status=403), Fault(body="html")):
                sim.set_fault("plain", "system_health", fault)
                sim.expire_tokens("plain")
                await asyncio.sleep(0.06)
                outputs.append((await scrape_on_time(exporter)).text)
                outputs.append((await scrape_on_time(exporter, "/probe?target=plain")).text)
            sim.set_fault("plain", "authenticate", Fault(status=500))
            sim.expire_tokens("plain")
            await asyncio.sleep(0.06)
            outputs.append((await scrape_on_time(exporter)).text)
            for path in ("/", "/sd", "/-/ready"):
                status, body, _ = await exporter.get(path)
                assert status == 200
                outputs.append(body)

        logins = sim.count("plain", "authenticate")
    for handler in handlers:
        logging.getLogger().removeHandler(handler)

    texts = [*outputs, rendered.getvalue(), *(repr(record.__dict__) for record in caplog.records)]
    assert logins >= 3
    assert "login rejected" in rendered.getvalue()
    assert "reason=tls" in rendered.getvalue()
    for text in texts:
        assert PASSWORD not in text
        assert TOKEN_PREFIX not in text
        assert "Bearer" not in text
        assert "Authorization" not in text


def test_url_with_user_info_is_rejected() -> None:
    raw = {
        "credentials": {"default": {"username": "admin", "password": PASSWORD}},
        "workers": [{"name": "w", "url": f"https://admin:{PASSWORD}@cml.invalid"}],
    }

    with pytest.raises(ConfigError) as rejected:
        parse_config(raw)

    assert "user info" in str(rejected.value)
    assert PASSWORD not in str(rejected.value)


def test_secret_repr_hides_value() -> None:
    secret = Secret(PASSWORD)

    assert PASSWORD not in repr(secret)
    assert PASSWORD not in str(secret)
    assert PASSWORD not in repr(Credentials("default", "admin", secret))
