"""Lead 2: the store's writer, or its fork server, SIGSTOPped for 5 s under a 1.6 station.
A MeterValues is sent, then a Heartbeat every 0.2 s: when is each answered? MODE: writer |
forkserver (the fork server stopped, the writer SIGKILLed: the next op needs a new writer)."""
import asyncio, sys, os, signal, json, tempfile, time
from pathlib import Path
from datetime import timedelta
from dataclasses import asdict
import aiohttp
from ocpp.charge_point import remove_nones, snake_to_camel_case
from ocpp.v16 import call as call16
from tests.test_kill_points import T0, RawStation
from tests.test_outside_s32_kills import _server

MODE = sys.argv[1]
N_MV = int(sys.argv[2]) if len(sys.argv) > 2 else 1


def children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cmd(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def frame(uid, request):
    return json.dumps([2, uid, type(request).__name__, snake_to_camel_case(remove_nones(asdict(request)))])


async def main():
    d = Path(tempfile.mkdtemp(dir="/tmp/k33"))
    server = _server(d, 2)
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            cp = RawStation(http, server, "CP1", "ocpp1.6")
            await cp.connect()
            cp2 = RawStation(http, server, "CP2", "ocpp1.6")
            await cp2.connect()
            await cp2.call("boot", call16.BootNotification(charge_point_vendor="R", charge_point_model="R"))
            await cp.call("boot", call16.BootNotification(charge_point_vendor="R", charge_point_model="R"))
            st = await cp.call("start", call16.StartTransaction(connector_id=1, id_tag="DRIVER-1", meter_start=1000, timestamp=T0.strftime("%Y-%m-%dT%H:%M:%SZ")))
            tx = st[2]["transactionId"]
            fork = [c for c in children(server.process.pid) if "store_forks" in cmd(c)][0]
            writer = children(fork)[0]
            print("serve", server.process.pid, "fork server", fork, "writer", writer)
            sent = {}
            answered = {}
            async def reader(cp):
                while True:
                    m = await cp.ws.receive()
                    if m.type != aiohttp.WSMsgType.TEXT:
                        return
                    f = json.loads(m.data)
                    if f[0] == 2:
                        await cp.ws.send_str(json.dumps([4, f[1], "NotSupported", "", {}]))
                    else:
                        answered[f[1]] = (time.monotonic(), f[0])
            rt = [asyncio.create_task(reader(c)) for c in (cp, cp2)]
            t0 = time.monotonic()
            if MODE == "writer":
                os.kill(writer, signal.SIGSTOP)
            else:
                os.kill(fork, signal.SIGSTOP)
                os.kill(writer, signal.SIGKILL)
                # the op that finds the writer dead, then the one that needs a new writer
                await cp.ws.send_str(frame("pre", call16.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{"timestamp": T0.strftime("%Y-%m-%dT%H:%M:%SZ"), "sampled_value": [{"value": "1000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}])))
                await asyncio.sleep(0.5)
            for i in range(N_MV):
                mv = call16.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{"timestamp": (T0 + timedelta(seconds=i + 1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "sampled_value": [{"value": str(1000 + i), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}])
                sent[f"mv{i}"] = time.monotonic()
                await cp.ws.send_str(frame(f"mv{i}", mv))
            for k in range(25):
                sent[f"hb{k}"] = time.monotonic()
                await cp2.ws.send_str(frame(f"hb{k}", call16.Heartbeat()))
                await asyncio.sleep(0.2)
            os.kill(writer if MODE == "writer" else fork, signal.SIGCONT)
            print("SIGCONT at", round(time.monotonic() - t0, 2))
            deadline = time.monotonic() + 90
            while len([k for k in sent if k in answered]) < len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            for k, at in sent.items():
                a = answered.get(k)
                print(k, "sent", round(at - t0, 2), "answered", None if a is None else (round(a[0] - t0, 2), a[1]), "after", None if a is None else round(a[0] - at, 2))
            [t.cancel() for t in rt]
    finally:
        server.stop()
    log = (d / "server.log").read_text()
    print("\n".join(l for l in log.splitlines() if "ERROR" in l or "WARNING" in l and "plaintext" not in l)[:3000])

asyncio.run(main())
