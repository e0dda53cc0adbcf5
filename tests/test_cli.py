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
import pytest

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


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read the site file"), ("[site\n", "not valid TOML")])
def test_a_site_file_it_cannot_read_is_named_once(tmp_path, content, problem):
    """docs/site-file.md: one line, the file named once - the file itself is no field, so no
    path or `<site file>` between it and the problem (`smartcharge: x.toml: x.toml: ...`)."""
    config = tmp_path / "site.toml"
    if content is not None:
        config.write_text(content)
    result = subprocess.run([sys.executable, "-m", "smartcharge", "serve", "--config",
                             str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith(f"smartcharge: {config}: {problem}"), result.stderr
    assert result.stderr.count("\n") == 1 and "<site file>" not in result.stderr


@pytest.mark.parametrize("flag, status", [((), 401), (("--insecure-open-api",), 200)])
async def test_serve_api_is_closed_without_tokens_unless_the_flag_opens_it(tmp_path, flag,
                                                                         status):
    process, scheme, port = await _start(tmp_path, *flag)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/stations") as response:
                assert response.status == status
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    stderr = (await process.stderr.read()).decode()
    if flag:
        assert "insecure-open-api" in stderr and "OPEN" in stderr
    else:
        assert "refuse every request" in stderr


async def test_serve_refuses_the_demo_sites_api_tokens_off_loopback(tmp_path):
    """The packaged demo site's tokens are public (they ship in the package): a server that
    anyone else can reach must not accept them."""
    config = tmp_path / "site.toml"
    config.write_text(SITE + '[api]\noperator_tokens = ["demo-operator-token"]\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smartcharge", "serve", "--config", str(config), "--host",
        "0.0.0.0", "--port", "0", "--db", str(tmp_path / "cli.sqlite"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert b"demo" in stderr and b"loopback" in stderr


async def test_serve_warns_when_bearer_tokens_travel_in_clear_off_loopback(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text(SITE + '[api]\nreader_tokens = ["a-reader-token-0001"]\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smartcharge", "serve", "--config", str(config), "--host",
        "0.0.0.0", "--port", "0", "--db", str(tmp_path / "cli.sqlite"), "--log-level",
        "WARNING", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(process.stdout.readline(), 20)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    stderr = (await process.stderr.read()).decode()
    assert "bearer tokens" in stderr and "unencrypted" in stderr
