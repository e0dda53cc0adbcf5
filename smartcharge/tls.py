"""The server's TLS context: security profile 2 (server certificate) and 3 (client certificates).

Profile 3 asks every client for a certificate signed by the station CA (`CERT_OPTIONAL`, not
`CERT_REQUIRED`): the REST API and the dashboard share the listener and their users have no
client certificates, so the OCPP endpoint is what refuses a station without one (HTTP 403, see
`ocpp/client_cert.py`). A certificate that is presented but does not verify fails the handshake.
"""

from __future__ import annotations

import ssl


def server_ssl_context(cert_file: str, key_file: str,
                       client_ca_file: str | None = None) -> ssl.SSLContext:
    """Raises OSError or ssl.SSLError when a file cannot be read or used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2   # OCPP security whitepaper
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(cafile=client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
