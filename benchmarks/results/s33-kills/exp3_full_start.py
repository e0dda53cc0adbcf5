"""Lead 1, at start: `serve` (re)started on a database whose disk is full (a 2 MiB tmpfs filled
with dd after a first life). Does it start, answer, refuse billing, recover when space is freed?"""
import asyncio, sys, subprocess, os, tempfile, sqlite3
from pathlib import Path
from datetime import timedelta, UTC, datetime
import aiohttp
from ocpp.v16 import call as call16
from tests.test_kill_points import Server, RawStation, T0


async def main():
    d = Path(tempfile.mkdtemp(dir="/tmp/k33"))
    mnt = d / "disk"; mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    server = Server(d, stations=1)
    db = mnt / "site.sqlite"
    server.site_file.write_text(server.site_file.read_text().replace(str(server.db_path), str(db)))
    server.db_path = db
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            cp = RawStation(http, server, "CP1", "ocpp1.6")
            await cp.connect()
            await cp.call("boot", call16.BootNotification(charge_point_vendor="R", charge_point_model="R"))
            st = await cp.call("start", call16.StartTransaction(connector_id=1, id_tag="DRIVER-1", meter_start=1000, timestamp=T0.strftime("%Y-%m-%dT%H:%M:%SZ")))
            tx = st[2]["transactionId"]
            mv = lambda i: call16.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{"timestamp": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "sampled_value": [{"value": str(1000 + 100 * i), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}])
            print("m1", (await cp.call("m1", mv(1)))[0])
            server.process.kill(); server.process.wait()
            subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/filler", "bs=4k"], capture_output=True)
            print(subprocess.run(["df", "-k", str(mnt)], capture_output=True, text=True).stdout)
            server.start()
            try:
                await server.wait_listening(60)
                print("listening on a full disk")
            except AssertionError as e:
                print("did not start:", e, "rc", server.process.poll())
                print((d / "server.log").read_text()[-3000:])
                return
            await cp.connect()
            print("boot", await cp.call("boot2", call16.BootNotification(charge_point_vendor="R", charge_point_model="R")))
            for i in (2, 3):
                r = await cp.call(f"m{i}", mv(i)); print("m", i, r[0], r[2] if r[0] == 4 else "")
            print("hb", (await cp.call("hb", call16.Heartbeat()))[0])
            os.unlink(mnt / "filler")
            for i in (2, 3):
                r = await cp.call(f"r{i}", mv(i)); print("re-sent", i, r[0])
            r = await cp.call("stop", call16.StopTransaction(meter_stop=1300, transaction_id=tx, timestamp=(T0 + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), id_tag="DRIVER-1", reason="Local"))
            print("stop", r[0])
            print(await server.api("GET", f"/api/sessions/{tx}"))
    finally:
        server.stop()
        con = sqlite3.connect(db)
        print(con.execute("select value_text, count(*) from meter_samples group by 1").fetchall())
        con.close()
        log = (d / "server.log").read_text()
        print("\n".join(l for l in log.splitlines() if ("ERROR" in l or "WARNING" in l or "Error" in l) and "plaintext" not in l)[:2500])
        subprocess.run(["umount", str(mnt)])

asyncio.run(main())
