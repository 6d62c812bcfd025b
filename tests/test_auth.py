"""Reading a token's expiry: whatever a worker puts in the JWT, the exporter neither crashes nor loops."""

from __future__ import annotations

import base64
import json

import pytest

from exporter.auth import renewal_time, token_expiry


def _token(payload: str) -> str:
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.{encoded}.c2lnbmF0dXJl"


def test_expiry_read_from_claims() -> None:
    assert token_expiry(_token(json.dumps({"exp": 1767949200}))) == 1767949200.0


@pytest.mark.parametrize(
    "payload",
    [
        '{"exp": 1' + "0" * 330 + "}",
        '{"exp": NaN}',
        '{"exp": Infinity}',
        '{"exp": "tomorrow"}',
        '{"exp": true}',
        "[" * 100_000 + "]" * 100_000,
        "not json",
        '["exp"]',
    ],
)
def test_unusable_expiry_reads_as_none(payload: str) -> None:
    assert token_expiry(_token(payload)) is None


def test_token_without_expiry_is_kept_until_rejected() -> None:
    assert renewal_time(None, now=1000.0) == float("inf")


def test_short_token_renewed_half_way() -> None:
    assert renewal_time(1060.0, now=1000.0) == 1030.0
