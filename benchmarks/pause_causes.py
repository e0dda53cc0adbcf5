"""Which stage of a re-plan paused a running car: the pauses a re-plan made, taken apart.

    python -m benchmarks.pause_causes --days demo --runs truthful

Each seeded day runs through the controller as `benchmarks.quality` does; every re-plan is
captured (the problem, the LP's plan before the hold and the rounding, the plan the rounding
made, what `solve` returned and which backend or kept window it came from). Each pause a
re-plan made (the car charging, the plan before the re-plan still offering it power, at 0
after it, charging again later) is given the first stage that left the car at 0 now:

- "declined" / "no room in its inputs": the closed loop planned it at 0 (a car that took
  nothing while offered its minimum), or its maximum is 0 now;
- "need met": the planner asks nothing more for it (its energy done);
- "LP 0": the LP's plan already gives it 0 in the first slot;
- "rounding": the LP gives it less than its minimum and the hold did not raise it, so the
  projection paused it;
- "projection": the plan before the rounding ran it at its minimum or more, the rounding's
  output (projection and top-up) is 0;
- "guard <backend>": our rounded plan ran it, the portfolio guard returned another plan;
- "after solve": `solve` ran it (the controller's plan then gives it 0: a check, a clip).

Cars paused more than once an hour by re-plans are counted per cause of their pauses too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from datetime import datetime

import numpy as np

import optimizer
from benchmarks.quality_days import days, past_sessions
from benchmarks.quality_loop import run_day
from smartcharge.site import planner

ZERO_W = 1e-6


class Capture:
    """Wraps the planner's make_plan and the stages of optimizer.solve, one re-plan at a time."""

    def __init__(self) -> None:
        self.by_time: dict[datetime, dict] = {}
        self._current: dict | None = None
        self._depth = 0

    def install(self) -> None:
        mod = sys.modules["optimizer.solve"]
        make_plan, solve, hold, round_ = (planner.make_plan, mod.solve, mod.hold_minimums,
                                          mod._round)
        cap = self

        def made(topo, inputs, **kw):
            found = cap._current = {"stages": {}}
            try:
                out = make_plan(topo, inputs, **kw)
            finally:
                cap._current = None   # other solves (the benchmark's reachable_w) are not re-plans
            found.update(now=inputs.now, built=out.built, plan=out.plan)
            cap.by_time[inputs.now] = found
            return out

        def solve_w(problem, *a, **kw):
            cap._depth += 1
            try:
                schedule = solve(problem, *a, **kw)
            finally:
                cap._depth -= 1
            if cap._depth == 0 and cap._current is not None:
                cap._current["stages"]["final"] = np.array(schedule.power_w)
                cap._current["backend"] = schedule.backend
            return schedule

        def hold_w(problem, power_w, paused_too=False, **kw):
            out = hold(problem, power_w, paused_too=paused_too, **kw)
            if cap._depth == 1 and cap._current is not None and not paused_too:
                cap._current["stages"]["lp"] = np.array(power_w)
            return out

        def round_w(problem, power_w, paused, **kw):
            out = round_(problem, power_w, paused, **kw)
            if cap._depth == 1 and cap._current is not None:
                stages = cap._current["stages"]
                stages.setdefault("lp", np.array(power_w))
                stages["held"] = np.array(power_w)
                stages["rounded"] = np.array(out[0])
            return out

        planner.make_plan = made
        mod.solve = solve_w
        optimizer.solve = solve_w
        mod.hold_minimums = hold_w
        mod._round = round_w

    def cause(self, at: datetime, ref) -> str:
        found = self.by_time.get(at)
        if found is None or "built" not in found:
            return "no re-plan captured"
        built = found["built"]
        if ref not in built.controlled:
            return "not planned (fixed or gone)"
        i = built.controlled.index(ref)
        session, problem = built.sessions[i], built.problem
        stages = found["stages"]
        minimum = problem.min_power_w[i]
        if session.declined:
            return "declined (closed loop)"
        if problem.upper_w[i, 0] <= ZERO_W:
            return "no room in its inputs"
        if problem.energy_wh[i] <= 0:
            return "need met"
        if "lp" not in stages:
            return f"no LP ({found.get('backend')})"
        lp, held, rounded, final = (stages[k][i, 0] for k in ("lp", "held", "rounded", "final"))
        if lp <= ZERO_W:
            prev = problem.previous_w[i, 0] if problem.previous_w is not None else np.nan
            return "LP 0" + ("" if prev > ZERO_W else " (previous plan 0 now)")
        if held < minimum - ZERO_W and rounded <= ZERO_W:
            return "rounding"
        if rounded <= ZERO_W:
            return "projection"
        if final <= ZERO_W:
            backend = found.get("backend", "?")
            return f"guard {backend.split('+')[0] if '+' in backend else backend}"
        return "after solve"

    def detail(self, at: datetime, ref) -> str:
        """The car's first-slot power at each stage of the re-plan at `at` (W), its minimum and
        what the previous plan gave it: to read one pause by hand."""
        found = self.by_time.get(at)
        if found is None or "built" not in found or ref not in found["built"].controlled:
            return ""
        built = found["built"]
        i = built.controlled.index(ref)
        problem, stages = built.problem, found["stages"]
        prev = problem.previous_w[i, 0] if problem.previous_w is not None else np.nan
        parts = [f"min {problem.min_power_w[i]:.0f}", f"prev {prev:.0f}",
                 f"need {problem.energy_wh[i]:.0f} Wh", f"n {len(built.controlled)}",
                 f"backend {found.get('backend')}"]
        parts += [f"{k} {stages[k][i, 0]:.0f}" for k in ("lp", "held", "rounded", "final")
                  if k in stages]
        return ", ".join(parts)


