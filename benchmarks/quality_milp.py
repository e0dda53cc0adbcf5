"""A clairvoyant bound that honours the minimum rate: a MILP over the day, minute by minute.

A car physically charges at 0 or at least its minimum m (IEC 61851 / J1772: 6 A), and a
lawful controller keeps every limit on what it offers (the fail-safe rule), while the car takes
only min(offer, its on-board charger's maximum, its battery's acceptance a(e)). The LP bounds of
`quality_days` / `quality_bound` relax both: offers between 0 and m, and limits held on 5-min
averages (where offers shared in time look like offers below m). This bound keeps both, on the
replay's own grid (`REPLAY_STEP_S` = 60 s steps, in which `quality_loop.run_day` plugs, steps
and meters the simulated cars): one variable per car and minute for what it is offered (x, held
against every node's power and phase-current rows: `optimizer.lp.build_lp` on a 60-s problem),
one for what it takes (y <= x), its battery's acceptance per step exactly as `SimEV` steps it
(y[t] <= r - k e[t], e the energy taken before the step: `quality_bound._taper_line`), the
energy capped at the need, and an on/off binary z per car and minute where it is needed:

    m z <= x <= cap z

Two ways to a bound, both kept (the least is `bound_wh`). (1) Lagrangian: the minute LP
(round 0, no binaries, by interior point) is solved, the rows that tie minutes together
(needs, the batteries' acceptance) are priced at its duals, and what is left is one small MILP
per minute with the minimum rule on every car plugged in (`lagrangian_bound_wh`: weak duality
makes it a bound; on the days it takes a minute or two). (2) Rounds of the whole day's MILP:
binaries added where an optimum offers a car something between 0 and its minimum (each round
adds the minutes where the last round's solution did so) - exact in the end, but on the days'
60-70 000 variables HiGHS does not finish the root in 10-15 minutes (its dual bound then is
worse than the LP's, and the least-of rule keeps the LP's). Leaving the 0-or-at-least-m rule out of some minutes is a relaxation of the rule on all
of them, so every round's dual bound (HiGHS's best bound, not its incumbent) is an upper bound
on what any lawful controller could deliver, and so is the least of them: that is `bound_wh`.
When the last incumbent keeps the rule in every minute it is a lawful schedule, and the gap
between it and `bound_wh` is all the uncertainty left. The per-minute limits are what the
replay counts violations against (each minute's draws), so no 5-min averaging is left either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from benchmarks.quality_bound import _min_power_w, _taper_line
from benchmarks.quality_days import REPLAY_STEP_S, Day, offline_problem
from optimizer.lp import build_lp
from optimizer.objective import build_objective

# how far below its minimum an offer counts as "between 0 and the minimum" [W]
_BELOW_MIN_TOL_W = 1.0


@dataclass
class MinRateBound:
    bound_wh: float              # the least dual bound over the rounds: an upper bound
    incumbent_wh: float          # the best lawful schedule: the minute LP rounded, or the
    incumbent_lawful: bool       # last MILP round's incumbent where it keeps the rule
    lp_wh: float                 # round 0: the minute-by-minute LP, no minimum rates
    lagrangian_wh: float         # the minimum on every car-minute, minutes tied by LP duals
    binaries: int                # car-minutes given an on/off binary in the last round
    rounds: list[dict] = field(default_factory=list)   # per round: dual, incumbent, gap, time

    @property
    def gap(self) -> float:
        """(bound - incumbent) / bound: how far a lawful schedule may still be from the bound."""
        return (self.bound_wh - self.incumbent_wh) / self.bound_wh if self.bound_wh else 0.0


class _MinuteMilp:
    """The day's per-minute problem in minimisation form: z = [x | y | e | b]."""

    def __init__(self, day: Day, slot_s: float = REPLAY_STEP_S) -> None:
        problem = offline_problem(day, slot_s)
        need_wh = problem.energy_wh.astype(float)
        # build_lp folds each car's remaining request into its power cap (need / slot), which
        # for an offer is wrong here: a car 10 Wh from full is still offered its minimum and
        # takes the 10 Wh. So the rows are built with needs out of reach, and the need is a
        # row on what the car takes.
        loose = dataclasses.replace(problem, energy_wh=np.full(problem.n_connectors, 1e12))
        arrays = build_lp(loose, build_objective(loose), loose.upper_w)
        self.problem, self.arrays = problem, arrays
        n_x = arrays.n_x
        wh = problem.wh_per_w[arrays.x_slot]                  # (n_x,) Wh per W of each x
        self.wh = wh
        self.cap_w = arrays.ub[:n_x]
        self.min_w = _min_power_w(day, problem)[arrays.x_connector]
        chains = []
        for i, visit in enumerate(day.visits):
            chain = arrays.var_of[i][arrays.var_of[i] >= 0]
            line = _taper_line(visit, int(problem.phases[i]))
            if chain.size and line is not None:
                chains.append((chain, line))
        n_e = sum(chain.size for chain, _ in chains)
        self.o_y, self.o_e = n_x, 2 * n_x
        self.n_cont = 2 * n_x + n_e
        blocks, rhs = [], []
        # node rows on what is offered (x)
        a_ub = arrays.A_ub.tocsc()[:, :n_x]
        blocks.append(sp.hstack([a_ub, sp.csr_matrix((a_ub.shape[0], self.n_cont - n_x))]))
        rhs.append(arrays.b_ub)
        # y <= x
        eye = sp.identity(n_x, format="csr")
        blocks.append(sp.hstack([-eye, eye, sp.csr_matrix((n_x, n_e))]))
        rhs.append(np.zeros(n_x))
        # each car takes at most its need: sum_t wh y <= need
        cars = arrays.x_connector
        blocks.append(sp.csr_matrix((wh, (cars, self.o_y + np.arange(n_x))),
                                    shape=(problem.n_connectors, self.n_cont)))
        rhs.append(need_wh)
        # the battery's acceptance per step: e[v] = e[prev] + wh y[prev]; y[v] + k e[v] <= r
        r_eq, c_eq, v_eq, r_ub, c_ub, v_ub, b_ub = [], [], [], [], [], [], []
        e_col = self.o_e
        e_ub = []          # e <= the car's need: what it took before a minute is no more
        for chain, (k, r) in chains:
            e_ub += [need_wh[arrays.x_connector[chain[0]]]] * chain.size
            for position, v in enumerate(chain):
                row = e_col - self.o_e          # one equality row per e
                r_eq.append(row); c_eq.append(e_col); v_eq.append(1.0)
                if position:
                    prev = chain[position - 1]
                    r_eq += [row, row]; c_eq += [e_col - 1, self.o_y + prev]
                    v_eq += [-1.0, -float(wh[prev])]
                r_ub += [len(b_ub)] * 2; c_ub += [self.o_y + v, e_col]; v_ub += [1.0, k]
                b_ub.append(r)
                e_col += 1
        blocks.append(sp.csr_matrix((v_ub, (r_ub, c_ub)), shape=(len(b_ub), self.n_cont)))
        rhs.append(np.array(b_ub, dtype=float))
        # the rows of one minute alone (node rows, y <= x) come first; the rest couple minutes
        self.n_local_rows = arrays.b_ub.shape[0] + n_x
        self.a_ub = sp.vstack(blocks).tocsr()
        self.b_ub = np.concatenate(rhs)
        self.a_eq = sp.csr_matrix((v_eq, (r_eq, c_eq)), shape=(n_e, self.n_cont))
        self.b_eq = np.zeros(n_e)
        self.c = np.zeros(self.n_cont)
        self.c[self.o_y:self.o_e] = -wh             # energy taken, Wh
        self.lb = np.zeros(self.n_cont)
        self.ub = np.concatenate([self.cap_w, self.cap_w, np.array(e_ub, dtype=float)])

    def solve(self, on_off: np.ndarray, time_limit_s: float, mip_rel_gap: float,
              node_limit: int | None = None) -> dict:
        """Maximise energy with a binary on the power variables `on_off` (indices of x)."""
        n_b = on_off.size
        if not n_b:
            # round 0 always runs to its end: the Lagrangian needs its duals
            return self._solve_lp(max(time_limit_s, 3600.0))
        n = self.n_cont + n_b
        pad = lambda m: sp.hstack([m, sp.csr_matrix((m.shape[0], n_b))])  # noqa: E731
        b_cols = self.n_cont + np.arange(n_b)
        # x - cap b <= 0 and m b - x <= 0 (a car whose cap - its charger, a breaker, the
        # grid - is under its minimum cannot be on: b = 0, x = 0)
        cap, low = self.cap_w[on_off], self.min_w[on_off]
        rows = np.repeat(np.arange(2 * n_b), 2)
        cols = np.column_stack([np.concatenate([on_off, on_off]),
                                np.concatenate([b_cols, b_cols])]).ravel()
        vals = np.column_stack([np.concatenate([np.ones(n_b), -np.ones(n_b)]),
                                np.concatenate([-cap, low])]).ravel()
        on_rows = sp.csr_matrix((vals, (rows, cols)), shape=(2 * n_b, n))
        b_ub = np.concatenate([self.b_ub, np.zeros(2 * n_b)])
        a_ub = sp.vstack([pad(self.a_ub), on_rows]).tocsr()
        a_eq = pad(self.a_eq).tocsr()
        integrality = np.concatenate([np.zeros(self.n_cont), np.ones(n_b)])
        lb = np.concatenate([self.lb, np.zeros(n_b)])
        ub = np.concatenate([self.ub, np.ones(n_b)])
        c = np.concatenate([self.c, np.zeros(n_b)])
        constraints = [LinearConstraint(a_ub, -np.inf, b_ub), LinearConstraint(a_eq, self.b_eq,
                                                                               self.b_eq)]
        res = milp(c, integrality=integrality, bounds=Bounds(lb, ub), constraints=constraints,
                   options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap,
                            "presolve": True,
                            **({} if node_limit is None else {"node_limit": node_limit})})
        if res.x is None and (res.status != 1 or not n_b):
            raise RuntimeError(f"minute MILP ({n_b} binaries): {res.message}")
        if n_b:
            dual = res.mip_dual_bound
            dual_wh = -float(dual) if dual is not None and np.isfinite(dual) else np.inf
        else:
            dual_wh = -float(res.fun)            # an LP: its optimum is its bound
        x = None if res.x is None else res.x[:self.arrays.n_x]
        return {"dual_wh": dual_wh,
                "incumbent_wh": -float(res.fun) if res.x is not None else float("nan"),
                "x": x, "status": int(res.status), "binaries": n_b,
                "gap": None if res.get("mip_gap") is None else float(res.mip_gap)}

    def _solve_lp(self, time_limit_s: float) -> dict:
        """Round 0, no binaries: an LP, by interior point (on the days' 60-70k variables
        minutes where the dual simplex takes tens of minutes), with crossover to a vertex."""
        res = linprog(self.c, A_ub=self.a_ub, b_ub=self.b_ub, A_eq=self.a_eq, b_eq=self.b_eq,
                      bounds=np.column_stack([self.lb, self.ub]), method="highs-ipm",
                      options={"time_limit": time_limit_s})
        if res.status != 0:
            raise RuntimeError(f"minute LP: {res.message}")
        self.lp_duals = (-res.ineqlin.marginals, -res.eqlin.marginals)
        return {"dual_wh": -float(res.fun), "incumbent_wh": -float(res.fun),
                "x": res.x[:self.arrays.n_x], "status": 0, "binaries": 0, "gap": 0.0}

    def lagrangian_bound_wh(self) -> float:
        """An upper bound with the minimum rule on every car-minute, from the minute LP's duals.

        The rows that tie minutes together (each car's need, its battery's acceptance, the
        energy it took before) are priced at the LP's optimal duals u; what is left splits
        into one small MILP per minute (that minute's node rows on the offers, y <= x, and
        x in {0} U [m, cap] for every car plugged in). For any u >= 0 on the <= rows (any
        sign on the equalities) the Lagrangian's minimum is at most the MILP's (weak
        duality), each minute's MILP counted at its own dual bound; with the LP's duals it
        is also at most the LP's bound (strong duality without the binaries)."""
        u_ub, u_eq = self.lp_duals
        u_ub = np.maximum(u_ub[self.n_local_rows:], 0.0)
        coupled = self.a_ub[self.n_local_rows:]
        c = self.c + coupled.T @ u_ub + self.a_eq.T @ u_eq
        const = -float(u_ub @ self.b_ub[self.n_local_rows:]) - float(u_eq @ self.b_eq)
        n_x = self.arrays.n_x
        # e only in coupled rows: at its bound where that pays
        total = const + float(np.minimum(c[self.o_e:], 0.0) @ self.ub[self.o_e:])
        # x only in the minute's rows; y's price is c[y] (x's own is 0 up to rounding)
        c_x, c_y = c[:n_x], c[self.o_y:self.o_e]
        node = self.a_ub[:self.arrays.b_ub.shape[0], :n_x].tocsc()
        node_rows_of = self.arrays.row_slot
        slots = self.arrays.x_slot
        order = np.argsort(slots, kind="stable")
        starts = np.searchsorted(slots[order], np.arange(self.problem.n_slots + 1))
        row_order = np.argsort(node_rows_of, kind="stable")
        row_starts = np.searchsorted(node_rows_of[row_order],
                                     np.arange(self.problem.n_slots + 1))
        for t in range(self.problem.n_slots):
            v = order[starts[t]:starts[t + 1]]
            if v.size == 0:
                continue
            if (c_y[v] >= 0).all() and (c_x[v] >= 0).all():
                continue                             # 0 is optimal this minute
            rows = row_order[row_starts[t]:row_starts[t + 1]]
            total += self._minute_bound(v, c_x[v], c_y[v], node[rows][:, v],
                                        self.arrays.b_ub[rows])
        return -total

    def _minute_bound(self, v, c_x, c_y, node, b_node) -> float:
        """min c_x x + c_y y over one minute: node rows on x, y <= x, x in {0} U [m, cap]
        (binary b: m b <= x <= cap b); HiGHS's dual bound (a lower bound on its minimum)."""
        n = v.size
        cap, low = self.cap_w[v], self.min_w[v]
        eye = sp.identity(n, format="csr")
        zero = sp.csr_matrix((n, n))
        a = sp.vstack([sp.hstack([node, sp.csr_matrix((node.shape[0], 2 * n))]),
                       sp.hstack([-eye, eye, zero]),
                       sp.hstack([eye, zero, -sp.diags(cap)]),
                       sp.hstack([-eye, zero, sp.diags(low)])]).tocsr()
        b = np.concatenate([b_node, np.zeros(3 * n)])
        res = milp(np.concatenate([c_x, c_y, np.zeros(n)]),
                   integrality=np.concatenate([np.zeros(2 * n), np.ones(n)]),
                   bounds=Bounds(np.zeros(3 * n), np.concatenate([cap, cap, np.ones(n)])),
                   constraints=[LinearConstraint(a, -np.inf, b)],
                   options={"mip_rel_gap": 0.0, "time_limit": 60.0})
        dual = res.get("mip_dual_bound")
        if dual is None or not np.isfinite(dual):
            if res.status == 0:
                return float(res.fun)
            raise RuntimeError(f"minute MILP: {res.message}")
        return float(dual)

    def lawful_rounding_wh(self, x: np.ndarray, day: Day) -> float:
        """What a lawful schedule made from offers x delivers: minute by minute, an offer under
        its car's minimum is raised to the minimum where every node row has room for it (the
        larger offers first), else set to 0; then each car takes what `SimEV` would of its
        offers (its charger's cap, its battery's acceptance, its need). A lower bound on the
        clairvoyant optimum with minimum rates - with `bound_wh` it brackets it."""
        n_x = self.arrays.n_x
        x = np.array(x[:n_x], dtype=float)
        x[x <= _BELOW_MIN_TOL_W] = 0.0
        node = self.a_ub[:self.arrays.b_ub.shape[0], :n_x].tocsc()
        loads = node @ x
        room = self.arrays.b_ub - loads
        for v in sorted(self.below_min(x), key=lambda v: -x[v]):
            column = node[:, v]
            rows, coef = column.indices, column.data
            raise_w = self.min_w[v] - x[v]
            if raise_w <= self.cap_w[v] - x[v] + 1e-9 and \
                    (coef * raise_w <= room[rows] + 1e-6).all():
                room[rows] -= coef * raise_w
                x[v] = self.min_w[v]
            else:
                room[rows] += coef * x[v]
                x[v] = 0.0
        self.rounded_x = x
        taken = 0.0
        for i, visit in enumerate(day.visits):
            chain = self.arrays.var_of[i][self.arrays.var_of[i] >= 0]
            line = _taper_line(visit, int(self.problem.phases[i]))
            e = 0.0
            need = float(self.problem.energy_wh[i])
            for v in chain:
                accept = np.inf if line is None else line[1] - line[0] * e
                y = max(0.0, min(x[v], accept, (need - e) / self.wh[v]))
                e += y * self.wh[v]
            taken += e
        return taken

    def lawful_resolve_wh(self) -> float:
        """A better lawful schedule: the rounding's on/off pattern kept (on: at least the
        minimum, off: 0) and the minute LP solved again within it - every offer lawful, what
        each car takes at most what SimEV would take of it. A lower bound on the optimum with
        minimum rates (after `lawful_rounding_wh`)."""
        n_x = self.arrays.n_x
        on = self.rounded_x >= self.min_w - 1e-9
        lb, ub = self.lb.copy(), self.ub.copy()
        lb[:n_x] = np.where(on, np.minimum(self.min_w, self.cap_w), 0.0)
        ub[:n_x] = np.where(on, self.cap_w, 0.0)
        res = linprog(self.c, A_ub=self.a_ub, b_ub=self.b_ub, A_eq=self.a_eq, b_eq=self.b_eq,
                      bounds=np.column_stack([lb, ub]), method="highs-ipm",
                      options={"time_limit": 3600.0})
        if res.status != 0:
            raise RuntimeError(f"lawful re-solve: {res.message}")
        return -float(res.fun)

    def below_min(self, x: np.ndarray) -> np.ndarray:
        """Indices of the power variables offered more than 0 and less than the minimum."""
        return np.flatnonzero((x > _BELOW_MIN_TOL_W) & (x < self.min_w - _BELOW_MIN_TOL_W))


