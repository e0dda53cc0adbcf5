"""Where one cold `optimizer.solve` spends its CPU, stage by stage (issue 9's N = 10 000 goal).

    PYTHONPATH=<tree> python <tree>/benchmarks/solve_stages.py N FAMILY [REPEATS]

Runs whichever tree PYTHONPATH names (so main and a branch alternate in the same minutes) on
`optimizer.instances.generate(N, family=FAMILY, seed=0)` and prints one JSON line per repeat:
thread CPU seconds of the main thread in build_lp, the HiGHS runs, the rounding, the portfolio
guard, the pull forward (each including what it calls), the main thread and the process in all
(the guard's baselines run on a second thread while HiGHS works), wall seconds, iterations and
the results (relaxation objective, schedule objective) to compare trees by.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

# run as a file: its own folder is first on sys.path, where benchmarks/optimizer.py would hide
# the optimizer package
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

STAGES = (("optimizer.solve", None, "build_lp"), ("optimizer.lp", "HighsModel", "_run"),
          ("optimizer.solve", None, "_round"), ("optimizer.solve", None, "_portfolio_guard"),
          ("optimizer.solve", None, "_pulled_forward"))


def _wrap(owner, name: str, acc: dict) -> None:
    inner = getattr(owner, name, None)
    if inner is None:   # a tree without this stage: skipped
        return

    def timed(*args, **kwargs):
        started = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            acc[name] = acc.get(name, 0.0) + time.thread_time() - started

    setattr(owner, name, timed)


def main(n: int, family: str, repeats: int) -> None:
    import optimizer
    from optimizer import instances

    solve_mod = importlib.import_module("optimizer.solve")
    problem = instances.generate(n, family=family, seed=0)
    solve_mod.solve(instances.generate(50, family=family, seed=0))  # imports, HiGHS's first object
    acc: dict = {}
    for module, cls, name in STAGES:
        owner = importlib.import_module(module)
        _wrap(getattr(owner, cls) if cls else owner, name, acc)
    for _ in range(repeats):
        acc.clear()
        wall, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        schedule = solve_mod.solve(problem)
        row = {k: round(v, 3) for k, v in acc.items()}
        row.update(main_thread=round(time.thread_time() - main_cpu, 3),
                   process=round(time.process_time() - cpu, 3),
                   wall=round(time.perf_counter() - wall, 3),
                   iterations=schedule.extra.get("iterations"),
                   energy_first=schedule.extra.get("energy_first"),
                   relaxation=schedule.extra.get("relaxation_objective"),
                   objective=schedule.objective, backend=schedule.backend,
                   load=os.getloadavg()[0],
                   tree=optimizer.__file__.rsplit("/optimizer/", 1)[0])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
