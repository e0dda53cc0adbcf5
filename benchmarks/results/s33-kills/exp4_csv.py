"""Lead 4: SIGKILL of `serve` in the middle of a /api/sessions.csv export (N sessions made by a
1.6 station): what the client sees, and the export after the restart (rows, energy)."""
import asyncio, sys, os, signal, tempfile, csv, io
from pathlib import Path
from datetime import timedelta
import aiohttp
from ocpp.v16 import call as call16
from tests.test_kill_points import T0, RawStation
from tests.test_outside_s32_kills import _server
from tests.sim_fixtures import OPERATOR_TOKEN

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


async def main():
    d = Path(tempfile.mkdtemp(dir="/tmp/k33"))
    server = _server(d, 1)
    server.start()
    sent_wh = 0
    try:
        async with aiohttp.ClientSession() as http:
            cp = RawStation(http, server, "CP1", "ocpp1.6")
            await cp.connect()
            await cp.call("boot", call16.BootNotification(charge_point_vendor="R", charge_point_model="R"))
            register = 1000
            for i in range(N):
                at = T0 - timedelta(days=30) + timedelta(minutes=10 * i)
                st = await cp.call(f"s{i}", call16.StartTransaction(connector_id=1, id_tag="DRIVER-1", meter_start=register, timestamp=at.strftime("%Y-%m-%dT%H:%M:%SZ")))
                energy = 1000 + i % 700
                register += energy
                sent_wh += energy
                await cp.call(f"t{i}", call16.StopTransaction(meter_stop=register, transaction_id=st[2]["transactionId"], timestamp=(at + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"), id_tag="DRIVER-1", reason="Local"))
            print("sessions sent", N, "energy sent", sent_wh)
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as api:
                async with api.get(f"http://127.0.0.1:{server.port}/api/sessions.csv") as response:
                    print("status", response.status, response.headers.get("Transfer-Encoding"))
                    first = await response.content.read(4096)
                    server.process.kill(); server.process.wait()
                    got = first
                    try:
                        while chunk := await response.content.read(65536):
                            got += chunk
                        print("client read to the end WITHOUT an error:", len(got), "bytes")
                    except aiohttp.ClientPayloadError as e:
                        print("client saw", type(e).__name__, e, "after", len(got), "bytes")
            server.start()
            await server.wait_listening()
            status, _ = await server.api("GET", "/api/sessions?limit=1")
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as api:
                async with api.get(f"http://127.0.0.1:{server.port}/api/sessions.csv") as response:
                    text = await response.text()
            rows = list(csv.DictReader(io.StringIO(text)))
            print("after restart: rows", len(rows), "energy", sum(float(r["energy_wh"]) for r in rows if r.get("billable") in ("true", "True", "1", "yes")), "columns", list(rows[0].keys())[:12])
    finally:
        server.stop()

asyncio.run(main())
