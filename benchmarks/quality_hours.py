"""Where a truthful run loses energy against the clairvoyant taper-aware LP: hour by hour and
car by car.

    python -m benchmarks.quality_hours --days workplace depot

One truthful run per day through the controller (benchmarks/quality_loop.py, with its per-car
`trace`) beside the taper-aware optimum (benchmarks/quality_bound.py) solved so that it delivers
its energy as early as it can: among the optima, the one whose cumulative energy is highest at
every moment it can be, so that "the run is N kWh behind at hour h" is a fixed reading, not one
optimum's arbitrary order. Per hour: the grid limit, what the run and the LP delivered, the run's
cumulative lag, and of the hour's minutes the site was short (the plugged cars could take more
than the limit), the limit the breakers allowed and the cars did not draw, split as
`quality_gap` does (offered and not taken: taper / full / other; not offered). Per car: its
need, what the run and the LP gave it (the LP's split among cars is one optimum's: read a car
the LP fills and the run leaves short as a car the run could have filled, not must have), and
the minutes the run offered it less than its battery took.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import numpy as np

from benchmarks.quality import settings_from
from benchmarks.quality_bound import taper_aware_plan_wh
from benchmarks.quality_days import OFFLINE_SLOT_S, days
from benchmarks.quality_loop import run_day

STEP_S = 60.0


def hours_of(day, settings: dict | None = None, *, top: int = 12) -> None:
    trace: list = []
    result = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr,
                                 truthful=True, settings=settings, trace=trace))
    lp_wh = taper_aware_plan_wh(day, early=True)            # (N, T) in 5-min slots
    h = STEP_S / 3600.0
    n_hours = int(np.ceil(day.hours))
    per_hour_slots = int(3600 / OFFLINE_SLOT_S)
    lp_hour = np.zeros(n_hours)
    lp_car = lp_wh.sum(axis=1)
    for t in range(lp_wh.shape[1]):
        lp_hour[t // per_hour_slots] += lp_wh[:, t].sum()
    load, limit, wanted = (np.array(x) for x in (result.load_w, result.limit_w, result.wanted_w))
    reachable = np.minimum(np.nan_to_num(np.array(result.reachable_w), nan=np.inf), limit)
    short = wanted > limit + 1.0
    hour_of = np.array([int((t - day.start).total_seconds() // 3600) for t in result.times])
    minute = {t: i for i, t in enumerate(result.times)}
    run_hour = np.bincount(hour_of, weights=load * h, minlength=n_hours)[:n_hours]
    unused = np.bincount(hour_of, weights=np.where(short, np.maximum(reachable - load, 0), 0) * h,
                         minlength=n_hours)[:n_hours]
    short_min = np.bincount(hour_of, weights=short.astype(float), minlength=n_hours)[:n_hours]
    limit_h = np.bincount(hour_of, weights=np.where(np.isfinite(limit), limit, 0) * h,
                          minlength=n_hours)[:n_hours]
    untaken = defaultdict(lambda: np.zeros(n_hours))
    car_under = defaultdict(float)    # per visit: battery took more than offered, while short
    car_untaken = defaultdict(float)  # per visit: offered and not taken, while short
    run_car = defaultdict(float)
    for step in trace:
        i = minute[step.at]
        run_car[step.visit] += step.draw_w * h
        if short[i]:
            untaken[step.kind][hour_of[i]] += max(step.offered_w - step.draw_w, 0.0) * h
            car_untaken[step.visit] += max(step.offered_w - step.draw_w, 0.0) * h
            car_under[step.visit] += max(step.acceptance_w - step.offered_w, 0.0) * h
    k = 1000.0
    print(f"\n{day.name}: run {load.sum() * h / k:.1f} kWh, taper-aware LP {lp_wh.sum() / k:.1f} "
          f"kWh, gap {(lp_wh.sum() - load.sum() * h) / k:.1f} kWh")
    print("| hour from the day's start | limit kWh | short min | run kWh | LP kWh | run behind LP (cumulative) | "
          "unused while short | taper / full / other | not offered |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    lag = 0.0
    for hr in range(n_hours):
        lag += lp_hour[hr] - run_hour[hr]
        u = [untaken[kind][hr] for kind in ("taper", "full", "other")]
        print(f"| {hr} | {limit_h[hr] / k:.1f} | {short_min[hr]:.0f} | {run_hour[hr] / k:.1f} | "
              f"{lp_hour[hr] / k:.1f} | {lag / k:.1f} | {unused[hr] / k:.1f} | "
              + " / ".join(f"{x / k:.1f}" for x in u)
              + f" | {max(unused[hr] - sum(u), 0.0) / k:.1f} |")
    print(f"\ncars the run gave less than the LP (top {top} of "
          f"{sum(1 for i in range(len(result.visits)) if lp_car[i] - run_car[i] > 100)}):")
    print("| car | bay | arrival-departure | phases | need kWh | run | LP | run short of need | "
          "offered, not taken while short | battery took more than offered while short |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    order = sorted(range(len(result.visits)), key=lambda i: run_car[i] - lp_car[i])
    for i in order[:top]:
        v = result.visits[i]
        print(f"| {i} | {v.station_id}/{v.connector_id} | {v.arrival:%H:%M}-{v.departure:%H:%M} "
              f"| {v.ev.phases} | {v.requested_wh / k:.1f} | {run_car[i] / k:.1f} | "
              f"{lp_car[i] / k:.1f} | {(v.requested_wh - run_car[i]) / k:.1f} | "
              f"{car_untaken[i] / k:.2f} | {car_under[i] / k:.2f} |")
    behind = sum(max(lp_car[i] - run_car[i], 0.0) for i in range(len(result.visits)))
    ahead = sum(max(run_car[i] - lp_car[i], 0.0) for i in range(len(result.visits)))
    print(f"\ncars behind the LP: {behind / k:.1f} kWh in all; ahead: {ahead / k:.1f} kWh")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["workplace", "depot"])
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="ControllerSettings to change, e.g. taper_model=0")
    args = parser.parse_args(argv)
    settings = settings_from(args.set)
    for day in days(args.days):
        hours_of(day, settings, top=args.top)


if __name__ == "__main__":
    main()
