"""Control quality: how much of what a clairvoyant planner could deliver reaches the cars.

    python -m benchmarks.quality                 # 5 seeded days + one ACN-Data week (~4-7 min)
    python -m benchmarks.quality --days demo --no-baselines      # the demo day only (~30 s)
    python -m benchmarks.quality --acn-weeks 4 --acn-limits 20 30 50 75   # longer ACN part

Part 1, the seeded days (benchmarks/quality_days.py) replayed through the real site controller
(benchmarks/quality_loop.py: planner, limits, told needs or the site's defaults, closed loop,
under a manual clock; ideal stations). Each day runs with the demo's mix of drivers (60 % tell
their need and departure) and with every driver telling the truth, which separates what
information costs from what control costs. The demo's drivers run with the site's history (7
earlier days of the same kind: `past_sessions`), from which silent drivers' needs and
departures are estimated (site/estimates.py), and without it (the site's defaults). The
baselines EDF, LLF and equal share run through the same controller
(`ControllerSettings.backend`) with truthful
drivers; "uncontrolled" (every car at its maximum from arrival) is computed on the day's
offline problem, since a controller cannot run it (it plans under the limits).
Per run: energy delivered / requested, delivered / the offline optimum (one LP over the day
knowing every car) and / the taper-aware optimum (the same LP knowing each simulated battery's
taper: benchmarks/quality_bound.py) and, with --min-rate-bound, / the bound that also keeps each
car's 6 A minimum minute by minute (benchmarks/quality_milp.py; a few minutes a day), share of the effective grid limit used while the plugged cars could take
more than it (also against what the plugged cars could draw under the breakers and phases),
dips (a run of minutes below 90 % of the limit while demand exceeds it: how many
last longer than one meter interval, 5 min, and the deepest; also how many long ones are below
90 % of what the breakers and phases let the plugged cars draw, which control could close),
peak / limit, violations (measured
draws vs the grid limit and every breaker, each minute), Jain's index of the share of need met,
pauses (a car charging, then at 0 while it still wants energy, then charging again; of them,
those a re-plan made: the plan before it still offered the car power at that minute), and the
plan the cars did not take (to full cars, to cars in taper, to others).

Part 2, ACN-Data (benchmarks/acn.py): Caltech sessions replayed at the optimizer level
(optimizer/replay.py: online re-plans at every arrival and whenever a car leaves or stops
taking power, 5-minute periods, one site limit) against the offline optimum, EDF and LLF, with
truthful drivers and with the drivers' own estimates (requested energy, estimated departure);
a car still there after its told departure is planned an hour more, as the controller does.
Then what each part of the estimates costs (early or late departures, over- or under-stated
energy: each variant truthful but for that part). Skipped with a message when the wheel cannot
be fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks import acn
from benchmarks.quality_bound import LAST_MINIMUM, online_truthful_wh, taper_aware_optimum_wh
from benchmarks.quality_days import days, offline_optimum_wh, offline_problem, past_sessions
from benchmarks.quality_loop import DayResult, run_day
from benchmarks.quality_milp import min_rate_optimum
from optimizer import baselines, check, replay

DIP_FRACTION = 0.10
METER_S = 300.0
# a car still there after its told departure is planned an hour more, as the controller does
OVERSTAY_PERIODS = 12


def jain(shares: np.ndarray) -> float:
    shares = np.asarray(shares, dtype=float)
    if shares.size == 0 or not np.any(shares):
        return 1.0
    return float(shares.sum() ** 2 / (shares.size * np.sum(shares ** 2)))


def metrics(result: DayResult, offline_wh: float, step_s: float = 60.0,
            tapered_wh: float = float("nan"), min_rate_wh: float = float("nan")) -> dict:
    requested = np.array([v.requested_wh for v in result.visits])
    charged = np.array(result.charged_wh)
    load, limit, wanted = (np.array(x) for x in (result.load_w, result.limit_w, result.wanted_w))
    short = wanted > limit + 1.0
    used = float(load[short].sum() / limit[short].sum()) if short.any() else float("nan")
    # the same against what the plugged cars could draw under the breakers and phases too
    reachable = np.minimum(np.array(result.reachable_w), limit)
    counted = short & np.isfinite(reachable) & (reachable > 0)
    reach_used = float(load[counted].sum() / reachable[counted].sum()) if counted.any() \
        else float("nan")
    dipping = short & (load < (1.0 - DIP_FRACTION) * limit)
    runs = _runs(dipping)
    long_dips = sum(1 for r in runs if r * step_s > METER_S)
    # the same against what the breakers and phases let the plugged cars draw: a dip of the
    # grid limit that the breakers make is no control's to close (demo day: 02:45-03:16 the
    # plugged cars could draw 95-108 kW of the 120 kW under their breakers)
    reach_dipping = counted & (load < (1.0 - DIP_FRACTION) * reachable)
    long_reach_dips = sum(1 for r in _runs(reach_dipping) if r * step_s > METER_S)
    depth = float(np.max(np.where(dipping, (limit - load) / limit, 0.0))) if dipping.any() else 0.0
    # the same against the grid connection's tightest limit: its W, or the per-phase current
    # of its most loaded phase (a grid at its current limit on L1 carries no more, whatever its
    # W: the demo day's 02:30-03:12, L1 at 200 of 200 A with the site at 104-108 of 120 kW)
    phase_use = np.array(result.grid_phase_use) if len(result.grid_phase_use) == len(load) \
        else np.full(len(load), np.nan)
    grid_use = np.fmax(load / np.where(limit > 0, limit, np.nan), phase_use)
    grid_used = float((np.minimum(grid_use[short], 1.0) * limit[short]).sum() / limit[short].sum()) \
        if short.any() else float("nan")
    long_grid_dips = sum(1 for r in _runs(short & (grid_use < 1.0 - DIP_FRACTION))
                         if r * step_s > METER_S)
    finite = np.isfinite(limit) & (limit > 0)
    met = np.minimum(charged / np.maximum(requested, 1e-9), 1.0)
    rate = np.array(result.pauses) / np.maximum(np.array(result.hours_plugged), 1e-9)
    return {
        "delivered_kwh": charged.sum() / 1000.0, "requested_kwh": requested.sum() / 1000.0,
        "of_requested": charged.sum() / requested.sum(), "of_offline": charged.sum() / offline_wh,
        "of_tapered": charged.sum() / tapered_wh, "of_min_rate": charged.sum() / min_rate_wh,
        "limit_used": used, "reachable_used": reach_used, "dips": len(runs),
        "long_dips": long_dips, "long_reach_dips": long_reach_dips, "deepest": depth,
        "grid_used": grid_used, "long_grid_dips": long_grid_dips,
        "peak": float(np.max(load[finite] / limit[finite])), "violations": result.violations,
        "jain": jain(met), "pauses_max_per_h": float(rate.max(initial=0.0)),
        "pauses": int(np.sum(result.pauses)),
        "pauses_per_car_h": float(np.sum(result.pauses) / max(np.sum(result.hours_plugged), 1e-9)),
        "cars_over_1_per_h": int(np.sum((np.array(result.pauses) > np.maximum(
            np.array(result.hours_plugged), 1.0)))),
        "replans": result.replans,
        "replan_pauses": int(np.sum(result.replan_pauses)),
        "cars_over_1_per_h_replan": int(np.sum((np.array(result.replan_pauses) > np.maximum(
            np.array(result.hours_plugged), 1.0)))),
        "untaken_kwh": {k: v / 1000.0 for k, v in result.untaken_wh.items()},
    }


def _runs(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of True in flags, in order."""
    runs, length = [], 0
    for flag in flags:
        if flag:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    if length:
        runs.append(length)
    return runs


