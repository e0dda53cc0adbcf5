"""Text a station sends reaches `serve`'s log (an id tag, its vendor, a message id, a DataTransfer
vendor): a line break in it forged log lines ("...\\n2026-01-01 ERROR ..."), read by whoever
audits the log or greps it for alarms. Every message is one line: control characters are
escaped where the message is formatted (tracebacks keep their lines). Real `smartcharge serve`,
raw WebSocket frames."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys

import aiohttp

from tests.conftest import station_auth_header

SITE = """
[site]
name = "log lines"
[[stations]]
id = "CP1"
password = "station-password-01"
[[stations.connectors]]
id = 1
[auth]
id_tags = ["TAG1"]
"""
FORGED = "FORGED smartcharge.api: an alarm nobody raised"


async def test_station_text_cannot_forge_log_lines(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text(SITE)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smartcharge", "serve", "--config", str(config), "--port",
            "0", "--db", str(tmp_path / "serve.sqlite"), "--log-level", "INFO",
            stdout=asyncio.subprocess.PIPE, stderr=log_file)
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            url = re.search(r"listening on (http://\S+)", line).group(1)
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{url}/ocpp/CP1", protocols=("ocpp1.6",),
                                           headers=station_auth_header(
                                               "CP1", "station-password-01"))
                frames = [
                    # (CiString20: short)
                    [2, "b1", "BootNotification", {"chargePointVendor": "V\nFORGED v",
                                                   "chargePointModel": "M\rFORGED m"}],
                    [2, "a1", "Authorize", {"idTag": "A\nFORGED x"}],
                    [2, "s1", "StartTransaction", {"connectorId": 1, "idTag": "B\u2028\nFORGED",
                                                   "meterStart": 0,
                                                   "timestamp": "2026-01-01T00:00:00Z"}],
                    [2, "d1", "DataTransfer", {"vendorId": f"W\n{FORGED}"[:255]}],
                    [2, f"u\n{FORGED}", "FlyToTheMoon", {}],
                ]
                for frame in frames:
                    await ws.send_str(json.dumps(frame))
                    while True:   # skip our own calls to it (its set-up)
                        answer = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                        if answer[0] != 2:
                            break
                    assert answer[1] == frame[1], answer
                await ws.close()
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
    text = log_path.read_text(encoding="utf-8")
    forged = [line for line in text.splitlines() if line.startswith("FORGED")]
    assert forged == [], forged
    assert "\\nFORGED" in text            # shown, escaped
