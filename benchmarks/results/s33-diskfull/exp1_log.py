"""A full 2 MiB tmpfs under `serve` with 3 raw 1.6 stations each sending 10 MeterValues:
how many log lines and tracebacks per refused message, what /api/health says; then space
freed. Prints counts (not a test). Run as root (it mounts a tmpfs) from the worktree root:
python3 benchmarks/results/s33-diskfull/exp1_log.py"""
import asyncio, os, subprocess, sys, tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
sys.path.insert(0, os.getcwd())
import aiohttp
from ocpp.messages import MessageType
from ocpp.v16 import call as call16
from tests.test_kill_points import RawStation, Server

STATIONS, MESSAGES = 3, 10


def mv(tx, t0, i):
    return call16.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{
        "timestamp": (t0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sampled_value": [{"value": str(1000 + i * 10), "unit": "Wh",
                           "measurand": "Energy.Active.Import.Register"}]}])


async def main():
    d = Path(tempfile.mkdtemp(dir="/tmp/k33d"))
    mnt = d / "disk"; mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    server = Server(d, stations=STATIONS)
    db = mnt / "site.sqlite"
    server.site_file.write_text(server.site_file.read_text().replace(str(server.db_path), str(db)))
    server.db_path = db
    server.start()
    log_path = d / "server.log"
    try:
        async with aiohttp.ClientSession() as http:
            t0 = datetime.now(UTC).replace(microsecond=0)
            cps = []
            for n in range(1, STATIONS + 1):
                cp = RawStation(http, server, f"CP{n}", "ocpp1.6")
                await cp.connect()
                await cp.call("boot", call16.BootNotification(charge_point_vendor="R", charge_point_model="R"))
                st = await cp.call("start", call16.StartTransaction(connector_id=1, id_tag=f"DRIVER-{n}", meter_start=1000, timestamp=t0.strftime("%Y-%m-%dT%H:%M:%SZ")))
                cps.append((cp, st[2]["transactionId"]))
            print("health before", await server.api("GET", "/api/health"))
            before = len(log_path.read_text().splitlines())
            subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/filler", "bs=4k"], capture_output=True)

            async def send(cp, tx):
                kinds = []
                for i in range(1, MESSAGES + 1):
                    kinds.append((await cp.call(f"m{i}", mv(tx, t0, i)))[0])
                return kinds
            kinds = await asyncio.gather(*(send(cp, tx) for cp, tx in cps))
            refused = sum(k == MessageType.CallError for ks in kinds for k in ks)
            print("refused", refused, "of", STATIONS * MESSAGES)
            print("health while full", await server.api("GET", "/api/health"))
            lines = log_path.read_text().splitlines()[before:]
            print(f"log lines {len(lines)}, tracebacks {sum('Traceback' in l for l in lines)}, "
                  f"ERROR lines {sum('ERROR' in l for l in lines)}: "
                  f"{len(lines) / max(refused, 1):.1f} lines a refused message")
            os.unlink(mnt / "filler")
            before = len(log_path.read_text().splitlines())
            kinds = await asyncio.gather(*(send(cp, tx) for cp, tx in cps))
            print("after space freed: answered", sum(k == MessageType.CallResult for ks in kinds for k in ks))
            print("health after", await server.api("GET", "/api/health"))
            print("\n".join(log_path.read_text().splitlines()[before:])[-2000:])
    finally:
        server.stop()
        subprocess.run(["umount", str(mnt)])
    lines = log_path.read_text().splitlines()
    print("--- ERROR/WARNING lines of the run:")
    print("\n".join(l[:300] for l in lines if ("ERROR" in l or "WARNING" in l) and "plaintext" not in l)[:4000])

asyncio.run(main())
