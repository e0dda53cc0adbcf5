"""Security profile 3: TLS with client certificates (OCPP 1.6 security whitepaper, 2.0.1 A00).

`serve --tls-client-ca CA.pem`: a station must present a certificate signed by that CA, and its
subject CN is its identity, which must equal the one in the URL. The test makes its own CA,
server and client certificates and connects over TLS on 127.0.0.1 with a real client.
"""

from __future__ import annotations

import json
import re
import select
import signal
import ssl
import subprocess
import sys

import aiohttp
import pytest

from smartcharge.credentials import hash_secret
from tests.tls_certs import Authority

SITE = """
[site]
name = "profile 3"
[[stations]]
id = "CP1"
password = "{hashed}"
[[stations.connectors]]
id = 1
[[stations]]
id = "CP2"
[[stations.connectors]]
id = 1
"""


@pytest.fixture(scope="module")
def profile3(tmp_path_factory):
    """One profile-3 server for the module: each test only connects to it (no test changes
    what the next one meets), and a start of `serve` costs most of a test's time."""
    directory = tmp_path_factory.mktemp("profile3")
    ca = Authority(directory, "station CA")
    cert, key = ca.issue("127.0.0.1", "server", server=True)
    config = directory / "site.toml"
    config.write_text(SITE.format(hashed=hash_secret("station-password-01", n=2 ** 10)))
    process = subprocess.Popen(
        [sys.executable, "-m", "smartcharge", "serve", "--config", str(config), "--host",
         "127.0.0.1", "--port", "0", "--db", str(directory / "p3.sqlite"), "--log-level",
         "WARNING", "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca",
         str(ca.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)   # bounded, as before
        line = process.stdout.readline() if ready else b""
        match = re.search(rb"listening on https://[\d.]+:(\d+)", line)
        assert match, line + (b"" if process.poll() is None else process.stderr.read())
        yield ca, int(match.group(1))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def _client_context(ca: Authority, client: tuple | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.path))
    if client:
        context.load_cert_chain(*client)
    return context


BOOTS = {"ocpp1.6": {"chargePointVendor": "V", "chargePointModel": "M"},
         "ocpp2.0.1": {"reason": "PowerUp", "chargingStation": {"vendorName": "V",
                                                                "model": "M"}}}


async def _connect(port: int, station_id: str, context: ssl.SSLContext,
                   protocol: str = "ocpp1.6") -> int | dict:
    """The handshake's HTTP status when refused, else the BootNotification answer."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(f"wss://127.0.0.1:{port}/ocpp/{station_id}",
                                       protocols=(protocol,), ssl=context)
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
        async with ws:
            assert ws.protocol == protocol
            await ws.send_str(json.dumps([2, "b", "BootNotification", BOOTS[protocol]]))
            while True:
                frame = json.loads((await ws.receive(timeout=10)).data)
                if frame[0] == 3 and frame[1] == "b":
                    return frame[2]


async def test_right_certificate_connects_without_basic_auth(profile3):
    ca, port = profile3
    for station_id in ("CP1", "CP2"):   # CP1 has a password: the certificate replaces it
        answer = await _connect(port, station_id, _client_context(
            ca, ca.issue(station_id, f"client-{station_id}")))
        assert answer["status"] == "Accepted", station_id
    # a 2.0.1 station is held to the same profile 3
    answer = await _connect(port, "CP1", _client_context(ca, ca.issue("CP1", "client-201")),
                            "ocpp2.0.1")
    assert answer["status"] == "Accepted"


async def test_no_client_certificate_is_refused(profile3):
    ca, port = profile3
    assert await _connect(port, "CP2", _client_context(ca, None)) == 403


async def test_certificate_of_another_station_is_refused(profile3):
    ca, port = profile3
    other = ca.issue("CP1", "client-cp1")
    assert await _connect(port, "CP2", _client_context(ca, other)) == 403
    assert await _connect(port, "CP2", _client_context(ca, other), "ocpp2.0.1") == 403


async def test_certificate_from_another_ca_fails_the_tls_handshake(profile3, tmp_path):
    ca, port = profile3
    stranger = Authority(tmp_path, "other CA").issue("CP2", "stranger")
    with pytest.raises(aiohttp.ClientError):
        await _connect(port, "CP2", _client_context(ca, stranger))


async def test_the_dashboard_still_answers_without_a_client_certificate(profile3):
    # the listener asks for a certificate but only the OCPP endpoint demands one
    ca, port = profile3
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{port}/", ssl=_client_context(ca, None)) as r:
            assert r.status == 200
