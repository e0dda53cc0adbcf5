"""Which stage of a re-plan loses limit use while the site is short, per day (truthful runs).

    python -m benchmarks.quality_stages --days demo tight

Each day runs with every driver truthful through the controller (benchmarks/quality_loop.py)
with every re-plan captured (`pause_causes.Capture`). Over the minutes the plugged cars could
take more than the grid limit ("short"), the power of the plan standing at that minute (the
last re-plan's, in the slot the minute falls in) is summed at each stage, kWh:

- reachable: what the breakers and phases let the plugged cars draw (the benchmark's bound);
- LP: the optimizer's plan before minimum-rate rounding; held / rounded: after the hold of
  running cars' minimums and after the rounding (projection and top-up); solve: what `solve`
  returned (pull_forward, the guard's kept windows); plan: the controller's plan (checked),
  each connector's share its car may draw (a car of unknown phases on a W station: the third
  of its balanced plan it is sent, which the optimizer's rows count: `installed.planned_share`);
- offered: what the cars were let draw (a third of the plan for a one-phase car while its
  phases are unknown); drawn: what they drew.

Each stage's loss is the step down from the one before (the fixed loads of uncontrolled
connectors are in `reachable` and `drawn` but not in the plan's stages: none on these days).
"""

from __future__ import annotations

import argparse
import asyncio
from bisect import bisect_right
from datetime import timedelta

import numpy as np

from benchmarks.pause_causes import Capture
from benchmarks.quality import settings_from
from benchmarks.quality_days import days
from benchmarks.quality_loop import run_day
from smartcharge.site.installed import planned_share
from smartcharge.site.topology import SiteTopology

STEP_S = 60.0
STAGES = ("lp", "held", "rounded", "final")


def _slot_index(found: dict, minute) -> int:
    problem = found["built"].problem
    offset_s = (minute - found["now"]).total_seconds()
    edges = np.cumsum(problem.slot_s)
    return min(int(np.searchsorted(edges, offset_s, side="right")), problem.n_slots - 1)


def stages(day, settings: dict | None, capture: Capture) -> dict:
    capture.by_time.clear()
    trace: list = []
    result = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr,
                                 truthful=True, settings=settings, trace=trace))
    h = STEP_S / 3600.0
    load, limit, wanted = (np.array(x) for x in (result.load_w, result.limit_w, result.wanted_w))
    reachable = np.minimum(np.nan_to_num(np.array(result.reachable_w), nan=np.inf), limit)
    short = wanted > limit + 1.0
    offered = np.zeros(len(result.times))
    minute = {t: i for i, t in enumerate(result.times)}
    for step in trace:
        offered[minute[step.at]] += step.offered_w
    replans = sorted(capture.by_time)
    topo = SiteTopology(day.site)
    sums = {k: 0.0 for k in ("reachable", *STAGES, "plan", "offered", "drawn")}
    for i, moment in enumerate(result.times):
        if not short[i]:
            continue
        sums["reachable"] += reachable[i] * h
        sums["offered"] += offered[i] * h
        sums["drawn"] += load[i] * h
        at = bisect_right(replans, moment) - 1
        if at < 0:
            continue
        found = capture.by_time[replans[at]]
        if "built" not in found:
            continue
        plan = found["plan"]
        sums["plan"] += sum(c.power_at(moment) * planned_share(topo, ref, c.phases, c.phases_known)
                            for ref, c in plan.connectors.items()) * h
        column = _slot_index(found, moment + timedelta(seconds=1e-6))
        for stage in STAGES:
            power = found["stages"].get(stage)
            if power is None:       # no LP (a baseline answered): count what solve returned
                power = found["stages"].get("final")
            if power is not None and power.size:
                sums[stage] += float(power[:, column].sum()) * h
    return {"day": day.name, "minutes": int(short.sum()), **sums,
            "delivered_wh": sum(result.charged_wh)}


def print_rows(rows: list[dict]) -> None:
    k = 1000.0
    names = ("reachable", "lp", "held", "rounded", "final", "plan", "offered", "drawn")
    print("| day | short min | delivered kWh | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    for r in rows:
        cells = [f"{r[names[0]] / k:.1f}"] + [
            f"{r[n] / k:.1f} ({(r[n] - r[p]) / k:+.1f})" for p, n in zip(names, names[1:])]
        print(f"| {r['day']} | {r['minutes']} | {r['delivered_wh'] / k:.1f} | "
              + " | ".join(cells) + " |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["demo", "workplace", "depot", "tight"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="ControllerSettings to change")
    args = parser.parse_args(argv)
    capture = Capture()
    capture.install()
    print_rows([stages(day, settings_from(args.set), capture) for day in days(args.days)])


if __name__ == "__main__":
    main()
