"""The runtime guard at scale: its loop CPU per meter sample, and how soon a node going over is
acted on (s23-guard, issue 10).

    python -m benchmarks.guard_delay --trees /path/to/main . --repeats 2

One process per tree (PYTHONPATH=tree, this file run by path, so it measures that tree's
guard), alternating. In each: a site controller (no server, no store, no re-plans: the guard
alone) on the real clock, `--stations` stations of one 3-phase connector in feeders of 10
under the grid connection; every connector has a session, a fail-safe default accepted (so
each connector's count reads its installed schedule, as in the service) and a fresh sample;
samples keep arriving through `controller.on_event` at `--rate` per second (5 000 stations x
1/min: 83/s), each at 3 kW. Every `--every-s` one sample of 22 kW puts its feeder over its
limit; the delay measured is from that `on_event` to the guard's re-plan request naming the
feeder (`request_replan("guard:<feeder>")`: the overload acted on); then the connector goes
back to 3 kW. Measured in the window: the loop thread's CPU (time.thread_time: the process
is one thread) per sample, the guard passes' own CPU (summed over the steps of each pass) and
their count (the longest pass's CPU, the longest gap between two passes' ends), and the
delays (p50, p90, max; an overload not acted on within 10 s is counted as missed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

# run by path (one tree's code under PYTHONPATH): this folder's optimizer.py is not the package
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    sys.path.pop(0)

FEEDER_STATIONS = 10
NORMAL_W = 3_000.0
OVER_W = 22_000.0


def build(stations: int):
    from smartcharge.clock import SystemClock
    from smartcharge.model import Circuit, Connector, Site, Station
    from smartcharge.ocpp.port import FOREVER, Installed
    from smartcharge.site.controller import ControllerSettings, SiteController
    from smartcharge.site.installed import InstalledLimits
    from smartcharge.site.station_control import StationControl
    from smartcharge import events as ev

    feeders = [Circuit(f"F{f}", "grid", limit_w=FEEDER_STATIONS * NORMAL_W + 5_000.0)
               for f in range(-(-stations // FEEDER_STATIONS))]
    site = Site(name="guard-delay", circuits=(Circuit("grid", None, limit_w=1e12), *feeders),
                stations=tuple(Station(f"CP{s}", f"F{s // FEEDER_STATIONS}", (Connector(1),))
                               for s in range(stations)))
    clock = SystemClock()
    controller = SiteController(site, clock, ControllerSettings(stale_after_s=180.0))
    try:   # as dispatch keeps them (a watched dict on trees that have one)
        from smartcharge.site.watched import WatchedDict
    except ImportError:
        WatchedDict = dict
    controls = WatchedDict({s.station_id: StationControl(s.station_id, "A")
                            for s in site.stations})
    controller.installed = InstalledLimits(controller.topology, controller.state,
                                           controller.phase_use, clock, 30.0, controls)
    now = clock.now()
    for i, station in enumerate(site.stations):
        sid = station.station_id
        controller.state.apply(ev.StationBooted(sid, now, True, "v", "m"))
        controller.state.apply(ev.SessionStarted(sid, 1, i + 1, "T", 0.0,
                                                 now - timedelta(hours=1)))
        controls[sid].default_layer[1] = Installed(
            transaction_id=0, start=now - timedelta(hours=2), expires=FOREVER, unit="A",
            phases=3, starts_s=[0], limits=[32.0], default=True)
        controller.state.apply(ev.MeterSampled(sid, 1, i + 1, now, "Sample.Periodic",
                                               power_w=NORMAL_W, received_at=now))
    return controller


def time_guard(passes: list) -> None:
    """Each guard pass's CPU (summed over its steps: it gives the loop back in between)."""
    from smartcharge.site.guard import SiteGuard
    original = SiteGuard._check

    def timed(self, now):
        steps = original(self, now)
        spent = 0.0
        try:
            while True:
                started = time.thread_time()
                try:
                    next(steps)
                finally:
                    spent += time.thread_time() - started
                yield
        except StopIteration as stop:
            passes.append((time.perf_counter(), spent))
            return stop.value

    SiteGuard._check = timed


