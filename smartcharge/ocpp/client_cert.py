"""Security profile 3 at the endpoint: the station's identity is its certificate's subject CN.

The TLS layer has already verified the certificate against the station CA (`smartcharge/tls.py`);
here the connection must carry one, with exactly one CN, equal to the identity in the URL (the
OCPP 1.6 security whitepaper and OCPP 2.0.1 part 2 A00 put the Charge Point identity in the CN).
Guessing is no threat here (a certificate cannot be guessed), so these refusals are not throttled.
"""

from __future__ import annotations

from aiohttp import web


def certificate_identity(request: web.Request) -> str | None:
    """The verified client certificate's subject CN, or None (no TLS, no cert, not one CN)."""
    transport = request.transport
    if transport is None or transport.get_extra_info("ssl_object") is None:
        return None
    peer = transport.get_extra_info("peercert") or {}
    names = [value for rdn in peer.get("subject", ()) for key, value in rdn
             if key == "commonName"]
    return names[0] if len(names) == 1 else None