def uncontrolled_row(day, offline_wh: float, tapered_wh: float = float("nan"),
                     min_rate_wh: float = float("nan")) -> dict:
    problem = offline_problem(day)
    power = baselines.uncontrolled(problem)
    delivered = np.minimum(power @ problem.wh_per_w, problem.energy_wh)
    root = power.sum(axis=0)
    limit = problem.node_limit_w[0]
    return {"delivered_kwh": delivered.sum() / 1000.0,
            "of_requested": delivered.sum() / problem.energy_wh.sum(),
            "of_offline": delivered.sum() / offline_wh,
            "of_tapered": delivered.sum() / tapered_wh,
            "of_min_rate": delivered.sum() / min_rate_wh,
            "peak": float(np.max(root / limit)),
            "violations": len({v.slot for v in check(problem, power) if v.kind != "below_min"}),
            "jain": jain(np.minimum(delivered / problem.energy_wh, 1.0))}


def print_day_table(rows: list[tuple[str, str, dict]]) -> None:
    print("| day | run | delivered kWh | of requested | of offline optimum | of taper-aware "
          "optimum | of the bound with the 6 A minimum, minute by minute | limit used while "
          "short | of what breakers allow | of the grid's tightest limit (W or a phase's A) | dips (> 5 min; > 5 min under what breakers allow; > 5 min under the grid's tightest limit) | deepest dip | peak / limit | "
          "violations | Jain | pauses (per car-hour) | max pauses per car-hour | "
          "cars paused > 1/h | of them by a re-plan (cars > 1/h) | re-plans | offered, not taken kWh: full / taper / other |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for day, run, m in rows:
        if "limit_used" not in m:   # uncontrolled, at the optimizer level
            print(f"| {day} | {run} | {m['delivered_kwh']:.0f} | {m['of_requested']:.1%} | "
                  f"{m['of_offline']:.1%} | {m['of_tapered']:.1%} | {_pct(m['of_min_rate'])} | - | - | - | - | - | {m['peak']:.0%} | {m['violations']} "
                  f"slots | {m['jain']:.3f} | - | - | - | - | - | - |")
            continue
        print(f"| {day} | {run} | {m['delivered_kwh']:.0f} | {m['of_requested']:.1%} | "
              f"{m['of_offline']:.1%} | {m['of_tapered']:.1%} | {_pct(m['of_min_rate'])} | {m['limit_used']:.1%} | {m['reachable_used']:.1%} | "
              f"{m['grid_used']:.1%} | {m['dips']} ({m['long_dips']}; {m['long_reach_dips']}; {m['long_grid_dips']}) "
              f"| {m['deepest']:.0%} | {m['peak']:.0%} | {m['violations']} | {m['jain']:.3f} | "
              f"{m['pauses']} ({m['pauses_per_car_h']:.2f}) | {m['pauses_max_per_h']:.1f} | "
              f"{m['cars_over_1_per_h']} | {m['replan_pauses']} ({m['cars_over_1_per_h_replan']}) "
              f"| {m['replans']} | "
              + " / ".join(f"{m['untaken_kwh'][k]:.0f}" for k in ("full", "taper", "other"))
              + " |")


def _pct(share: float) -> str:
    return "-" if not np.isfinite(share) else f"{share:.2%}"


def print_min_rate_bound(day, offline_wh: float, tapered_wh: float, bound) -> None:
    """The clairvoyant bound that keeps each car's 6 A minimum minute by minute
    (benchmarks/quality_milp.py): the yardstick (the least of its upper bounds), the minute LP
    without the minimum, the Lagrangian bound, the best lawful schedule found (a lower bound on
    that optimum) and the gap between them, the whole-day MILP rounds if any."""
    rounds = "; ".join(f"{r['binaries']} binaries: {r['dual_wh'] / 1000:.2f} ({r['seconds']:.0f} s)"
                       for r in bound.rounds[1:]) or "-"
    print(f"| {day.name} | {offline_wh / 1000:.2f} | {tapered_wh / 1000:.2f} | "
          f"{bound.lp_wh / 1000:.2f} ({bound.rounds[0]['seconds']:.0f} s) | "
          f"{bound.lagrangian_wh / 1000:.2f} ({bound.rounds[0]['lagrangian_s']:.0f} s) | "
          f"**{bound.bound_wh / 1000:.2f}** ({bound.bound_wh / tapered_wh:.2%} of taper-aware) | "
          f"{bound.incumbent_wh / 1000:.2f} (gap {bound.gap:.2%}) | {rounds} |", flush=True)


def print_bounds(day, offline_wh: float, tapered: float) -> None:
    """Where the truthful runs' gap to the offline optimum can come from: the batteries' taper
    (a bound that knows it), the minimum rate where a battery takes less than it (the same
    bound charging each such car's minimum against the limits: quality_bound's `min_rates`),
    not knowing who comes next (the offline problem re-planned online at every arrival and
    departure, perfect cars and stations), minimum rates (the same with each car's 6 A
    minimum). What the truthful run loses beyond the last is the controller's."""
    with_min = taper_aware_optimum_wh(day, min_rates=True)
    below = dict(LAST_MINIMUM)
    online = online_truthful_wh(day)
    online_min = online_truthful_wh(day, min_current_a=6.0)
    print(f"| {day.name} | {offline_wh / 1000:.1f} | {tapered / 1000:.1f} ({tapered / offline_wh:.2%}) "
          f"| {with_min / 1000:.1f} ({with_min / offline_wh:.2%}; {below['cars']} cars, "
          f"{below['band_wh'] / 1000:.1f} kWh taken below their minimum) "
          f"| {online / 1000:.1f} ({online / offline_wh:.2%}) "
          f"| {online_min / 1000:.1f} ({online_min / offline_wh:.2%}) |", flush=True)


def run_days(args) -> None:
    if args.bounds:
        print("\n### Bounds: offline optimum, with taper, online (perfect physics), online with "
              "minimum rates [kWh]\n")
        print("| day | offline optimum | with the batteries' taper | with taper and the 6 A "
              "minimum held where a battery takes less | online, truthful | "
              "online, truthful, 6 A minimum |")
        print("|---|---:|---:|---:|---:|---:|")
    # the two clairvoyant bounds per day: ignoring the batteries' taper, and knowing it
    # (benchmarks/quality_bound.py: what the simulated cars physically accept)
    the_days = days(args.days, seed_offset=args.seed_offset)
    bounds = {day.name: (offline_optimum_wh(day), taper_aware_optimum_wh(day))
              for day in the_days}
    if args.bounds:
        for day in the_days:
            print_bounds(day, *bounds[day.name])
    min_rate = {}
    if args.min_rate_bound:
        print("\n### The clairvoyant bound with the 6 A minimum, minute by minute [kWh] "
              "(benchmarks/quality_milp.py)\n")
        print("| day | offline optimum (5-min LP) | taper-aware (5-min LP) | minute LP, taper, "
              "no minimum | Lagrangian, 6 A minimum on every car-minute | **the bound with the "
              "6 A minimum (least of them)** | a lawful schedule (the minute LP rounded) | "
              "whole-day MILP rounds: dual bound |")
        print("|---|---:|---:|---:|---:|---:|---|---|")
        for day in the_days:
            bound = min_rate_optimum(day, rounds=args.min_rate_rounds,
                                     time_limit_s=args.min_rate_time_limit_s)
            min_rate[day.name] = bound.bound_wh
            print_min_rate_bound(day, *bounds[day.name], bound)
    rows = []
    for day in the_days:
        started = time.perf_counter()
        offline_wh, tapered_wh = bounds[day.name]
        min_rate_wh = min_rate.get(day.name, float("nan"))
        requested = sum(v.requested_wh for v in day.visits)
        print(f"\n{day.name}: {len(day.visits)} visits, {requested / 1000:.0f} kWh requested, "
              f"offline optimum {offline_wh / 1000:.1f} kWh, taper-aware "
              f"{tapered_wh / 1000:.1f} kWh", flush=True)
        history = past_sessions(day)
        runs = [("ours, demo's drivers", "auto", False, history),
                ("ours, demo's drivers, no history", "auto", False, None),
                ("ours, truthful", "auto", True, None)]
        if args.baselines:
            runs += [(f"{b}, truthful", b, True, None) for b in ("edf", "llf", "equal_share")]
        for label, backend, truthful, past in runs:
            result = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr,
                                         truthful=truthful, backend=backend, history=past,
                                         settings=args.settings))
            rows.append((day.name, label, metrics(result, offline_wh, tapered_wh=tapered_wh,
                                                  min_rate_wh=min_rate_wh)))
        rows.append((day.name, "uncontrolled (optimizer level)",
                     uncontrolled_row(day, offline_wh, tapered_wh, min_rate_wh)))
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    print("\n### Seeded days through the site controller\n")
    print_day_table(rows)


