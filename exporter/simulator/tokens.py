"""JWT-shaped bearer tokens that one simulated worker issues, checks and expires."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time

# Clients never verify the signature, so a throwaway key keeps the tokens well-formed and nothing more.
_SIGNING_KEY = b"cml-simulator-not-a-secret"
_ISSUER = "com.cisco.virl"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, object]) -> str:
    """Return an HS256 JWT for ``claims``, signed with the simulator's throwaway key."""
    header = _b64url(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(_SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class TokenStore:
    """The tokens one worker has issued, each with its expiry time in Unix seconds."""

    _serial = itertools.count(1)

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}

    def issue(self, subject: str, ttl: float, now: float | None = None) -> str:
        issued_at = time.time() if now is None else now
        claims = {
            "iss": _ISSUER,
            "sub": subject,
            "iat": int(issued_at),
            "exp": int(issued_at + ttl),
            # A unique id keeps two logins in the same second from sharing a token, so expiring
            # one never revives the other.
            "jti": str(next(self._serial)),
        }
        token = make_jwt(claims)
        self._expiry[token] = issued_at + ttl
        return token

    def is_valid(self, token: str, now: float | None = None) -> bool:
        """Return True for a token this worker issued that has not expired; drop it once expired."""
        expiry = self._expiry.get(token)
        if expiry is None:
            return False
        if (time.time() if now is None else now) >= expiry:
            del self._expiry[token]
            return False
        return True

    def expire_all(self) -> None:
        self._expiry.clear()

    def __len__(self) -> int:
        return len(self._expiry)
