"""smartcharge's optimizer: a pure numerical package (NumPy arrays in, NumPy arrays out).

No I/O, no asyncio, no imports from smartcharge.
"""

from optimizer.problem import Problem
from optimizer.schedule import FALLBACK, NEAR_OPTIMAL, OPTIMAL, Schedule, SolverFailed

__all__ = ["Problem", "Schedule", "SolverFailed", "OPTIMAL", "NEAR_OPTIMAL", "FALLBACK"]
