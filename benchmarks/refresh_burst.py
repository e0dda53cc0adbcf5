"""The common end's refresh, counted: SetChargingProfile requests per site minute on a site whose
cars all charge under a binding cap, with the default profile lifetime (`DispatchSettings`:
1 800 s, every plan re-sent to a later common end when less than 1 000 s is left).

    python -m benchmarks.refresh_burst --stations 20 --minutes 40 --speed 60

In-process: the server `create_app` builds on an accelerated clock, the simulated stations
(`smartcharge.sim`) over real WebSockets; the count is the controller's `profiles_sent`. The
burst's size per charging connector is what it would be at any size (issue 10, s24-tail):
the count at 5 000 stations is this count x 5 000 / stations.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from smartcharge.app import create_app
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.setup import CONTROLLER, DISPATCHER
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CAR_W = 11_000.0


async def run(stations: int, minutes: int, speed: float) -> tuple[list[int], datetime]:
    site = Site(name="refresh-burst",
                circuits=(Circuit("grid", None, limit_w=stations * CAR_W * 0.5),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),))
                               for i in range(stations)),
                id_tags=frozenset({"D"}),
                session_defaults=SessionDefaults(energy_wh=200_000, dwell_s=12 * 3600))
    clock = AcceleratedClock(T0, speed=speed)
    with tempfile.TemporaryDirectory(prefix="refresh-burst-") as tmp:
        # no phase probe (a sample asked for moves plans), samples stale after 5 real s
        app = create_app(site, db_path=str(Path(tmp) / "s.sqlite"), clock=clock,
                         control=ControllerSettings(stale_after_s=speed * 5),
                         dispatch=DispatchSettings(call_timeout_s=5.0, phase_probe_after_s=None))
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, meter_interval_s=60,
                      call_timeout_s=5.0)
        try:
            await fleet.start(wait_booted_s=30)
            for i in range(stations):
                await fleet.plug_in(f"CP{i}", 1, SimEV(
                    capacity_wh=300_000, soc=0.1, onboard_phases=3,
                    max_power_w_by_phases={3: CAR_W}), "D")
            stats = app[CONTROLLER].stats
            last, per_minute = stats.profiles_sent, []
            for minute in range(1, minutes + 1):
                while clock.now() < T0 + timedelta(minutes=minute):
                    await asyncio.sleep(0.05)
                per_minute.append(stats.profiles_sent - last)
                last = stats.profiles_sent
            return per_minute, app[DISPATCHER].expiry
        finally:
            await fleet.stop()
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=40, help="site minutes counted")
    parser.add_argument("--speed", type=float, default=60.0, help="site seconds per real second")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    per_minute, expiry = asyncio.run(run(args.stations, args.minutes, args.speed))
    print(f"# {args.stations} stations, a car charging at each, cap at half their maximum; "
          f"{args.speed:g}x; the common end at the last minute: {expiry:%H:%M:%S}")
    print("| site minute | " + " | ".join(str(m) for m in range(1, len(per_minute) + 1)) + " |")
    print("|---|" + "---:|" * len(per_minute))
    print("| SetChargingProfile sent | " + " | ".join(str(n) for n in per_minute) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
