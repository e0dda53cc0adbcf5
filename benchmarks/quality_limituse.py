"""What the limit left unused while the site is short is made of, per day (truthful runs).

    python -m benchmarks.quality_limituse --days demo

Each day runs with every driver truthful through the controller (benchmarks/quality_loop.py,
with its per-car `trace`). Over the minutes the plugged cars' batteries would take more than
the grid limit ("short"), the limit minus what the cars drew is split into:

- breakers: the limit less what the plugged cars could draw under every breaker and phase
  (the loop's `reachable_w`);
- needs: that less the same with each car capped at its remaining (true) need spread over what
  is left of the plan's slot (as the LP sees a car near its need);
- control: that less what the cars drew.

Then the control part by hour of the day, where to look first.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import numpy as np

from benchmarks.quality import settings_from
from benchmarks.quality_days import days
from benchmarks.quality_loop import reachable_w, run_day
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.topology import ConnectorRef, SiteTopology

KWH_PER_W_MIN = 60.0 / 3600.0 / 1000.0


def breakdown(day, settings: dict) -> dict:
    trace: list = []
    r = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr, truthful=True,
                            trace=trace, settings=settings))
    slot_s = ControllerSettings(**settings).slot_s
    topo = SiteTopology(day.site)
    load, limit, wanted = (np.array(x) for x in (r.load_w, r.limit_w, r.wanted_w))
    reach = np.minimum(np.array(r.reachable_w), limit)
    short = wanted > limit + 1.0
    index = {t: i for i, t in enumerate(r.times)}
    drawn_wh: dict[int, float] = defaultdict(float)
    per_minute: dict[int, list] = defaultdict(list)
    for step in trace:
        per_minute[index[step.at]].append(
            (step, r.visits[step.visit].requested_wh - drawn_wh[step.visit]))
        drawn_wh[step.visit] += step.draw_w / 60.0
    within = np.full(len(load), np.nan)
    for i in np.nonzero(short)[0]:
        left_s = slot_s - r.times[i].timestamp() % slot_s
        cars, accept = [], {}
        for step, remaining_wh in per_minute[i]:
            visit = r.visits[step.visit]
            ref = ConnectorRef(visit.station_id, visit.connector_id)
            cars.append((ref, visit.ev))
            accept[ref] = max(min(step.acceptance_w, remaining_wh * 3600.0 / left_s), 0.0)
        within[i] = min(reachable_w(topo, cars, limit[i], accept), limit[i])
    counted = short & np.isfinite(within)
    truly = counted & (within >= limit - 1.0)
    by_hour: dict[str, float] = defaultdict(float)
    for t, gap, ok in zip(r.times, within - load, counted):
        if ok and gap > 0:
            by_hour[t.strftime("%H")] += gap * KWH_PER_W_MIN
    return {"day": day.name, "short_min": int(short.sum()),
            "used": load[short].sum() / limit[short].sum(),
            "unused_kwh": (limit - load)[short].sum() * KWH_PER_W_MIN,
            "breakers_kwh": (limit - reach)[short].sum() * KWH_PER_W_MIN,
            "needs_kwh": (reach - within)[counted].sum() * KWH_PER_W_MIN,
            "control_kwh": (within - load)[counted].sum() * KWH_PER_W_MIN,
            "used_of_within": load[counted].sum() / within[counted].sum(),
            "truly_min": int(truly.sum()),
            "used_truly": load[truly].sum() / max(limit[truly].sum(), 1e-9),
            "by_hour": dict(sorted(by_hour.items()))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["demo"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="ControllerSettings to change, e.g. taper_model=0")
    args = parser.parse_args(argv)
    settings = settings_from(args.set)
    print("| day | short min | limit used | unused kWh | breakers | needs | control | used of "
          "breakers and needs | minutes short within both: n, used | control by hour (kWh) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for day in days(args.days):
        b = breakdown(day, settings)
        hours = ", ".join(f"{h} h {v:.1f}" for h, v in b["by_hour"].items() if v >= 0.5)
        print(f"| {b['day']} | {b['short_min']} | {b['used']:.1%} | {b['unused_kwh']:.1f} | "
              f"{b['breakers_kwh']:.1f} | {b['needs_kwh']:.1f} | {b['control_kwh']:.1f} | "
              f"{b['used_of_within']:.1%} | {b['truly_min']}, {b['used_truly']:.1%} | {hours} |",
              flush=True)


if __name__ == "__main__":
    main()
