"""A restart's boot storm with every station held at its stored fail-safe defaults
(site/held_defaults.py): how often the defaults' key changes and the site's shares are computed
again as the stations come back - released in one change per burst of set-ups (`_flush_releases`)
against one change per station (each release at once, as `release_offline` did before).

    python -m benchmarks.held_restart --stations 200

A first server sets every station up (their defaults stored), is closed, and a second one on the
same SQLite file sees them all reconnect at once: counted there. Deterministic counts, in one
process (the server and the simulated stations on one loop, a 60x clock)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from aiohttp import web

from smartcharge.app import create_app
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.fleet import Fleet
from smartcharge.site.setup import DISPATCHER

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# hourly meter values (no sample moves anything), quick reconnects
FLEET = {"meter_interval_s": 3600, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3,
         "call_timeout_s": 5.0}


@contextlib.asynccontextmanager
async def control_server(site, db, clock):
    """The server app on 127.0.0.1 (a free port) on `db`: .dispatcher, .ws_url."""
    app = create_app(site, db_path=str(db), clock=clock)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield SimpleNamespace(dispatcher=app[DISPATCHER], ws_url=f"ws://127.0.0.1:{port}/ocpp")
    finally:
        await runner.cleanup()


async def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _site(stations: int) -> Site:
    return Site(name="held", circuits=(Circuit("grid", None, limit_w=11_000.0 * stations),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1), Connector(2)))
                               for i in range(1, stations + 1)))


async def _run(stations: int, batched: bool) -> dict:
    site, clock = _site(stations), AcceleratedClock(T0, speed=60.0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "h.sqlite"
        async with control_server(site, db, clock) as first:
            fleet = Fleet(site, first.ws_url, clock, **FLEET)
            await fleet.start(wait_booted_s=60)
            await wait_until(lambda: first.dispatcher._setups_queued == 0
                             and all(c.default_layer for c in first.dispatcher.stations.values()),
                             120, "every station set up")
            await fleet.stop()
        async with control_server(site, db, clock) as second:
            d = second.dispatcher
            held_at_start = len(d._held_offline)
            calls = {"shares": 0, "versions": 0}
            compute = d.topology.default_shares
            d.topology.default_shares = lambda **kw: (calls.__setitem__(
                "shares", calls["shares"] + 1), compute(**kw))[1]
            version = d._held_version
            if not batched:   # each release at once, as before
                release = d.release_offline
                d.release_offline = lambda sid: (release(sid), d._flush_releases())
            fleet = Fleet(site, second.ws_url, clock, **FLEET)
            began = time.process_time()
            await fleet.start(wait_booted_s=60)
            await wait_until(lambda: not d._held_offline and d._setups_queued == 0, 120,
                             "every station set up again")
            cpu_s = time.process_time() - began
            calls["versions"] = d._held_version - version
            await fleet.stop()
    return {"held": held_at_start, "cpu_s": cpu_s, **calls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200)
    args = parser.parse_args(argv)
    print("| stations | releases | held at start | key changes | shares computed | "
          "CPU of the storm (server + stations) |")
    print("|---:|---|---:|---:|---:|---:|")
    for batched in (False, True):
        r = asyncio.run(_run(args.stations, batched))
        print(f"| {args.stations} | {'per burst' if batched else 'one each'} | {r['held']} | "
              f"{r['versions']} | {r['shares']} | {r['cpu_s']:.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
