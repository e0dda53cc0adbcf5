"""Where a controller re-plan's CPU goes, stage by stage: thread CPU of the planner's thread per
stage (each stage counted without the stages inside it), of the guard's baselines thread, and
what the process spent besides (OpenBLAS's helper thread, HiGHS's worker).

    python benchmarks/replan_stages.py FAMILY STABLE METHOD [REPEATS]   (from a tree's root:
    PYTHONPATH=<tree> python <this file> ...; runs whichever tree PYTHONPATH names, so the same
    file measures main and a branch in the same minutes)

FAMILY: power / phase; STABLE: on / off (the controller's stable pass); METHOD: warm / cold.
The scenario is benchmarks/replan_controller.py's "one car arrives, same moment" at N = 1 000:
two plans, then a car arrives and the re-plan is measured (`planner.make_plan` called in this
thread with the controller's picture, as its worker thread would). Prints one JSON line per
repeat: {stage: CPU ms}. Only names both trees have are wrapped; a missing one is skipped.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import sys
import threading
import time

import os

import numpy as np

# run as a file: its own folder is first on sys.path, where benchmarks/optimizer.py would hide
# the optimizer package
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

N = 1000


def _wrap(owner, name: str, label: str, acc: dict, local) -> None:
    f = getattr(owner, name, None)
    if f is None:
        return

    @functools.wraps(f)
    def timed(*args, **kwargs):
        stack = getattr(local, "stack", None)
        if stack is None:
            stack = local.stack = []
        now = time.thread_time()
        if stack:                      # pause the enclosing stage
            outer, started = stack[-1]
            acc[outer] = acc.get(outer, 0.0) + now - started
        if label.startswith("baselines thread") and \
                threading.current_thread() is threading.main_thread():
            # after the flow (it holds the GIL) the guard computes them in the planner's thread
            label_here = "guard baselines (planner thread)"
        else:
            label_here = label
        stack.append([label_here, now])
        try:
            return f(*args, **kwargs)
        finally:
            end = time.thread_time()
            label_here, started = stack.pop()
            acc[label_here] = acc.get(label_here, 0.0) + end - started
            if stack:
                stack[-1][1] = end

    setattr(owner, name, timed)


def main(family: str, stable: bool, warm: bool, repeats: int) -> None:
    import optimizer
    from optimizer import lp, warm as warm_mod
    solve_mod = importlib.import_module("optimizer.solve")
    from benchmarks import replan_controller as rc
    from smartcharge.site import planner, plan_inputs, in_steps

    logging.getLogger("smartcharge.site.guard").setLevel(logging.CRITICAL)
    acc: dict = {}
    local = threading.local()
    for owner, name, label in [
            (planner, "build_problem", "build problem (planner)"),
            (solve_mod, "build_objective", "objective weights"),
            (solve_mod, "build_lp", "build_lp"),
            (warm_mod.WarmStart, "model", "change the kept model"),
            (lp.HighsModel, "_run", "HiGHS runs"),
            (lp.HighsModel, "solve", "HiGHS model calls (costs, bounds)"),
            (lp.HighsModel, "stabilise", "HiGHS model calls (costs, bounds)"),
            (solve_mod, "running_minimums", "stable: running minimums, levels"),
            (solve_mod, "levels", "stable: running minimums, levels"),
            (solve_mod, "hold_minimums", "stable: hold minimums"),
            (solve_mod, "_round", "rounding: projection + top-up"),
            (solve_mod, "_portfolio_guard", "guard (main thread)"),
            (solve_mod, "_pulled_forward", "pull forward"),
            (solve_mod, "_schedule", "schedule (evaluate)"),
            (planner, "check", "check (planner)"),
            (planner, "finish", "finish (bindings, idle shares, plan)"),
            (solve_mod._Baselines, "_compute", "baselines thread: edf, llf, equal_share")]:
        _wrap(owner, name, label, acc, local)
    try:
        from optimizer import flow
        _wrap(flow, "solve_flow", "min-cost flow", acc, local)
    except ImportError:
        pass

    async def prepared():
        controller, clock = rc.controller_at(N, family, 0, warm, stable)
        await controller.replan({"start"})
        await controller.replan({"slot"})
        rc.start(controller, rc.refs(N)[-1], 999_999, np.random.default_rng(1), clock.now())
        inputs = await in_steps.run_async(plan_inputs.read_steps(controller, clock.now()),
                                          controller.share)
        return controller, inputs

    for _ in range(repeats):
        controller, inputs = asyncio.run(prepared())
        acc.clear()
        local.stack = []
        wall, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        made = planner.make_plan(controller.topology, inputs,
                                 backend=controller.settings.backend,
                                 time_limit_s=controller.settings.solve_time_limit_s,
                                 warm=controller.warm if warm else None)
        main_cpu = time.thread_time() - main_cpu
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        row = {k: round(v * 1000, 2) for k, v in acc.items()}
        main_listed = sum(v for k, v in acc.items() if not k.startswith("baselines thread"))
        row["other (main thread)"] = round((main_cpu - main_listed) * 1000, 2)
        row["MAIN THREAD"] = round(main_cpu * 1000, 2)
        row["other threads (OpenBLAS, HiGHS)"] = round(
            (cpu - main_cpu - acc.get("baselines thread: edf, llf, equal_share", 0.0)) * 1000, 2)
        row["PROCESS"] = round(cpu * 1000, 2)
        row["wall"] = round(wall * 1000, 2)
        row["iterations"] = made.solver.get("iterations")
        row["backend"] = made.solver.get("backend")
        row["model"] = (controller.warm.last if warm else "cold")
        row["weighted_wh"] = made.solver.get("weighted_wh")
        row["relaxation"] = made.solver.get("relaxation_objective")
        row["tree"] = optimizer.__file__.rsplit("/optimizer/", 1)[0]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    family, stable, method = sys.argv[1], sys.argv[2] == "on", sys.argv[3] == "warm"
    main(family, stable, method, int(sys.argv[4]) if len(sys.argv) > 4 else 1)
