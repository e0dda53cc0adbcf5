"""`smartcharge serve` as a user runs it: a subprocess, a site file, TLS, clean SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import ssl
import subprocess
import sys

import aiohttp

from tests.tls_certs import make_server_cert

SITE = """
[site]
name = "cli test"
[server]
heartbeat_interval_s = 60
[[stations]]
id = "CP1"
password = "station-password-01"
[[stations.connectors]]
id = 1
"""


async def _start(tmp_path, *extra):
    config = tmp_path / "site.toml"
    config.write_text(SITE)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smartcharge", "serve", "--config", str(config), "--host",
        "127.0.0.1", "--port", "0", "--db", str(tmp_path / "cli.sqlite"), "--log-level",
        "WARNING", *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    match = re.search(rb"listening on (\w+)://([\d.]+):(\d+)", line)
    assert match, line
    return process, match.group(1).decode(), int(match.group(3))


async def _boot(url: str, ssl_context: ssl.SSLContext | bool = True) -> dict:
    token = base64.b64encode(b"CP1:station-password-01").decode()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, protocols=("ocpp1.6",), ssl=ssl_context,
                                   headers={"Authorization": f"Basic {token}"}) as ws:
            await ws.send_str(json.dumps([2, "1", "BootNotification", {
                "chargePointVendor": "V", "chargePointModel": "M"}]))
            while True:   # the site controller may call the station (GetConfiguration, ...)
                frame = json.loads((await ws.receive(timeout=10)).data)
                if frame[0] == 3 and frame[1] == "1":
                    return frame


async def test_serve_boots_a_station_and_stops_cleanly_on_sigterm(tmp_path):
    process, scheme, port = await _start(tmp_path)
    try:
        answer = await _boot(f"ws://127.0.0.1:{port}/ocpp/CP1")
        assert answer[2]["status"] == "Accepted" and answer[2]["interval"] == 60
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    assert (tmp_path / "cli.sqlite").exists()


async def test_serve_over_tls_security_profile_2(tmp_path):
    cert, key = make_server_cert(tmp_path)
    process, scheme, port = await _start(tmp_path, "--tls-cert", str(cert), "--tls-key",
                                         str(key))
    try:
        assert scheme == "https"
        trust = ssl.create_default_context(cafile=str(tmp_path / "server-CA.pem"))
        answer = await _boot(f"wss://127.0.0.1:{port}/ocpp/CP1", trust)
        assert answer[2]["status"] == "Accepted"
    finally:
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 20) == 0


def test_bad_site_file_is_reported_with_its_field(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text(SITE.replace('"station-password-01"', '"short"'))
    result = subprocess.run([sys.executable, "-m", "smartcharge", "serve", "--config",
                             str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "stations[0].password (line 8)" in result.stderr
