"""What the closed loop last did to a car's cap, for the plan offered more than 200 W over what
a car at its on-board charger's maximum drew while the site was short (truthful runs):

    python -m benchmarks.quality_lifts --days demo depot

`quality_headroom`'s "extra > 200 W" band, split by the car's last cap event since it arrived
(`ClosedLoop.on_sample` / `phases_learned` wrapped for the run): its first 6 minutes, its cap
lifted (the cap gone: offered up to its bay's maximum until its next sample), capped (offered
more than its cap: a cap under its minimum rate), a taper fit or none yet. Prints the largest
episodes (visit, connector, cause, time of the event). `--set` as in benchmarks.quality.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from datetime import timedelta

from benchmarks.quality import settings_from
from benchmarks.quality_days import days
from benchmarks.quality_loop import run_day
from smartcharge.site import closed_loop
from smartcharge.site.topology import ConnectorRef

EXTRA_W = 200.0


def _watch(events: dict) -> None:
    """Log every change of a car's cap or taper fit by the closed loop's entry points."""
    for name in ("on_sample", "phases_learned"):
        original = getattr(closed_loop.ClosedLoop, name)

        def wrapped(self, arg, *rest, _original=original, _name=name, **kw):
            ref = ConnectorRef(arg.station_id, arg.connector_id) if _name == "on_sample" else arg
            before, fit_before = self.ev_cap_w.get(ref), ref in self.taper.fits
            out = _original(self, arg, *rest, **kw)
            after, fit = self.ev_cap_w.get(ref), ref in self.taper.fits
            if before != after or fit_before != fit:
                events[(ref.station_id, ref.connector_id)].append(
                    (self.c.clock.now(), _name, before, after, fit))
            return out
        setattr(closed_loop.ClosedLoop, name, wrapped)


def _cause(step, visit, evs) -> str:
    if step.at < visit.arrival + timedelta(minutes=6):
        return "first 6 min"
    if not evs:
        return "no cap event yet"
    at, name, before, after, fit = evs[-1]
    if name == "phases_learned":
        return "phases learned"
    if before is not None and after is None:
        return "cap replaced by a taper fit" if fit else "cap lifted"
    return "capped" if after is not None else "taper fit dropped"


def split(day, settings: dict | None, events: dict, top: int) -> None:
    events.clear()
    trace: list = []
    result = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr,
                                 truthful=True, settings=settings, trace=trace))
    short = {t for t, w, lim in zip(result.times, result.wanted_w, result.limit_w)
             if w > lim + 1.0}
    by_cause, episodes = defaultdict(float), defaultdict(float)
    for step in trace:
        extra_w = step.offered_w - step.draw_w
        if step.at not in short or step.kind != "other" or extra_w <= EXTRA_W or \
                step.draw_w < step.acceptance_w - 1.0:
            continue
        visit = result.visits[step.visit]
        key = (visit.station_id, visit.connector_id)
        evs = [e for e in events[key] if visit.arrival <= e[0] <= step.at]
        cause = _cause(step, visit, evs)
        by_cause[cause] += extra_w / 60.0
        episodes[(step.visit, f"{key[0]}/{key[1]}", cause,
                  evs[-1][0].strftime("%H:%M") if evs else "-")] += extra_w / 60.0
    print(f"{day.name}: delivered {sum(result.charged_wh) / 1000:.1f} kWh, violations "
          f"{result.violations}; extra > {EXTRA_W:.0f} W while short, Wh by cause: "
          + ", ".join(f"{c} {wh:.0f}" for c, wh in sorted(by_cause.items(), key=lambda x: -x[1])),
          flush=True)
    for (visit, ref, cause, at), wh in sorted(episodes.items(), key=lambda x: -x[1])[:top]:
        print(f"  visit {visit} {ref} {cause} (event {at}): {wh:.0f} Wh")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["demo", "depot"])
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    events: dict = defaultdict(list)
    _watch(events)
    for day in days(args.days):
        split(day, settings_from(args.set), events, args.top)


if __name__ == "__main__":
    main()
