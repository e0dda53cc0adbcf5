"""Lead 1: the database on a small tmpfs filled mid-run under a 1.6 station's MeterValues /
StopTransaction; then space freed. Prints what the station saw and the server's log."""
import asyncio, sys, subprocess, os, tempfile, sqlite3, json
from pathlib import Path
from datetime import timedelta, UTC, datetime
import aiohttp
from ocpp.v16 import call as call16
from ocpp.messages import MessageType
from tests.test_kill_points import Server, RawStation

MODE = sys.argv[1] if len(sys.argv) > 1 else "full"
MB = int(sys.argv[2]) if len(sys.argv) > 2 else 2

async def main():
    d = Path(tempfile.mkdtemp(dir="/tmp/k33"))
    mnt = d / "disk"; mnt.mkdir()
    FS = os.environ.get("FS", "tmpfs")
    if FS == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={MB}m", "tmpfs", str(mnt)], check=True)
    elif FS == "ext4":
        img = d / "disk.img"
        subprocess.run(["dd", "if=/dev/zero", f"of={img}", "bs=1M", f"count={MB}"], check=True, capture_output=True)
        subprocess.run(["mkfs.ext4", "-q", str(img)], check=True)
        subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    else:
        FS = "plain"
    server = Server(d, stations=1)
    db = mnt / "site.sqlite"
    server.site_file.write_text(server.site_file.read_text().replace(str(server.db_path), str(db)))
    server.db_path = db
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            cp = RawStation(http, server, "CP1", "ocpp1.6")
            await cp.connect()
            print("boot", (await cp.call("boot", call16.BootNotification(charge_point_vendor="R", charge_point_model="R")))[0])
            t0 = datetime.now(UTC).replace(microsecond=0)
            st = await cp.call("start", call16.StartTransaction(connector_id=1, id_tag="DRIVER-1", meter_start=1000, timestamp=t0.strftime("%Y-%m-%dT%H:%M:%SZ")))
            tx = st[2]["transactionId"]
            def mv(i):
                return call16.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{"timestamp": (t0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "sampled_value": [{"value": str(1000 + i * 10), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}])
            for i in range(1, 4):
                print(i, (await cp.call(f"m{i}", mv(i)))[0])
            print(subprocess.run(["df", "-k", str(mnt)], capture_output=True, text=True).stdout)
            if MODE == "full":
                subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/filler", "bs=4k"], capture_output=True)
            elif MODE == "immutable":
                subprocess.run(["chattr", "+i", *[str(p) for p in mnt.glob("site.sqlite*")], str(mnt)], check=True)
            elif MODE == "shutdown":   # the file system dies (EXT4_IOC_SHUTDOWN, no log flush)
                import fcntl, struct
                fd = os.open(mnt, os.O_RDONLY)
                fcntl.ioctl(fd, 0x8004587D, struct.pack("I", 2)); os.close(fd)
            elif MODE == "truncate":
                os.truncate(db, 0)
            elif MODE == "replace":
                (mnt / "new").write_bytes(b""); os.replace(mnt / "new", db)
            elif MODE == "unlink":
                for p in mnt.glob("site.sqlite*"): os.unlink(p)
            print(subprocess.run(["df", "-k", str(mnt)], capture_output=True, text=True).stdout)
            for i in range(4, 40):
                r = await cp.call(f"m{i}", mv(i))
                print(i, r[0] if r else r, r if r and r[0] != 3 else "", "rc", server.process.poll())
                if r is None: break
            hb = await cp.call("hb", call16.Heartbeat()) if server.process.poll() is None else None
            print("heartbeat", hb)
            print("cap", await server.api("PUT", "/api/site/cap", {"limit_w": 10000}))
            print("health", await server.api("GET", "/api/health"))
            print("server rc", server.process.poll())
            if MODE == "full":
                os.unlink(mnt / "filler")
            elif MODE == "immutable":
                subprocess.run(["chattr", "-i", *[str(p) for p in mnt.glob("site.sqlite*")], str(mnt)], check=True)
            if server.process.poll() is not None or MODE in ("truncate", "replace", "unlink"):
                if server.process.poll() is None:
                    server.process.kill(); server.process.wait()
                    print("killed: what is at the path now:", sorted(p.name for p in mnt.iterdir()))
                server.start(); await cp.connect()
            for i in range(4, 12):
                r = await cp.call(f"re{i}", mv(i)); print("re-sent", i, r[0] if r else r, r if r and r[0] != 3 else "")
            print("cap", await server.api("PUT", "/api/site/cap", {"limit_w": 10000}))
            print("server rc", server.process.poll())
    finally:
        server.stop()
    try:
        con = sqlite3.connect(db)
        print(con.execute("select value_text, count(*) from meter_samples group by 1 order by 1").fetchall())
        print(con.execute("select transaction_id, state, meter_start_wh from sessions").fetchall())
        con.close()
    except Exception as e:
        print("reading the file:", e)
    log = (d / "server.log").read_text()
    print("\n".join(l for l in log.splitlines() if ("ERROR" in l or "WARNING" in l or "rror" in l) and "plaintext" not in l)[:6000])
    if FS != "plain": subprocess.run(["umount", str(mnt)])

asyncio.run(main())
