"""smartcharge's optimizer: a pure numerical package (NumPy arrays in, NumPy arrays out).

No I/O, no asyncio, no imports from smartcharge.
"""

from optimizer import baselines
from optimizer.check import Violation, check
from optimizer.problem import Problem
from optimizer.schedule import FALLBACK, NEAR_OPTIMAL, OPTIMAL, Schedule, SolverFailed
from optimizer.solve import solve

__all__ = ["Problem", "Schedule", "SolverFailed", "OPTIMAL", "NEAR_OPTIMAL", "FALLBACK",
           "solve", "check", "Violation", "baselines"]
