"""One HiGHS run of the objective's LP with other options: what an option does to this LP's shape.

    python -m benchmarks.highs_options N FAMILY '{"option": value, ...}' [--basis]

Builds the LP of `optimizer.instances.generate(N, family=FAMILY, seed=0)` with `lp.build_lp`,
loads it into a fresh HiGHS with `lp.HIGHS_OPTIONS` and the options given (JSON), runs it once and
prints a JSON line: process CPU and wall seconds, model status, objective, simplex and IPM
iterations. With --basis also the optimal basis's size: basic structural columns (power,
segments) and basic slacks - a simplex from the slack basis brings every basic structural column
in at least once, so that count bounds its iterations from below. Only the LP is timed (not the
build): results in benchmarks/README.md, "s34-speed".
"""

from __future__ import annotations

import json
import sys
import time

import highspy
import numpy as np

from optimizer import instances
from optimizer.lp import HighsModel, build_lp
from optimizer.objective import build_objective


def main(n: int, family: str, options: dict, basis: bool) -> dict:
    problem = instances.generate(n, family=family, seed=0)
    arrays = build_lp(problem, build_objective(problem), problem.upper_w)
    highs = HighsModel(arrays, options=options).highs
    cpu, wall = time.process_time(), time.perf_counter()
    highs.run()
    info = highs.getInfo()
    row = {"n": n, "family": family, "options": options,
           "cpu_s": round(time.process_time() - cpu, 3),
           "wall_s": round(time.perf_counter() - wall, 3),
           "status": highs.modelStatusToString(highs.getModelStatus()),
           "objective": info.objective_function_value,
           "simplex_iterations": info.simplex_iteration_count,
           "ipm_iterations": info.ipm_iteration_count,
           "rows": int(arrays.A.shape[0]), "columns": int(arrays.A.shape[1]),
           "nonzeros": int(arrays.A.nnz)}
    if basis:
        got = highs.getBasis()
        basic = int(highspy.HighsBasisStatus.kBasic)
        cols = np.array([int(s) for s in got.col_status])
        rows = np.array([int(s) for s in got.row_status])
        row.update(basic_power=int((cols[: arrays.n_x] == basic).sum()),
                   basic_segments=int((cols[arrays.n_x:] == basic).sum()),
                   basic_slacks=int((rows == basic).sum()))
    return row


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--basis"]
    print(json.dumps(main(int(args[0]), args[1], json.loads(args[2]) if len(args) > 2 else {},
                          "--basis" in sys.argv)))
