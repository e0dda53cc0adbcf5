"""A controller-level re-plan of a large site after one car arrives, warm against cold.

    python -m benchmarks.optimizer --replan --controller [--sizes 1000] [--repeats 3]

Two site controllers (smartcharge/site/controller.py) get the same site and the same events: one
keeps its solver model from plan to plan (`controller.warm`, site/warm_plans.py), the other
solves every plan from scratch (`warm = None`). Each makes its plan, then one car arrives and each
re-plans; the re-plan is timed whole (`SiteController.replan`: picture, build, solve, check,
bindings, in its worker thread), its wall time and the process's CPU time. Warm and cold runs
alternate, in the same minutes.

The site (`site`): stations of two connectors (one 3-phase, one 1-phase on L1/L2/L3 in turn) in
feeders of 20 stations under the grid connection; family "phase": the feeders have per-phase
current limits (the LP: HiGHS), "power": power limits only (the min-cost flow applies). Every
connector but one has a car (needs 5-60 kWh, departures in 2-12 h, seeded); the last one's car
arrives. "same moment": the car arrives before anything else changed (the picture differs by that
car only); "60 s later": a minute passed, every car's meter moved on and the first slot is shorter;
"300 s later": also cars now leaving within two slots put new edges into the time grid.
In the "later" runs each controller's meters follow its own plan, and two plans of equal value
may differ, so the two pictures may differ a little: "relaxation vs cold" is an exactness check
only at the same moment (tests/test_site_warm.py compares both models on one picture).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 5, 8, 30, 7, tzinfo=UTC)
STATIONS_PER_FEEDER = 20
PHASES = ("L1", "L2", "L3")


def site(n: int, family: str) -> Site:
    """n connectors (n even): n / 2 stations, feeders of 20 stations, a grid connection limited
    to a third of everything at full power (so it binds)."""
    stations, feeders = [], []
    for s in range(n // 2):
        feeder = f"F{s // STATIONS_PER_FEEDER}"
        if s % STATIONS_PER_FEEDER == 0:
            limit = {"limit_a": 250.0} if family == "phase" else {"limit_w": 170_000.0}
            feeders.append(Circuit(feeder, "grid", **limit))
        stations.append(Station(f"CP{s}", feeder, (
            Connector(1), Connector(2, phases=1, phase=PHASES[s % 3]))))
    full_w = (n // 2) * (22_080.0 + 7_360.0)
    return Site(name=f"bench-{family}-{n}",
                circuits=(Circuit("grid", None, limit_w=full_w / 3), *feeders),
                stations=tuple(stations))


def refs(n: int) -> list[ConnectorRef]:
    return [ConnectorRef(f"CP{i // 2}", 1 + i % 2) for i in range(n)]


def start(controller: SiteController, ref: ConnectorRef, tx: int, rng, at: datetime) -> None:
    controller.on_event(ev.SessionStarted(ref.station_id, ref.connector_id, tx, "TAG", 0.0, at))
    controller.state.set_need(tx, requested_wh=float(rng.uniform(5_000, 60_000)),
                              departure=at + timedelta(hours=float(rng.uniform(2, 12))))


def controller_at(n: int, family: str, seed: int, warm: bool, stable: bool = True
                  ) -> tuple[SiteController, ManualClock]:
    """A controller with a car on every connector but the last, not yet planned. stable=False:
    no previous plan in the picture (stable_window_s None), so no stable pass."""
    clock = ManualClock(T0)
    settings = ControllerSettings() if stable else ControllerSettings(stable_window_s=None)
    controller = SiteController(site(n, family), clock, settings)
    if not warm:
        controller.warm = None
    for s in range(n // 2):
        controller.on_event(ev.StationBooted(f"CP{s}", T0, True, "v", "m"))
    rng = np.random.default_rng(seed)
    for tx, ref in enumerate(refs(n)[:-1]):
        start(controller, ref, 1000 + tx, rng, T0 - timedelta(minutes=float(rng.uniform(0, 90))))
    return controller, clock


def meters_move(controller: SiteController, clock: ManualClock, seconds: float) -> None:
    """`seconds` pass: every car drew what the plan gave it, and its meter says so."""
    clock.advance(seconds)
    now = clock.now()
    for ref, session in list(controller.state.sessions.items()):
        power_w = controller.allocated_now_w(ref) or 0.0
        register_wh = session.energy_wh + power_w * seconds / 3600.0
        controller.on_event(ev.MeterSampled(ref.station_id, ref.connector_id,
                                            session.transaction_id, now, "Sample.Periodic",
                                            energy_register_wh=register_wh, power_w=power_w,
                                            received_at=now))


async def one_run(n: int, family: str, seed: int, warm: bool, later_s: float,
                  stable: bool = True) -> dict:
    controller, clock = controller_at(n, family, seed, warm, stable)
    await controller.replan({"start"})
    await controller.replan({"slot"})   # as running: the plan before is in the picture
    if later_s:
        meters_move(controller, clock, later_s)
    start(controller, refs(n)[-1], 999_999, np.random.default_rng(seed + 1), clock.now())
    wall, cpu = time.perf_counter(), time.process_time()
    await controller.replan({"session:SessionStarted"})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    times = controller.stats.last_times
    return {"wall_s": wall, "cpu_s": cpu, "solve_s": times.solve_s, "build_s": times.build_s,
            "after_s": times.check_s + times.finish_s,
            "how": (controller.warm.last or "-") if warm else "cold",
            "status": controller.stats.last_status,
            "solver": dict(controller.stats.last_solver or {})}


def bench(n: int, family: str, seed: int, repeats: int, later_s: float,
          stable: bool = True) -> list[dict]:
    runs = {True: [], False: []}
    for _ in range(repeats):          # alternated: warm and cold in the same minutes
        for warm in (False, True):
            runs[warm].append(asyncio.run(one_run(n, family, seed, warm, later_s, stable)))
    rows = []
    for warm in (False, True):
        got = runs[warm]
        last = got[-1]
        rows.append({"method": "warm" if warm else "cold", "how": ",".join(sorted(
            {r["how"] for r in got})), "wall_s": statistics.median(r["wall_s"] for r in got),
            "cpu_s": statistics.median(r["cpu_s"] for r in got),
            "solve_s": statistics.median(r["solve_s"] for r in got),
            "build_s": statistics.median(r["build_s"] for r in got),
            "after_s": statistics.median(r["after_s"] for r in got),
            "picture_s": statistics.median(r["wall_s"] - r["build_s"] - r["solve_s"]
                                           - r["after_s"] for r in got),
            "iterations": last["solver"].get("iterations"),
            "backend": last["solver"].get("backend"), "status": last["status"],
            "relaxation": last["solver"].get("relaxation_objective"),
            "weighted_wh": last["solver"].get("weighted_wh")})
    return rows


def print_rows(n: int, family: str, later_s: float, stable: bool, rows: list[dict]) -> None:
    when = "same moment" if not later_s else f"{later_s:.0f} s later"
    print(f"\n### controller re-plan, family {family}, N = {n}: one car arrives, {when}, "
          f"stable pass {'on' if stable else 'off'} (load average {os.getloadavg()[0]:.1f})\n")
    print("| method | model | backend | re-plan wall s | re-plan CPU s | picture and the rest s "
          "| build s | solve s | simplex iterations | check + finish s | relaxation vs cold "
          "| weighted energy vs cold |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cold = rows[0]
    for r in rows:
        rel = ("-" if r["relaxation"] is None or cold["relaxation"] is None else
               f"{(r['relaxation'] - cold['relaxation']) / abs(cold['relaxation']):.1e}")
        energy = ("-" if not cold["weighted_wh"] else
                  f"{r['weighted_wh'] / cold['weighted_wh']:.6f}")
        print(f"| {r['method']} | {r['how']} | {r['backend']} | {r['wall_s']:.4f} | "
              f"{r['cpu_s']:.4f} | {r['picture_s']:.4f} | {r['build_s']:.4f} | "
              f"{r['solve_s']:.4f} | {r['iterations'] if r['iterations'] is not None else '-'} | "
              f"{r['after_s']:.4f} | {rel} | {energy} |")


def main(sizes, families, seed: int, repeats: int) -> None:
    # the connector left free has no meter: the guard counts it at its maximum and says so
    logging.getLogger("smartcharge.site.guard").setLevel(logging.CRITICAL)
    for family in families:
        for n in sizes:
            for later_s, stable in ((0.0, True), (0.0, False), (60.0, True), (300.0, True)):
                rows = bench(n, family, seed, repeats, later_s, stable)
                print_rows(n, family, later_s, stable, rows)

