"""Optimizer benchmark: speed and quality of every backend and baseline on the same instances.

    python -m benchmarks.optimizer              # N in {10, 100, 1000, 5000} x 96 slots
    python -m benchmarks.optimizer --large      # adds N = 10000
    python -m benchmarks.optimizer --quick      # N in {10, 100, 1000}, one run each
    python -m benchmarks.optimizer --replan     # warm re-plan after one car arrives, N = 1000
    python -m benchmarks.optimizer --replan --change leaves   # ... or leaves, or: --change cap
    python -m benchmarks.optimizer --replan --controller      # the site controller's re-plan,
                                                              # warm vs cold (replan_controller.py)

Instances come from optimizer.instances.generate (seeded; documented there): a site -> 20 feeders
-> stations -> connectors tree, 96 slots of 15 min, family "power" (power limits only) and
"phase" (mixed 1- and 3-phase connectors under per-phase current limits).

Methods, each timed end to end as build + solve + check (optimizer.check), median of --repeats:

    solve(auto)  optimizer.solve(problem): the production path, with the minimum-rate rule
                 (0 or >= min) enforced by pausing, re-solving (small HiGHS problems) and
                 a greedy top-up; its loss against the relaxation is
                 reported in the summary
    flow         the min-cost-flow backend on the relaxation (no minimum rates); power family only
    highs        the vectorised LP in HiGHS (highspy) on the relaxation
    linprog      the same LP arrays (optimizer.lp.build_lp) handed to scipy.optimize.linprog
                 (lexicographic where ours is: weighted energy alone, then the objective with it
                 held; two cold solves where ours warm-starts)
    pulp         the same model written the obvious way in PuLP, solved by CBC; skipped at sizes
                 where it would not finish within --pulp-budget-s (estimated from the last size)
    uncontrolled, equal_share, edf, llf   the baselines

The instances carry minimum rates (6 A). Only solve(auto) and the baselines honour them; the
relaxation methods (flow, highs, linprog, pulp) do not, so their "below-min entries" (0 < power
< minimum) are expected and are counted apart from "limit violations" (every other kind that
optimizer.check reports: node power and current, connector maximum, window, request).

"ours" in the ratios is what solve(backend="auto") runs on the relaxation: flow where it
applies, otherwise highs. Ratios are measured in the same run, on the same instance.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import scipy.optimize
import scipy.sparse

from optimizer import baselines, flow
from optimizer.check import check
from optimizer.instances import generate, subset
from optimizer.lp import build_lp, energy_tolerance, solve_lp
from optimizer.objective import (build_objective, delivered_wh, energy_first_by_construction,
                                 evaluate)
from optimizer.pulp_backend import solve_pulp
from optimizer.solve import solve, weighted_energy_wh
from optimizer.warm import WarmStart

SIZES = (10, 100, 1000, 5000)
LARGE = 10000
QUICK_SIZES = (10, 100, 1000)
BASELINES = ("uncontrolled", "equal_share", "edf", "llf")


@dataclass
class Run:
    build_s: float
    solve_s: float
    check_s: float
    power_w: np.ndarray
    note: str = ""

    @property
    def total_s(self) -> float:
        return self.build_s + self.solve_s + self.check_s


# --- methods: (problem, objective) -> (power_w, build_s, solve_s, note) -------------------------

def run_solve(problem, objective):
    started = time.perf_counter()
    schedule = solve(problem, backend="auto")
    wall = time.perf_counter() - started
    # Whatever solve() spends outside build and solve (fix-and-resolve rounds, projection,
    # its own check) is counted in solve_s so the total is the wall time.
    return schedule.power_w, schedule.build_s, wall - schedule.build_s, \
        f"{schedule.backend}/{schedule.status}"


def run_backend(backend):
    def run(problem, objective):
        power_w, info = backend(problem, objective, problem.upper_w)
        return power_w, info["build_s"], info["solve_s"], ""
    return run


def run_linprog(problem, objective):
    """The same LP through linprog; where energy first needs a lexicographic solve (per-phase
    limits shared by 1- and 3-phase loads), the way a linprog user would do it: the weighted
    energy alone, then the objective with a row holding that energy (two cold solves)."""
    started = time.perf_counter()
    arrays = build_lp(problem, objective, problem.upper_w)
    a_ub, b_ub = arrays.A_ub, arrays.b_ub
    built = time.perf_counter()
    linprog = lambda c, a, b: scipy.optimize.linprog(  # noqa: E731
        c, A_ub=a, b_ub=b, A_eq=arrays.A_eq, b_eq=arrays.b_eq, bounds=arrays.bounds,
        method="highs")
    if not energy_first_by_construction(problem):
        result = linprog(arrays.energy_c, a_ub, b_ub)
        if result.status != 0:
            raise RuntimeError(f"linprog (weighted energy): {result.message}")
        best_wh = -float(result.fun)
        a_ub = scipy.sparse.vstack([a_ub, scipy.sparse.csr_matrix(arrays.energy_c)]).tocsr()
        b_ub = np.append(b_ub, -(best_wh - energy_tolerance(best_wh)))
    result = linprog(arrays.c, a_ub, b_ub)
    solved = time.perf_counter()
    if result.status != 0:
        raise RuntimeError(f"linprog: {result.message}")
    return np.clip(arrays.to_power(result.x), 0.0, None), built - started, solved - built, ""


def run_baseline(name):
    def run(problem, objective):
        started = time.perf_counter()
        power_w = getattr(baselines, name)(problem)
        return power_w, 0.0, time.perf_counter() - started, ""
    return run


def measure(method, problem, objective, repeats: int) -> Run:
    runs = []
    for _ in range(repeats):
        power_w, build_s, solve_s, note = method(problem, objective)
        started = time.perf_counter()
        check(problem, power_w)
        runs.append(Run(build_s, solve_s, time.perf_counter() - started, power_w, note))
        if runs[-1].total_s > 10.0:
            break  # slow methods: one run is enough to compare
    median = lambda values: statistics.median(values)  # noqa: E731
    return Run(median([r.build_s for r in runs]), median([r.solve_s for r in runs]),
               median([r.check_s for r in runs]), runs[-1].power_w,
               runs[-1].note + (f" ({len(runs)} runs)" if len(runs) < repeats else ""))


# --- quality -------------------------------------------------------------------------------------

def quality(problem, objective, power_w) -> dict:
    delivered = np.minimum(delivered_wh(problem, power_w), problem.energy_wh)
    root_load_w = power_w.sum(axis=0)
    cap_w = problem.node_limit_w[0]
    finite = np.isfinite(cap_w) & (cap_w > 0)
    violations = check(problem, power_w)
    return {
        "objective": evaluate(problem, objective, power_w),
        "energy_pct": 100.0 * delivered.sum() / max(problem.energy_wh.sum(), 1e-12),
        "peak_pct": 100.0 * float(np.max(root_load_w[finite] / cap_w[finite])) if finite.any()
        else float("nan"),
        "violations": sum(v.kind != "below_min" for v in violations),
        "below_min": sum(v.kind == "below_min" for v in violations),
    }


# --- the run -------------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    versions = ", ".join(f"{pkg} {metadata.version(pkg)}"
                         for pkg in ("numpy", "scipy", "highspy", "ortools", "pulp"))
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {versions}")


def bench_instance(family, n, args, pulp_state) -> tuple[list, dict]:
    problem = generate(n, family=family, seed=args.seed)
    objective = build_objective(problem)
    methods = [("solve(auto)", run_solve)]
    if flow.applicable(problem):
        methods.append(("flow", run_backend(flow.solve_flow)))
    methods += [("highs", run_backend(solve_lp)), ("linprog", run_linprog)]
    estimate = pulp_state.get(family)
    if estimate is None or estimate[0] * (n / estimate[1]) ** 1.2 <= args.pulp_budget_s:
        methods.append(("pulp", run_backend(solve_pulp)))
    else:
        pulp_state.setdefault("skipped", []).append((family, n))
    methods += [(name, run_baseline(name)) for name in BASELINES]

    rows, runs = [], {}
    for name, method in methods:
        run = measure(method, problem, objective, args.repeats)
        runs[name] = run
        if name == "pulp":
            pulp_state[family] = (run.total_s, n)
        rows.append((name, run, quality(problem, objective, run.power_w)))
    ours = "flow" if "flow" in runs else "highs"
    relaxation = evaluate(problem, objective, runs[ours].power_w)
    summary = {
        "family": family, "n": n, "ours": ours, "ours_s": runs[ours].total_s,
        "solve_s": runs["solve(auto)"].total_s,
        "pulp_ratio": runs["pulp"].total_s / runs[ours].total_s if "pulp" in runs else None,
        "linprog_ratio": runs["linprog"].total_s / runs[ours].total_s,
        "highs_ratio": runs["highs"].total_s / runs[ours].total_s,
        "minrate_loss": (relaxation - evaluate(problem, objective, runs["solve(auto)"].power_w))
        / abs(relaxation) if relaxation else 0.0,
        "minrate_energy_pts": quality(problem, objective, runs[ours].power_w)["energy_pct"]
        - quality(problem, objective, runs["solve(auto)"].power_w)["energy_pct"],
        "best": relaxation,
    }
    return rows, summary


def print_table(family, n, rows, best) -> None:
    print(f"\n### family {family}, N = {n} connectors x 96 slots\n")
    print("| method | build s | solve s | check s | total s | objective gap vs LP | energy % "
          "| peak % of cap | limit violations | below-min entries | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, run, q in rows:
        gap = (best - q["objective"]) / abs(best) if best else 0.0
        print(f"| {name} | {run.build_s:.4f} | {run.solve_s:.4f} | {run.check_s:.4f} | "
              f"{run.total_s:.4f} | {gap:.2e} | {q['energy_pct']:.2f} | {q['peak_pct']:.1f} | "
              f"{q['violations']} | {q['below_min']} | {run.note} |")


def print_summary(summaries, pulp_state) -> None:
    print("\n### Summary (ours = auto on the relaxation: flow where it applies, else highs)\n")
    print("| family | N | ours | ours total s | solve(auto) total s | pulp / ours | "
          "linprog / ours | highs / ours | min-rate loss vs relaxation | energy pts lost |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        pulp = f"{s['pulp_ratio']:.1f}x" if s["pulp_ratio"] is not None else "skipped"
        print(f"| {s['family']} | {s['n']} | {s['ours']} | {s['ours_s']:.4f} | "
              f"{s['solve_s']:.4f} | "
              f"{pulp} | {s['linprog_ratio']:.1f}x | {s['highs_ratio']:.1f}x | "
              f"{s['minrate_loss']:.2e} | {s['minrate_energy_pts']:.3f} |")
    for family, n in pulp_state.get("skipped", []):
        print(f"\npulp skipped for {family} N = {n}: estimated over the budget from the last size.")


# --- warm re-plan: one car arrives -------------------------------------------------------------

REPLAN_SLOT = 34   # 08:30: most cars are plugged in; the car arriving nearest to it is the new one


CHANGES = ("arrives", "leaves", "cap")


def replan_case(n: int, family: str, seed: int, change: str = "arrives"):
    """(before, its ids, after, its ids), ids = connector indices of `generate(n)`. "arrives":
    the car arriving nearest 08:30 comes (before: the site without it); "leaves": that car goes;
    "cap": the site's limits drop to 80 % (a demand-response event)."""
    site = generate(n, family=family, seed=seed)
    everyone = np.arange(n)
    car = int(np.argmin(np.abs(site.arrival_slot - REPLAN_SLOT)))
    others = np.delete(everyone, car)
    if change == "arrives":
        return subset(site, others), others, site, everyone
    if change == "leaves":
        return site, everyone, subset(site, others), others
    limit_w, limit_a = np.array(site.node_limit_w), np.array(site.node_limit_a)
    limit_w[0] *= 0.8
    limit_a[0] *= 0.8
    return site, everyone, dataclasses.replace(site, node_limit_w=limit_w,
                                               node_limit_a=limit_a), everyone