def min_rate_optimum(day: Day, *, rounds: int = 4, time_limit_s: float = 120.0,
                     mip_rel_gap: float = 1e-4, node_limit: int | None = None,
                     resolve: bool = True) -> MinRateBound:
    """The clairvoyant bound with minimum rates (module docstring), to `rounds` rounds of
    binaries, each MILP given `time_limit_s` (and `node_limit` branch-and-bound nodes: a
    deterministic stop, for tests) and stopped at `mip_rel_gap`. `resolve`: the lawful
    schedule also re-solved within the rounding's on/off pattern (one more minute LP)."""
    import time
    model = _MinuteMilp(day)
    on_off = np.zeros(0, dtype=np.int64)
    history, bound, last = [], np.inf, None
    lagrangian_wh = np.inf
    for round_no in range(rounds + 1):
        started = time.perf_counter()
        out = model.solve(on_off, time_limit_s, mip_rel_gap, node_limit)
        out["seconds"] = time.perf_counter() - started
        bound = min(bound, out["dual_wh"])
        if round_no == 0:
            started = time.perf_counter()
            lagrangian_wh = model.lagrangian_bound_wh()
            lagrangian_s = time.perf_counter() - started
            rounded_wh = model.lawful_rounding_wh(out["x"], day)
            if resolve:
                rounded_wh = max(rounded_wh, model.lawful_resolve_wh())
            bound = min(bound, lagrangian_wh)
        history.append({k: out[k] for k in ("dual_wh", "incumbent_wh", "gap", "binaries",
                                             "seconds", "status")})
        if out["x"] is None:
            break
        last = out
        more = np.setdiff1d(model.below_min(out["x"]), on_off)
        if more.size == 0:
            break
        on_off = np.union1d(on_off, more)
    lawful = last is not None and model.below_min(last["x"]).size == 0
    incumbent_wh = last["incumbent_wh"] if lawful and len(history) > 1 else -np.inf
    if rounded_wh > incumbent_wh:
        incumbent_wh, lawful = rounded_wh, True
    history[0]["lagrangian_s"] = lagrangian_s
    return MinRateBound(bound_wh=bound, incumbent_wh=incumbent_wh,
                        incumbent_lawful=lawful, lp_wh=history[0]["dual_wh"],
                        lagrangian_wh=lagrangian_wh, binaries=int(history[-1]["binaries"]),
                        rounds=history)
