"""smartcharge's optimizer: a pure numerical package (NumPy arrays in, NumPy arrays out).

No I/O, no asyncio, no imports from smartcharge.
"""

from optimizer.problem import Problem
from optimizer.schedule import FALLBACK, NEAR_OPTIMAL, OPTIMAL, Schedule

__all__ = ["Problem", "Schedule", "OPTIMAL", "NEAR_OPTIMAL", "FALLBACK"]