def bench_replan(family: str, n: int, args) -> list:
    """Cold solves of the new problem and warm re-solves (the model of the solve before the car
    came, changed), each end to end as solve() runs it; median of --repeats. Times: wall, CPU of
    the process (every thread), CPU of the calling thread (HiGHS runs there, the guard's baselines
    on a second thread: on an idle 2-core machine the wall is close to it). "+ previous": as the
    controller re-plans, with the plan before as `previous_w` in its kept window (slots 34-35;
    the new car NaN), so solve() also runs the stable pass (optimizer/stable.py)."""
    before, before_ids, after, after_ids = replan_case(n, family, args.seed, args.change)
    plan = solve(before, backend="highs").power_w
    previous = np.full(after.upper_w.shape, np.nan)
    kept, in_after, in_before = np.intersect1d(after_ids, before_ids, return_indices=True)
    window = slice(REPLAN_SLOT, REPLAN_SLOT + 2)
    previous[in_after, window] = plan[in_before, window]
    after_previous = dataclasses.replace(after, previous_w=previous)

    def cold(problem, backend):
        def run():
            started, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
            schedule = solve(problem, backend=backend)
            return (schedule, time.perf_counter() - started, time.process_time() - cpu,
                    "cold", time.thread_time() - main_cpu)
        return run

    def warm(problem):
        def run():
            state = WarmStart()
            state.ids = before_ids
            solve(before, backend="highs", warm=state)        # the plan before the change
            state.ids = after_ids
            started, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
            schedule = solve(problem, backend="highs", warm=state)
            return (schedule, time.perf_counter() - started, time.process_time() - cpu,
                    state.last, time.thread_time() - main_cpu)
        return run

    rows = []
    for label, method, problem in (
            ("cold solve(auto)", cold(after, "auto"), after),
            ("cold solve(highs)", cold(after, "highs"), after),
            ("warm solve(highs)", warm(after), after),
            ("cold solve(auto) + previous", cold(after_previous, "auto"), after_previous),
            ("cold solve(highs) + previous", cold(after_previous, "highs"), after_previous),
            ("warm solve(highs) + previous", warm(after_previous), after_previous)):
        runs = [method() for _ in range(args.repeats)]
        wall = statistics.median(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        main_cpu = statistics.median(r[4] for r in runs)
        schedule, how = runs[-1][0], runs[-1][3]
        extra = schedule.extra
        rows.append({"label": label, "total_s": wall, "cpu_s": cpu, "main_cpu_s": main_cpu,
                     "build_s": schedule.build_s,
                     "highs_s": extra.get("highs_s"), "iterations": extra.get("iterations"),
                     "round_s": extra.get("check_s"), "guard_s": extra.get("guard_s", 0.0),
                     "backend": f"{schedule.backend}/{how}",
                     "relaxation": extra.get("relaxation_objective"),
                     "weighted_wh": weighted_energy_wh(problem, schedule.power_w)})
    return rows


def print_replan(family: str, n: int, rows: list, change: str) -> None:
    what = {"arrives": "one car arrives", "leaves": "one car leaves",
            "cap": "the site limit drops to 80 %"}[change]
    print(f"\n### warm re-plan, family {family}, N = {n}: {what} (load average "
          f"{os.getloadavg()[0]:.1f})\n")
    print("| method | total s | CPU s | main thread CPU s | model s | HiGHS s | iterations "
          "| rounding s | guard s | backend | relaxation objective vs cold highs "
          "| weighted energy vs cold highs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        reference = next(q for q in rows if q["label"] == "cold solve(highs)"
                         + (" + previous" if r["label"].endswith("previous") else ""))
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        gap = ("-" if r["relaxation"] is None or reference["relaxation"] is None else
               f"{(r['relaxation'] - reference['relaxation']) / abs(reference['relaxation']):.1e}")
        print(f"| {r['label']} | {r['total_s']:.4f} | {r['cpu_s']:.4f} | {r['main_cpu_s']:.4f} | "
              f"{fmt(r['build_s'])} | "
              f"{fmt(r['highs_s'])} | "
              f"{r['iterations'] if r['iterations'] is not None else '-'} | {fmt(r['round_s'])} | "
              f"{fmt(r['guard_s'])} | {r['backend']} | {gap} | "
              f"{r['weighted_wh'] / reference['weighted_wh']:.6f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="also N = 10000")
    parser.add_argument("--quick", action="store_true", help="N up to 1000, one run each")
    parser.add_argument("--sizes", type=int, nargs="+", help="connector counts to run")
    parser.add_argument("--families", nargs="+", default=["power", "phase"])
    parser.add_argument("--repeats", type=int, default=5, help="runs per method (median)")
    parser.add_argument("--pulp-budget-s", type=float, default=120.0,
                        help="skip pulp where it is estimated to take longer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replan", action="store_true",
                        help="only the warm re-plan scenario (--change) at --sizes")
    parser.add_argument("--change", choices=CHANGES, default="arrives",
                        help="what the re-plan follows (with --replan)")
    parser.add_argument("--controller", action="store_true",
                        help="with --replan: a whole controller re-plan, warm vs cold")
    args = parser.parse_args(argv)
    if args.replan and args.controller:
        from benchmarks import replan_controller
        print(f"Machine: {machine()}")
        replan_controller.main(args.sizes or (1000,), args.families, args.seed, args.repeats)
        return
    if args.replan:
        print(f"Machine: {machine()}")
        for family in args.families:
            for n in args.sizes or (1000,):
                print_replan(family, n, bench_replan(family, n, args), args.change)
        return
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES + ((LARGE,) if args.large else ()))
    if args.quick:
        args.repeats = 1
    print(f"Machine: {machine()}")
    print(f"Repeats: {args.repeats} (median; methods over 10 s run once)")
    summaries, pulp_state = [], {}
    for family in args.families:
        for n in sizes:
            rows, summary = bench_instance(family, n, args, pulp_state)
            print_table(family, n, rows, summary["best"])
            summaries.append(summary)
    print_summary(summaries, pulp_state)


if __name__ == "__main__":
    main()