def run_acn(args) -> None:
    print("\n### ACN-Data, Caltech, at the optimizer level\n")
    try:
        files = acn.fetch(Path(args.acn_cache))
    except (acn.Unavailable, OSError, Exception) as exc:   # a benchmark, not a service
        print(f"skipped: ACN-Data not available ({exc})")
        return
    rows = acn.read_rows(files)
    print("| week from | sessions | limit kW | offline optimum | ours, truthful | LLF, truthful "
          "| EDF, truthful | ours, drivers' estimates | LLF, estimates | EDF, estimates |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for week in range(args.acn_weeks):
        start = datetime.fromisoformat(args.acn_start) + timedelta(days=7 * week)
        sessions = acn.window(rows, start, 7.0)
        need = sessions.energy_wh.sum()
        for limit_kw in args.acn_limits:
            limit_w = limit_kw * 1000.0
            cells = [replay.offline(sessions, limit_w).sum() / need]
            for told in (sessions.truthful(), sessions):
                for method in ("solve", "llf", "edf"):
                    cells.append(replay.online(told, limit_w, method, replan_on_change=True,
                                               min_stay_periods=OVERSTAY_PERIODS).sum() / need)
            print(f"| {start:%Y-%m-%d} | {sessions.arrival.size} | {limit_kw:g} | "
                  + " | ".join(f"{c:.2%}" for c in cells) + " |", flush=True)
    if args.acn_breakdown:
        print_acn_breakdown(args, rows)


def print_acn_breakdown(args, rows) -> None:
    """Which part of the drivers' estimates costs most: each variant tells the truth except
    for that part (ours, online, as above)."""
    print("\nWhat each part of the drivers' estimates costs (ours; share of the demand "
          "delivered, each variant truthful but for that part):\n")
    names = list(acn.information_parts(acn.window(rows, datetime.fromisoformat(
        args.acn_start), 7.0)))
    print("| week from | limit kW | truthful | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    for week in range(args.acn_weeks):
        start = datetime.fromisoformat(args.acn_start) + timedelta(days=7 * week)
        sessions = acn.window(rows, start, 7.0)
        need = sessions.energy_wh.sum()
        told_d, true_d = sessions.told_departure, sessions.departure
        print(f"(week from {start:%Y-%m-%d}: {sessions.arrival.size} sessions, departures told "
              f"early {int((told_d < true_d).sum())}, late {int((told_d > true_d).sum())}; "
              f"energy over-stated {int((sessions.told_energy_wh > sessions.energy_wh).sum())}, "
              f"under-stated {int((sessions.told_energy_wh < sessions.energy_wh).sum())})")
        for limit_kw in args.acn_limits:
            cells = [replay.online(told, limit_kw * 1000.0, "solve", replan_on_change=True,
                                   min_stay_periods=OVERSTAY_PERIODS).sum() / need
                     for told in (sessions.truthful(),
                                  *acn.information_parts(sessions).values())]
            print(f"| {start:%Y-%m-%d} | {limit_kw:g} | "
                  + " | ".join(f"{c:.2%}" for c in cells) + " |", flush=True)


def settings_from(items: list[str]) -> dict:
    """["taper_model=0", "ev_headroom_w=150.0", "near_slot_s=None"] -> ControllerSettings
    overrides."""
    out = {}
    for item in items:
        name, value = item.split("=", 1)
        out[name] = None if value == "None" else float(value) if "." in value else int(value)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=None,
                        help="demo workplace depot tight regulars (default: all)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="other days of the same kinds: every day's seed + this")
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                        help="EDF, LLF, equal share through the controller too")
    parser.add_argument("--no-days", dest="run_days", action="store_false")
    parser.add_argument("--bounds", action=argparse.BooleanOptionalAction, default=True,
                        help="the bounds table: taper-aware optimum, online re-plans (~20 s a day)")
    parser.add_argument("--min-rate-bound", action=argparse.BooleanOptionalAction, default=False,
                        help="the clairvoyant bound with the 6 A minimum, minute by minute (a "
                        "MILP: minutes a day; benchmarks/quality_milp.py) and the day table's "
                        "column against it")
    parser.add_argument("--min-rate-rounds", type=int, default=0,
                        help="rounds of the whole day's MILP for that bound (each up to "
                        "--min-rate-time-limit-s; on the days they do not finish the root)")
    parser.add_argument("--min-rate-time-limit-s", type=float, default=600.0,
                        help="each round's MILP time limit (its dual bound is kept)")
    parser.add_argument("--acn", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--acn-cache", default=str(acn.DEFAULT_CACHE))
    parser.add_argument("--acn-start", default="2019-05-06T00:00:00-07:00")
    parser.add_argument("--acn-weeks", type=int, default=1)
    parser.add_argument("--acn-limits", type=float, nargs="+", default=[20.0, 30.0])
    parser.add_argument("--acn-breakdown", action=argparse.BooleanOptionalAction, default=True,
                        help="what each part of the drivers' estimates costs")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="ControllerSettings to change for every run, e.g. taper_model=0")
    args = parser.parse_args(argv)
    args.settings = settings_from(args.set)
    print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.machine()}; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    started = time.perf_counter()
    if args.run_days:
        run_days(args)
    if args.acn:
        run_acn(args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