async def run_one(args) -> dict:
    from smartcharge import events as ev
    logging_off()
    controller = build(args.stations)
    passes: list = []
    time_guard(passes)
    acted: dict[str, float] = {}
    original = controller.request_replan

    def request_replan(reason: str) -> None:
        if reason.startswith("guard:"):
            acted.setdefault(reason[len("guard:"):], time.perf_counter())
        original(reason)

    controller.request_replan = request_replan
    refs = controller.topology.refs
    clock = controller.clock

    def sample(index: int, power_w: float) -> None:
        ref = refs[index]
        now = clock.now()
        controller.on_event(ev.MeterSampled(ref.station_id, 1, index + 1, now,
                                            "Sample.Periodic", power_w=power_w,
                                            received_at=now))

    delays, missed = [], 0
    fed = 0
    started = time.perf_counter()
    window_start = started + args.warmup_s
    end = window_start + args.measure_s
    cpu0 = None
    fed0 = 0
    next_over = window_start
    pending: tuple[str, int, float] | None = None
    owed = 0.0
    cursor = 0
    feeders = len(refs) // FEEDER_STATIONS
    k = 0
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.01)
        tick = time.perf_counter()
        if cpu0 is None and tick >= window_start:
            cpu0, fed0 = time.thread_time(), fed
        if tick >= end:
            break
        owed += args.rate * (tick - last)
        last = tick
        while owed >= 1.0:
            owed -= 1.0
            if pending is not None and cursor == pending[1]:
                cursor = (cursor + 1) % len(refs)   # its overload stands until acted on
            sample(cursor, NORMAL_W)
            cursor = (cursor + 1) % len(refs)
            fed += 1
        if pending is not None:
            feeder, index, sent_at = pending
            if feeder in acted and acted[feeder] >= sent_at:
                delays.append(acted[feeder] - sent_at)
            elif tick - sent_at > 10.0:
                missed += 1
            else:
                continue
            sample(index, NORMAL_W)
            fed += 1
            pending = None
        elif tick >= next_over:
            feeder_no = (k * 37) % feeders
            k += 1
            index = feeder_no * FEEDER_STATIONS + k % FEEDER_STATIONS
            feeder = f"F{feeder_no}"
            acted.pop(feeder, None)
            sent_at = time.perf_counter()
            sample(index, OVER_W)
            fed += 1
            pending = (feeder, index, sent_at)
            next_over = tick + args.every_s
    cpu = time.thread_time() - cpu0
    in_window = [p for p in passes if window_start <= p[0] <= end]
    n = fed - fed0
    ordered = sorted(delays)
    ends = [p[0] for p in in_window]
    longest_gap = max((b - a for a, b in zip(ends, ends[1:])), default=None)
    return {"samples": n, "loop_us_per_sample": cpu / max(n, 1) * 1e6,
            "guard_us_per_sample": sum(p[1] for p in in_window) / max(n, 1) * 1e6,
            "guard_share": sum(p[1] for p in in_window) / max(cpu, 1e-9),
            "passes": len(in_window),
            "longest_gap_ms": None if longest_gap is None else longest_gap * 1e3,
            "longest_pass_cpu_ms": max((p[1] for p in in_window), default=0.0) * 1e3,
            "overloads": len(delays), "missed": missed,
            "delay_p50_ms": statistics.median(ordered) * 1e3 if ordered else None,
            "delay_p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1e3 if ordered else None,
            "delay_max_ms": ordered[-1] * 1e3 if ordered else None}


def logging_off() -> None:
    import logging
    logging.getLogger("smartcharge").setLevel(logging.CRITICAL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", nargs="+", default=[str(Path(__file__).parent.parent)])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stations", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=83.0, help="samples per second")
    parser.add_argument("--every-s", type=float, default=1.5, help="one overload this often")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--measure-s", type=float, default=40.0)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(run_one(args))))
        return
    rows = []
    for _ in range(args.repeats):
        for tree in args.trees:
            load = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--stations", str(args.stations),
                 "--rate", str(args.rate), "--every-s", str(args.every_s),
                 "--warmup-s", str(args.warmup_s), "--measure-s", str(args.measure_s)],
                env={**os.environ, "PYTHONPATH": tree}, cwd=tree, capture_output=True,
                text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update(tree=tree, load=f"{load:.1f} -> {os.getloadavg()[0]:.1f}")
            rows.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    print(f"\n{args.stations} stations, {args.rate:.0f} samples/s, an overload every "
          f"{args.every_s} s, {args.measure_s:.0f} s window\n")
    print("| tree | load avg | samples | loop us / sample | guard us / sample (share) | passes "
          "(longest CPU, longest gap ms) | overloads (missed) | delay p50 / p90 / max ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tree']} | {r['load']} | {r['samples']} | {r['loop_us_per_sample']:.0f} "
              f"| {r['guard_us_per_sample']:.0f} ({100 * r['guard_share']:.0f} %) "
              f"| {r['passes']} ({r['longest_pass_cpu_ms']:.0f}, {fmt(r['longest_gap_ms'])}) "
              f"| {r['overloads']} ({r['missed']}) "
              f"| {fmt(r['delay_p50_ms'])} / {fmt(r['delay_p90_ms'])} / "
              f"{fmt(r['delay_max_ms'])} |")


def fmt(value) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