RUNS = {"demo": ("auto", False, "history"), "nohistory": ("auto", False, None),
        "truthful": ("auto", True, None)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", nargs="+", default=["demo", "workplace", "depot", "tight"])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--detail", action="store_true",
                        help="each pause of the cars paused > 1/h by re-plans: moment, stage")
    parser.add_argument("--save", metavar="PATH",
                        help="pickle every re-plan pause (day, run, moment, car, cause, the "
                             "problem and its stages) to PATH, to replay one by hand")
    args = parser.parse_args(argv)
    capture = Capture()
    capture.install()
    total, total_cars = Counter(), Counter()
    saved = []
    for day in days(args.days):
        for run in args.runs:
            backend, truthful, history = RUNS[run]
            capture.by_time.clear()
            result = asyncio.run(run_day(
                day.site, day.visits, day.start, day.hours, day.dr, truthful=truthful,
                backend=backend, history=past_sessions(day) if history else None))
            causes, per_visit, log = Counter(), {}, {}
            for at, ref, visit in result.replan_pause_log:
                why = capture.cause(at, ref)
                causes[why] += 1
                per_visit.setdefault(visit, Counter())[why] += 1
                log.setdefault(visit, []).append((at, ref, why))
                if args.save and "built" in capture.by_time.get(at, {}):
                    found = capture.by_time[at]
                    saved.append({"day": day.name, "run": run, "at": at, "ref": ref,
                                  "visit": visit, "cause": why, "problem": found["built"].problem,
                                  "controlled": found["built"].controlled,
                                  "stages": found["stages"], "backend": found.get("backend")})
            over = [n for n, count in enumerate(result.replan_pauses)
                    if count > max(result.hours_plugged[n], 1.0)]
            for entry in saved:
                if entry["day"] == day.name and entry["run"] == run:
                    entry["over"] = entry["visit"] in over
            if args.detail:
                for n in over:
                    v = result.visits[n]
                    print(f"  car {n} ({v.station_id}/{v.connector_id}, "
                          f"{v.arrival:%H:%M}-{v.departure:%H:%M}, "
                          f"{result.hours_plugged[n]:.1f} h plugged, "
                          f"{result.replan_pauses[n]} re-plan pauses):")
                    for at, ref, why in log.get(n, []):
                        print(f"    {at:%H:%M} {why}: {capture.detail(at, ref)}")
            cars = Counter()
            for n in over:
                cars.update(per_visit.get(n, Counter()))
            total.update(causes)
            total_cars.update(cars)
            print(f"{day.name} {run}: {sum(result.charged_wh) / 1000:.1f} kWh, "
                  f"{sum(result.pauses)} pauses, {sum(causes.values())} re-plan pauses, "
                  f"{len(over)} cars > 1/h; by cause {dict(causes.most_common())}; of the cars > 1/h "
                  f"{dict(cars.most_common())}", flush=True)
    print(f"all: {dict(total.most_common())}\ncars > 1/h: {dict(total_cars.most_common())}")
    if args.save:
        import pickle
        with open(args.save, "wb") as f:
            pickle.dump(saved, f)


if __name__ == "__main__":
    main()
