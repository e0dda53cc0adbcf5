import asyncio, sys, subprocess, os, tempfile, time, json, sqlite3
from pathlib import Path
from datetime import timedelta, UTC, datetime
sys.path.insert(0, "/work/wt-kills/tests")
import aiohttp
from ocpp.v16 import call as call16
from tests.test_kill_points import Server, RawStation
from ocpp.messages import MessageType

async def main():
    d = Path(tempfile.mkdtemp(dir="/tmp/kills"))
    server = Server(d, stations=1)
    server.start()
    files = lambda: [str(p) for p in d.glob("kill.sqlite*")] + [str(d)]
    try:
        async with aiohttp.ClientSession() as http:
            cp = RawStation(http, server, "CP1", "ocpp1.6")
            await cp.connect()
            print(await cp.call("boot", call16.BootNotification(charge_point_vendor="R", charge_point_model="R")))
            t0 = datetime.now(UTC).replace(microsecond=0)
            st = await cp.call("start", call16.StartTransaction(connector_id=1, id_tag="DRIVER-1", meter_start=1000, timestamp=t0.strftime("%Y-%m-%dT%H:%M:%SZ")))
            tx = st[2]["transactionId"]
            def mv(i):
                return call16.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{"timestamp": (t0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "sampled_value": [{"value": str(1000 + i * 10), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}])
            for i in range(1, 4):
                print(i, (await cp.call(f"m{i}", mv(i)))[0])
            print(subprocess.run(["chattr", "+i", *files()], capture_output=True, text=True))
            for i in range(4, 8):
                r = await cp.call(f"m{i}", mv(i))
                print(i, r[0] if r else r, r)
            print("cap", await server.api("PUT", "/api/site/cap", {"limit_w": 10000}))
            print("server rc", server.process.poll())
            print("event", await server.api("POST", "/api/demand-response/events", {"start": (t0+timedelta(hours=1)).isoformat(), "end": (t0+timedelta(hours=2)).isoformat(), "limit_w": 5000}))
            subprocess.run(["chattr", "-i", *files()])
            if server.process.poll() is not None:
                server.start(); await cp.connect()
                for i in range(4, 8):
                    r = await cp.call(f"m{i}", mv(i)); print("re-sent", i, r[0] if r else r)
            for i in range(8, 11):
                r = await cp.call(f"m{i}", mv(i))
                print(i, r[0] if r else r)
            r = await cp.call("m5again", mv(5))
            print("5 again", r[0] if r else r)
            print("cap", await server.api("PUT", "/api/site/cap", {"limit_w": 10000}))
    finally:
        subprocess.run(["chattr", "-R", "-i", str(d)])
        server.stop()
    db = sqlite3.connect(d / "kill.sqlite")
    print(db.execute("select value_text from meter_samples order by 1").fetchall())
    log = (d / "server.log").read_text()
    print("\n".join(l for l in log.splitlines() if "ERROR" in l or "WARNING" in l and "plaintext" not in l)[:3000])

asyncio.run(main())
