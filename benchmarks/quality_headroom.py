"""Where the plan's power offered to cars that draw their on-board charger's maximum goes, while
the site is short (truthful runs, `quality_loop.run_day`'s per-car trace):

    python -m benchmarks.quality_headroom --days demo depot

Per day, over the minutes the plugged cars could take more than the grid limit: the energy
offered to a car (not in taper, not full) that drew all it could take and was offered more,
split by how much more it was offered that minute - up to 200 W (the closed loop's headroom,
`ev_headroom_w` 150 W, over a capped car), more (a car not capped yet: its first samples, a
cap lifted) - and how many such cars at once on average. `--set` as in benchmarks.quality.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import numpy as np

from benchmarks.quality import settings_from
from benchmarks.quality_days import days
from benchmarks.quality_loop import run_day

STEP_S = 60.0
HEADROOM_BAND_W = 200.0


def split(day, settings: dict | None = None) -> dict:
    trace: list = []
    result = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr,
                                 truthful=True, settings=settings, trace=trace))
    h = STEP_S / 3600.0
    short = np.array(result.wanted_w) > np.array(result.limit_w) + 1.0
    minute = {t: i for i, t in enumerate(result.times)}
    wh = defaultdict(float)
    at_once = defaultdict(int)           # short minute -> cars offered headroom-sized extra
    for step in trace:
        i = minute[step.at]
        if not short[i] or step.kind != "other":
            continue
        extra_w = step.offered_w - step.draw_w
        # drew all its car took (its charger's maximum), offered more
        if extra_w <= 1.0 or step.draw_w < step.acceptance_w - 1.0:
            continue
        band = "headroom" if extra_w <= HEADROOM_BAND_W else "more"
        wh[band] += extra_w * h
        if band == "headroom":
            at_once[i] += 1
    n_short = int(short.sum())
    return {"day": day.name, "delivered_wh": sum(result.charged_wh), "short_min": n_short,
            "headroom_wh": wh["headroom"], "more_wh": wh["more"],
            "cars_at_once": (sum(at_once.values()) / n_short) if n_short else 0.0,
            "violations": result.violations}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["demo", "depot"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    settings = settings_from(args.set)
    print("| day | delivered kWh | short min | to cars at their maximum: extra <= 200 W kWh "
          "| extra > 200 W kWh | such cars at once (mean over short min) | violations |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for day in days(args.days):
        r = split(day, settings)
        print(f"| {r['day']} | {r['delivered_wh'] / 1000:.1f} | {r['short_min']} | "
              f"{r['headroom_wh'] / 1000:.2f} | {r['more_wh'] / 1000:.2f} | "
              f"{r['cars_at_once']:.2f} | {r['violations']} |", flush=True)


if __name__ == "__main__":
    main()
