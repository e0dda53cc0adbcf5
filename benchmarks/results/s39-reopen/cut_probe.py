"""A mass network cut with a server call in flight to every station: how long after the cut
each call is named offline (StationOffline), and what else it raised. In-process app (the real
create_app with the site controller), raw OCPP-J 1.6 stations over real WebSockets that boot and
then never answer. Usage: PYTHONPATH=<tree>:<tree>/tests python3 cut_probe.py N"""
import asyncio, json, sys, tempfile, time, pathlib, statistics
from datetime import UTC, datetime
import aiohttp
from ocpp.v16 import call
from smartcharge.clock import SystemClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.registry import StationOffline
from tests.site_e2e import control_server

N = int(sys.argv[1])

async def main():
    site = Site(name="cut", circuits=(Circuit("grid", None, limit_w=10_000_000),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),)) for i in range(N)))
    async with control_server(site, pathlib.Path(tempfile.mkdtemp()) / "s.sqlite", SystemClock()) as server:
        registry = server.app[REGISTRY]
        conn = aiohttp.TCPConnector(limit=0)
        http = aiohttp.ClientSession(connector=conn)
        sockets = []
        async def station(i):
            ws = await http.ws_connect(f"{server.ws_url}/CP{i}", protocols=["ocpp1.6"])
            await ws.send_str(json.dumps([2, f"b{i}", "BootNotification", {"chargePointVendor": "v", "chargePointModel": "m"}]))
            while True:
                msg = await ws.receive()
                data = json.loads(msg.data)
                if data[0] == 3 and data[1] == f"b{i}":
                    break
            sockets.append(ws)
        await asyncio.gather(*(station(i) for i in range(N)))
        # readers that never answer (keep the sockets read so the server's sends go out)
        async def drain(ws):
            async for _ in ws:
                pass
        drains = [asyncio.create_task(drain(ws)) for ws in sockets]
        await asyncio.sleep(1.0)
        outcomes = {}
        async def ask(i):
            link = registry.get(f"CP{i}")
            try:
                await link.call(call.GetConfiguration(), timeout_s=30)
                outcomes[i] = ("answered", time.monotonic())
            except StationOffline as e:
                outcomes[i] = ("offline", time.monotonic())
            except Exception as e:
                outcomes[i] = (type(e).__name__, time.monotonic())
        asks = [asyncio.create_task(ask(i)) for i in range(N)]
        await asyncio.sleep(0.5)   # the calls sent (in flight, never answered)
        gaps = []
        loop = asyncio.get_running_loop()
        last = [time.thread_time()]
        running = [True]
        def tick():
            now = time.thread_time()
            gaps.append(now - last[0])
            last[0] = now
            if running[0]:
                loop.call_soon(tick)
        loop.call_soon(tick)
        cut = time.monotonic()
        for ws in sockets:          # a network cut: every TCP connection dropped at once
            ws._response.connection.transport.abort()
        await asyncio.gather(*asks)
        await asyncio.sleep(0.5)   # the ends' remaining work (ws.close, detach, events)
        running[0] = False
        delays = sorted((t - cut) * 1000 for k, t in outcomes.values())
        kinds = {}
        for k, _ in outcomes.values():
            kinds[k] = kinds.get(k, 0) + 1
        print(f"N={N} kinds={kinds} delay ms median={statistics.median(delays):.1f} "
              f"p90={delays[int(0.9*len(delays))]:.1f} max={delays[-1]:.1f}; "
              f"longest turn (loop thread CPU) {max(gaps)*1000:.1f} ms, turns over 20 ms "
              f"{sum(g > 0.02 for g in gaps)}")
        for d in drains: d.cancel()
        await http.close()

asyncio.run(main())
