"""The optimizer's output."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Status values, from best to worst.
OPTIMAL = "optimal"            # exact optimum of the model (LP or network flow)
NEAR_OPTIMAL = "near_optimal"  # minimum-rate rule enforced by fix-and-resolve; loss vs relaxation reported
FALLBACK = "fallback"          # the solver failed or ran out of time: a baseline that respects every limit


@dataclass(frozen=True, eq=False)
class Schedule:
    power_w: np.ndarray            # (N, T) allocation per connector and slot [W]
    status: str                    # one of OPTIMAL, NEAR_OPTIMAL, FALLBACK
    backend: str                   # which method produced power_w ("highs", "flow", "pulp", "edf", ...)
    objective: float               # the model's objective value of power_w (see optimizer/objective.py)
    delivered_wh: np.ndarray       # (N,) energy delivered over the horizon [Wh]
    unmet_wh: np.ndarray           # (N,) requested energy the schedule could not deliver [Wh]
    build_s: float = 0.0           # time spent building the model [s]
    solve_s: float = 0.0           # time spent in the solver [s]
    message: str = ""              # why a fallback or near-optimal result was returned
    relaxation_objective: float | None = None  # LP relaxation's objective when min rates forced rounding
    extra: dict = field(default_factory=dict)   # backend-specific diagnostics (iterations, ...)

    @property
    def total_s(self) -> float:
        return self.build_s + self.solve_s


class SolverFailed(RuntimeError):
    """A backend could not produce a solution (error, infeasible model, time limit)."""
