"""The throwaway certificate authority behind the simulator's HTTPS workers."""

from __future__ import annotations

import ssl
from typing import Any


class CertificateAuthority:
    """A CA generated once per simulator with trustme, issuing server certificates on demand."""

    def __init__(self) -> None:
        try:
            # trustme is a test extra, so it is imported only when an HTTPS worker needs it.
            import trustme
        except ImportError as error:
            msg = "HTTPS workers need the trustme package; install it with pip install 'cml-exporter[test]'"
            raise RuntimeError(msg) from error
        self._ca: Any = trustme.CA(organization_name="cml-exporter simulator")
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}

    @property
    def cert_pem(self) -> bytes:
        return bytes(self._ca.cert_pem.bytes())

    def server_context(self, hostnames: tuple[str, ...]) -> ssl.SSLContext:
        """Return a server SSL context whose certificate names ``hostnames``."""
        context = self._contexts.get(hostnames)
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ca.issue_cert(*hostnames).configure_cert(context)
            self._contexts[hostnames] = context
        return context
