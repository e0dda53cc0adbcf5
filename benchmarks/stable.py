"""Plan churn at the optimizer level: how much of the kept window a re-plan changes, and what the
stable pass (optimizer/stable.py) costs.

    python -m benchmarks.stable --sizes 100 1000 --repeats 3

A re-plan as the controller makes one: `optimizer.instances.generate(N, family)` at 08:30 (slot
34, when most cars are plugged in), where the previous plan was made for the same day with one
car asking half as much (what changes between two re-plans: a need, a car). "Changed" counts
the (connector, slot) entries of the kept window (slots 34-35, 30 minutes: what the stations'
profiles hold) that differ by more than 1 W from the previous plan; "pauses" the connectors
running in slot 34 of the previous plan and at 0 in the new one. Methods: `highs` without a
previous plan, `auto` without one (the flow where it applies), `highs + previous` (the stable
pass; no min-rate re-solve round then), `auto + previous` (above STABLE_FLOW_CONNECTORS
sessions the flow with its stable step, optimizer/flow.py), each end to end (`solve`: rounding,
top-up, guard), median of the repeats. The previous plan is the one the same backend made
(HiGHS' for the highs rows, the flow's for the auto rows where the flow applies): a controller
re-plans with the backend that made its last plan.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from optimizer import instances, solve
from optimizer.solve import weighted_energy_wh

WINDOW = slice(34, 36)


def _case(n: int, family: str, backend: str = "highs"):
    """(problem, previous allocation in the window, the previous plan) for a re-plan made with
    `backend`."""
    problem = instances.generate(n, family=family, seed=0)
    energy = np.array(problem.energy_wh)
    energy[0] *= 0.5
    before = solve(dataclasses.replace(problem, energy_wh=energy), backend=backend).power_w
    previous = np.full(problem.upper_w.shape, np.nan)
    previous[:, WINDOW] = before[:, WINDOW]
    return problem, previous, before


METHODS = ("highs", "auto", "highs + previous", "auto + previous")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--families", nargs="+", default=["power", "phase"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args(argv)
    print("| family | N | method | backend | total s (median) | CPU s (median) | stable pass s "
          "| changed in window "
          "| pauses | weighted energy vs highs | relaxation's weighted energy vs the same backend "
          "without previous |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for family in args.families:
        for n in args.sizes:
            cases, free = {}, {}
            reference = None
            for label in args.methods:
                backend = label.split(" ")[0]
                if backend not in cases:
                    cases[backend] = _case(n, family, backend)
                problem, previous, before = cases[backend]
                case = problem if "previous" not in label else dataclasses.replace(
                    problem, previous_w=previous)
                times, cpu = [], []
                for _ in range(args.repeats):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    schedule = solve(case, backend=backend)
                    times.append(time.perf_counter() - started)
                    # all threads of the process: less sensitive to other processes' load
                    cpu.append(time.process_time() - started_cpu)
                power = schedule.power_w
                changed = int((np.abs(power[:, WINDOW] - before[:, WINDOW]) > 1.0).sum())
                pauses = int(((before[:, WINDOW.start] > 1.0) & (power[:, WINDOW.start] <= 1e-6)
                              ).sum())
                energy = weighted_energy_wh(problem, power)
                reference = energy if label == "highs" else reference
                ratio = f"{energy / reference:.6f}" if reference else "-"
                # before rounding: the stable step must not move it (exact, no tolerance)
                relaxed = schedule.extra.get("relaxation_weighted_wh")
                if "previous" not in label:
                    free[backend] = relaxed
                exact = (f"{relaxed / free[backend]:.9f}" if relaxed and free.get(backend)
                         and "previous" in label else "-")
                stable_s = schedule.extra.get("stable_s")
                print(f"| {family} | {n} | {label} | {schedule.backend} | "
                      f"{float(np.median(times)):.4f} | {float(np.median(cpu)):.4f} | "
                      f"{'-' if stable_s is None else f'{stable_s:.4f}'} | {changed} | {pauses} | "
                      f"{ratio} | {exact} |", flush=True)


if __name__ == "__main__":
    main()
