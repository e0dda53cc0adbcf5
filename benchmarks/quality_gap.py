"""Where a truthful run's gap to the offline optimum goes, per day.

    python -m benchmarks.quality_gap --days demo tight

Runs each day with every driver truthful through the controller (benchmarks/quality_loop.py,
with its per-car `trace`) and splits what the cars did not get:

- site level, over the minutes the plugged cars could take more than the grid limit ("short"):
  the power the breakers and phases allowed and the cars did not draw (reachable - load), split
  into plan offered and not taken (to cars in taper - in brackets, of it, to cars offered their
  minimum rate, the least a station offers without a pause, while they took less -, full,
  other: minimum rates, a single-phase car's share of a three-phase plan) and not offered at all;
- per car, at departure: the energy it left without (its need - what it took), and how much of
  that it could have taken in the minutes the site was not short (it was offered less than its
  battery accepted while there was room), and whether it left in taper drawing what its battery
  took (its energy left to late slots where it could no longer take it) or held back by the plan.

The offline optimum leaves some need unmet too (the cap binds): "gap" is ours against it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import numpy as np

from benchmarks.quality import settings_from
from benchmarks.quality_bound import taper_aware_optimum_wh
from benchmarks.quality_days import days, offline_optimum_wh
from benchmarks.quality_loop import run_day
from smartcharge.site.topology import SiteTopology

STEP_S = 60.0
MIN_CURRENT_A = 6.0


def breakdown(day, settings: dict | None = None) -> dict:
    trace: list = []
    result = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr,
                                 truthful=True, settings=settings, trace=trace))
    offline_wh = offline_optimum_wh(day)
    tapered_wh = taper_aware_optimum_wh(day)
    topo = SiteTopology(day.site)
    h = STEP_S / 3600.0
    load, limit, wanted = (np.array(x) for x in (result.load_w, result.limit_w, result.wanted_w))
    reachable = np.minimum(np.nan_to_num(np.array(result.reachable_w), nan=np.inf), limit)
    short = wanted > limit + 1.0
    minute = {t: i for i, t in enumerate(result.times)}
    untaken_short = defaultdict(float)
    held_room = defaultdict(float)       # per visit: accepted more than it was offered, not short
    last = {}                            # per visit: its last step
    # each car's minimum rate (6 A on the phases it uses): a car in taper offered no more than
    # it takes less than the least it can be offered without a pause
    minimum_w = [MIN_CURRENT_A * topo.station(v.station_id).voltage_v * v.ev.phases
                 for v in result.visits]
    for step in trace:
        i = minute[step.at]
        last[step.visit] = step
        if short[i]:
            untaken = max(step.offered_w - step.draw_w, 0.0) * h
            untaken_short[step.kind] += untaken
            if step.kind == "taper" and step.offered_w <= minimum_w[step.visit] + 1.0:
                untaken_short["taper_at_minimum"] += untaken
        elif step.acceptance_w > step.draw_w + 1.0:
            held_room[step.visit] += (step.acceptance_w - step.draw_w) * h
    unused_short = float(np.sum(np.maximum(reachable[short] - load[short], 0.0)) * h)
    untaken = sum(untaken_short[kind] for kind in ("taper", "full", "other"))
    cars = {"short_wh": 0.0, "room_wh": 0.0, "taper_end_wh": 0.0, "held_end_wh": 0.0, "n": 0}
    for i, visit in enumerate(result.visits):
        missing = visit.requested_wh - result.charged_wh[i]
        if missing <= 1.0:
            continue
        cars["n"] += 1
        cars["short_wh"] += missing
        cars["room_wh"] += min(missing, held_room[i])
        step = last.get(i)
        # left drawing all its battery took, below what it was offered: in taper at the end
        if step is not None and step.kind == "taper" and step.draw_w < step.offered_w - 1.0:
            cars["taper_end_wh"] += missing
        else:
            cars["held_end_wh"] += missing
    delivered = sum(result.charged_wh)
    requested = sum(v.requested_wh for v in result.visits)
    return {"day": day.name, "optimum_wh": offline_wh, "delivered_wh": delivered,
            "gap_wh": offline_wh - delivered, "tapered_wh": tapered_wh, "unmet_optimum_wh": requested - offline_wh,
            "unused_short_wh": unused_short, "untaken_short_wh": dict(untaken_short),
            "not_offered_short_wh": unused_short - min(untaken, unused_short),
            "breakers_short_wh": float(np.sum(limit[short] - reachable[short]) * h),
            "untaken_day_wh": dict(result.untaken_wh), "cars": cars}


def print_rows(rows: list[dict]) -> None:
    k = 1000.0
    print("| day | optimum kWh | taper-aware optimum | delivered | gap (to taper-aware) | unused while short (of it: offered, not "
          "taken taper (of it at the car's minimum) / full / other; not offered) | cars left "
          "short: n, kWh | of it takeable "
          "while not short | left in taper | left held back |")
    print("|---|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for r in rows:
        u, c = r["untaken_short_wh"], r["cars"]
        print(f"| {r['day']} | {r['optimum_wh'] / k:.1f} | {r['tapered_wh'] / k:.1f} | "
              f"{r['delivered_wh'] / k:.1f} | {r['gap_wh'] / k:.1f} "
              f"({(r['tapered_wh'] - r['delivered_wh']) / k:.1f}) | {r['unused_short_wh'] / k:.1f} ("
              f"{u.get('taper', 0.0) / k:.1f} ({u.get('taper_at_minimum', 0.0) / k:.1f}) / "
              + " / ".join(f"{u.get(x, 0.0) / k:.1f}" for x in ("full", "other"))
              + f"; {r['not_offered_short_wh'] / k:.1f}) | {c['n']}, {c['short_wh'] / k:.1f} "
              f"(optimum: {r['unmet_optimum_wh'] / k:.1f}) | {c['room_wh'] / k:.1f} | "
              f"{c['taper_end_wh'] / k:.1f} | {c['held_end_wh'] / k:.1f} |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["demo", "workplace", "depot", "tight"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="ControllerSettings to change, e.g. taper_model=0")
    args = parser.parse_args(argv)
    settings = settings_from(args.set)
    print_rows([breakdown(day, settings) for day in days(args.days)])


if __name__ == "__main__":
    main()
