"""A clairvoyant bound that knows the batteries: the offline optimum with each car's taper.

`quality_days.offline_optimum_wh` ignores battery taper, so it promises energy a car above its
taper start cannot take, and the gap between a truthful run and it mixes what control loses
with what no controller could deliver. This bound knows what the simulated cars physically
accept (`smartcharge.sim.ev.SimEV`, stepped every `REPLAY_STEP_S` = 60 s by the replay): the
on-board charger's maximum on the phases it charges on (min of its own and its bay's; already
the offline problem's row maximum) and its acceptance, derated linearly above
`taper_start_soc` down to `taper_floor_ratio` at 100 %, i.e. linear in the energy it has taken:

    a(e) = r_i - k_i e,   k_i = peak_i (1 - floor_i) / ((1 - start_i) capacity_i) [W per Wh]

(r_i the line's value at e = 0; below the taper start the line lies above the peak, which the
row maximum caps). A car draws at most a(e) in each 60-s step, at the step's start, so within
one offline slot of n steps that begins at energy e_t it takes at most what it takes drawing
its whole acceptance every step - the map e -> e + a(e) h (h = 60 s in hours) is increasing
while k h < 1, so no lesser draw earlier leaves it more to take later:

    wh_per_w * x[i, t] <= c_n (r_i - k_i e[i, t]),   c_n = (1 - (1 - k_i h)^n) / k_i  [Wh per W]

with e[i, t] the energy delivered to i before slot t and n the replay's steps the car is
plugged in during slot t. A car in taper all along, alone, reaches this bound exactly (the
slots compose: a falls by (1 - k h)^n over each). Every trajectory the simulated cars can
follow satisfies these rows, so the LP stays an upper bound. Left out: minimum rates (a car
runs at 0 or at least 6 A: not convex, a MILP; `online_truthful_wh(min_current_a=6)` measures
what they cost online) and the per-minute grid and breaker limits (the LP holds them on each
slot's average: looser, still a bound). Energy alone is maximised (weights 1, capped at each
car's need).

`min_rates=True` (session 30) adds the one price of the minimum that taper makes: a car whose
acceptance has fallen below its minimum is offered the minimum and takes less, and the limits
must hold what it is offered (`_MinimumRows`, still linear, still a bound). On the quality days
it changes nothing: where a tapering car would hold room it cannot use, the clairvoyant plan
gives that room to another car and serves the tapering one where there is room to spare.

(Until session 26 the row was x[i, t] <= a(e[i, t]), the acceptance at the slot's start held
over the whole slot: a bound too, looser by what a tapering battery loses within 5 minutes.)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from benchmarks.quality_days import OFFLINE_SLOT_S, REPLAY_STEP_S, Day, offline_problem, presence
import optimizer
from smartcharge.site.topology import ConnectorRef, SiteTopology
from optimizer.lp import build_lp
from optimizer.objective import build_objective


def _taper_line(visit, phases: int) -> tuple[float, float] | None:
    """(k, r) of the car's acceptance line x + k e <= r, or None when it never reaches taper."""
    ev = visit.ev
    table = ev.max_power_w_by_phases
    peak_w = table.get(phases, min(table.values()))     # as SimEV.max_power_w on those phases
    soc0 = ev.target_soc - visit.requested_wh / ev.capacity_wh
    start = ev.taper_start_soc
    if start >= 1.0 or ev.target_soc <= start:
        return None
    slope = (1.0 - ev.taper_floor_ratio) / (1.0 - start)
    return peak_w * slope / ev.capacity_wh, peak_w * (1.0 - slope * (soc0 - start))


# what the last min_rates optimum did below the minimum (`_MinimumRows.summary`): the quality
# benchmark prints it
LAST_MINIMUM: dict = {}
# energy bands of a car's stretch below its minimum (`_MinimumRows`): more is tighter and slower
MIN_RATE_BANDS = 12


def _min_power_w(day: Day, problem) -> np.ndarray:
    """(N,) the controller's minimum for each visit's car on the phases it charges on (the site
    file's min_current_a: `SiteTopology.min_power_w`)."""
    topo = SiteTopology(day.site)
    return np.array([topo.min_power_w(ConnectorRef(v.station_id, v.connector_id),
                                      int(problem.phases[i]))
                     for i, v in enumerate(day.visits)])


class _MinimumRows:
    """The minimum rate's price in the taper-aware LP, as rows a relaxation keeps linear.

    A car runs at 0 or is offered at least its minimum m (the controller: IEC 61851's 6 A),
    and every limit must hold what it is offered (the fail-safe rule: whatever subset of the
    installed profiles is in force, the site stays under every limit), while it takes only
    its acceptance a(e) = r - k e. Past e* = (r - m) / k its acceptance is below m: each
    60-s step it is on there takes a(e) h and holds at least m h of the limit, so each Wh it
    takes there costs at least m / a(e) Wh of the limit. Split that stretch, up to its need,
    into bands [e_j, e_j+1): a step starting in band j costs at least m / a(e_j) per Wh it
    takes (a falls with e), and the steps starting below e_j take at most e_j plus one
    step's energy (the last of them ends past e_j by at most what it takes: a(e_j-1) h, or
    peak h below e*). With B[v, j] the Wh taken in power variable v's slot by steps starting
    in band j and w[v] what the car is offered above what it takes [W]:

        sum_j B[v, j]                             <= wh x[v]   (the bands' Wh are taken Wh)
        sum_v wh x[v] - sum_v sum_j'>=j B[v, j']  <= e_j + a(e_j-1) h   (e_0 = e*: peak h)
        sum_j (m / a(e_j) - 1) B[v, j]            <= wh w[v]
        w[v] in every node row x[v] is in, with x[v]'s coefficients

    Every trajectory of the simulated cars under a controller that keeps the minimum and the
    fail-safe rule satisfies these (the bands may be filled out of order, the limits hold on
    slot averages: looser, still a bound). The 0-or-at-least-m choice of a car that takes
    its offer (not in taper) stays out (a MILP; online it cost ~4 kWh a day, s26)."""

    def __init__(self, arrays, base: int, wh_per_w: np.ndarray) -> None:
        self.base, self.x_slot, self.wh = base, arrays.x_slot, wh_per_w
        self.n_vars = 0
        self.waste_of_x: list[int] = []     # the power variable of each waste variable
        self.waste_at: list[int] = []       # its index among the added variables
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.rhs: list[float] = []
        self.cars = 0     # cars whose acceptance falls below their minimum before their need

    @property
    def n_waste(self) -> int:
        return len(self.waste_of_x)

    def _row(self, cols: list[int], vals: list[float], rhs: float) -> None:
        row = len(self.rhs)
        self.rows += [row] * len(cols); self.cols += cols; self.vals += vals
        self.rhs.append(rhs)

    def _new(self, count: int) -> list[int]:
        first = self.n_vars
        self.n_vars += count
        return list(range(self.base + first, self.base + first + count))

    def add(self, chain: np.ndarray, k: float, r: float, min_w: float, need_wh: float,
            peak_w: float) -> None:
        if min_w <= 0.0 or k <= 0.0:
            return
        e_star = max((r - min_w) / k, 0.0)
        if e_star >= need_wh:
            return              # its need is met before its acceptance falls below m
        h = REPLAY_STEP_S / 3600.0
        self.cars += 1
        edges = np.linspace(e_star, need_wh, MIN_RATE_BANDS + 1)[:-1]
        width = (need_wh - e_star) / MIN_RATE_BANDS
        accept_w = np.minimum(peak_w, r - k * edges)
        if (accept_w <= 0.0).any():
            raise ValueError("a taper line reaches 0 W before the need is met")
        extra = np.maximum(min_w / accept_w - 1.0, 0.0)
        bands_of = []
        for v in chain:
            wh = float(self.wh[self.x_slot[v]])
            waste = self._new(1)[0]
            self.waste_of_x.append(int(v)); self.waste_at.append(waste - self.base)
            bands = self._new(MIN_RATE_BANDS)
            bands_of.append(bands)
            self._row(bands + [int(v)], [1.0] * MIN_RATE_BANDS + [-wh], 0.0)
            self._row(bands + [waste], extra.tolist() + [-wh], 0.0)
        # what the steps starting below e_j take: they end below e_j plus one step's energy
        # (below e*, a step at the peak; in band j - 1, one at a(e_j-1) at most)
        over_wh = np.concatenate([[peak_w * h], accept_w[:-1] * h])
        for j in range(MIN_RATE_BANDS):
            cols = [int(v) for v in chain] + [b[jj] for b in bands_of
                                              for jj in range(j, MIN_RATE_BANDS)]
            vals = [float(self.wh[self.x_slot[v]]) for v in chain] + \
                [-1.0] * (len(bands_of) * (MIN_RATE_BANDS - j))
            self._row(cols, vals, float(edges[j] + over_wh[j]))

    def node_columns(self, node_ub_x: sp.csr_matrix) -> sp.csc_matrix:
        """The node rows' columns of the added variables: a waste variable's are its power
        variable's (x's first columns of the node rows), a band's are empty."""
        select = sp.csr_matrix((np.ones(self.n_waste), (self.waste_of_x, self.waste_at)),
                               shape=(node_ub_x.shape[1], self.n_vars))
        return (node_ub_x @ select).tocsc()

    def summary(self, z: np.ndarray) -> dict:
        """What an optimum does below the minimum: Wh taken in the bands, Wh offered above
        what was taken, the power variables of such cars."""
        added = np.asarray(z)[self.base:self.base + self.n_vars]
        is_waste = np.zeros(self.n_vars, dtype=bool)
        is_waste[self.waste_at] = True
        wh = self.wh[self.x_slot[self.waste_of_x]]
        return {"band_wh": float(added[~is_waste].sum()),
                "waste_wh": float((added[is_waste] * wh).sum()),
                "cars": self.cars, "power_variables": self.n_waste}

    def matrix(self, total: int) -> sp.csr_matrix:
        return sp.csr_matrix((self.vals, (self.rows, self.cols)), shape=(len(self.rhs), total))


def _next_row(rows: list[int]) -> int:
    return rows[-1] + 1 if rows else 0


def slot_energy_factor_wh_per_w(k: float, steps: int) -> float:
    """c_n: the most a car on acceptance line a(e) = r - k e takes over `steps` replay steps,
    per watt of its acceptance at their start (k in W per Wh)."""
    h = REPLAY_STEP_S / 3600.0
    if not 0.0 <= k * h < 1.0:
        raise ValueError(f"taper slope {k} W/Wh is too steep for {REPLAY_STEP_S} s steps")
    if k == 0.0:
        return steps * h
    return (1.0 - (1.0 - k * h) ** steps) / k


def taper_aware_optimum_wh(day: Day, *, min_rates: bool = False) -> float:
    return float(taper_aware_plan_wh(day, min_rates=min_rates).sum())


def taper_aware_plan_wh(day: Day, *, early: bool = False, min_rates: bool = False) -> np.ndarray:
    """(N, T) Wh each car takes in each offline slot in one taper-aware optimum. `early`: of the
    optima, one that delivers its energy as early as it can (a slot's Wh cost a little more the
    later the slot, far below one Wh of energy), so that its cumulative energy hour by hour is
    a fixed yardstick to hold a run's against (benchmarks/quality_hours.py).

    `min_rates`: the bound that also honours the controller's minimum rate where it costs the
    limit something (`_MinimumRows`): a car whose acceptance is below its minimum is offered at
    least the minimum and takes less, and the site's limits hold what it is offered."""
    problem = offline_problem(day)
    arrays = build_lp(problem, build_objective(problem), problem.upper_w)
    n_var, n_x = arrays.c.shape[0], arrays.n_x
    wh_per_w = problem.wh_per_w
    # the replay's steps each car is plugged in, per slot (a share of its first and last slots)
    steps = np.ceil(presence(day) * (OFFLINE_SLOT_S / REPLAY_STEP_S) - 1e-9).astype(int)
    # one cumulative-energy variable e per power variable: e[v] = e[prev] + wh * x[prev]
    rows_eq, cols_eq, vals_eq = [], [], []
    rows_ub, cols_ub, vals_ub, rhs_ub = [], [], [], []
    minimum = _MinimumRows(arrays, n_var + n_x, wh_per_w) if min_rates else None
    min_w = _min_power_w(day, problem) if min_rates else None
    for i, visit in enumerate(day.visits):
        chain = arrays.var_of[i][arrays.var_of[i] >= 0]
        line = _taper_line(visit, int(problem.phases[i]))
        if chain.size == 0 or line is None:
            continue
        k, r = line
        if minimum is not None:
            minimum.add(chain, k, r, float(min_w[i]), float(problem.energy_wh[i]),
                        float(problem.max_power_w[i].max()))
        for position, v in enumerate(chain):
            row = _next_row(rows_eq)
            rows_eq.append(row); cols_eq.append(n_var + v); vals_eq.append(1.0)
            if position:
                prev = chain[position - 1]
                rows_eq += [row, row]
                cols_eq += [n_var + prev, prev]
                vals_eq += [-1.0, -float(wh_per_w[arrays.x_slot[prev]])]
            n = int(steps[i, arrays.x_slot[v]])
            if n == 0:
                continue
            # wh * x <= c_n (r - k e)  <=>  (wh / c_n) x + k e <= r
            c_n = slot_energy_factor_wh_per_w(k, n)
            rows_ub += [len(rhs_ub)] * 2; cols_ub += [v, n_var + v]
            vals_ub += [float(wh_per_w[arrays.x_slot[v]]) / c_n, k]
            rhs_ub.append(r)
    n_more = minimum.n_vars if minimum is not None else 0
    total = n_var + n_x + n_more
    taper_eq = sp.csr_matrix((vals_eq, (rows_eq, cols_eq)), shape=(_next_row(rows_eq), total))
    taper_ub = sp.csr_matrix((vals_ub, (rows_ub, cols_ub)), shape=(len(rhs_ub), total))
    node_ub = sp.hstack([arrays.A_ub, sp.csr_matrix((arrays.n_ub, n_x))]).tocsc()
    blocks, b_more = [], []
    if minimum is not None:
        # what a car is offered above what it takes counts against every node row its power
        # does (the same column), and the rows that tie the bands to the power
        node_ub = sp.hstack([node_ub, minimum.node_columns(arrays.A_ub[:, :n_x])]).tocsc()
        blocks.append(minimum.matrix(total))
        b_more = minimum.rhs
    a_ub = sp.vstack([node_ub, taper_ub] + blocks).tocsr()
    pad_eq = sp.csr_matrix((arrays.A_eq.shape[0], n_x + n_more))
    a_eq = sp.vstack([sp.hstack([arrays.A_eq, pad_eq]), taper_eq]).tocsr()
    b_ub = np.concatenate([arrays.b_ub, rhs_ub, b_more])
    b_eq = np.concatenate([arrays.b_eq, np.zeros(taper_eq.shape[0])])
    c = np.concatenate([-np.where(np.arange(n_var) >= n_x, 1.0, 0.0), np.zeros(n_x + n_more)])
    if early:
        slot = arrays.x_slot.astype(float)
        c[:n_x] = 1e-6 * (slot + 1.0) / problem.n_slots * wh_per_w[arrays.x_slot]
    bounds = np.vstack([arrays.bounds, np.column_stack([np.zeros(n_x + n_more),
                                                         np.full(n_x + n_more, np.inf)])])
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds,
                     method="highs")
    if result.status != 0:
        raise RuntimeError(f"taper-aware offline LP: {result.message}")
    if minimum is not None:
        LAST_MINIMUM.update(minimum.summary(result.x))
    plan_w = arrays.to_power(result.x[:n_x])
    delivered = plan_w * wh_per_w[None, :]
    # capped at each car's need: the energy variables count no more than the need
    scale = np.minimum(1.0, problem.energy_wh / np.maximum(delivered.sum(axis=1), 1e-9))
    return delivered * scale[:, None]


def online_truthful_wh(day: Day, min_current_a: float = 0.0) -> float:
    """What a controller with perfect stations and cars (no taper, no minimum rates, no meter
    lag) and truthful drivers delivers online, knowing only the cars present: the offline
    problem re-planned at every arrival and after every departure, each plan run until the
    next. The gap between it and the offline optimum is what not knowing the future costs; the
    gap between it and the controller's truthful run is what control and physics cost."""
    problem = offline_problem(day)
    t_all = problem.n_slots
    remaining = problem.energy_wh.astype(float).copy()
    arrivals = set(int(a) for a in problem.arrival_slot)
    wh_per_w = problem.wh_per_w
    node_w, node_a = problem.node_limit_w, problem.node_limit_a      # (M, T) each
    plan, plan_of, plan_start, changed = None, None, 0, False
    for p in range(t_all):
        here = np.flatnonzero((problem.arrival_slot <= p) & (problem.departure_slot > p)
                              & (remaining > 1e-6))
        if here.size == 0:
            plan = None
            continue
        if plan is None or p in arrivals or changed:
            sub = optimizer.Problem(
                slot_s=problem.slot_s[p:], max_power_w=problem.max_power_w[here, p:],
                energy_wh=remaining[here], arrival_slot=np.zeros(here.size, dtype=np.int64),
                departure_slot=problem.departure_slot[here] - p, node_parent=problem.node_parent,
                connector_node=problem.connector_node[here], node_limit_w=node_w[:, p:],
                node_limit_a=node_a[:, p:],
                phases=problem.phases[here], phase=problem.phase[here],
                voltage_v=problem.voltage_v[here],
                min_power_w=min_current_a * problem.voltage_v[here] * problem.phases[here])
            plan, plan_of, plan_start = optimizer.solve(sub).power_w, here, p
        rows = np.searchsorted(plan_of, here)
        ok = (rows < plan_of.size) & (plan_of[np.minimum(rows, plan_of.size - 1)] == here)
        got = np.zeros(here.size)
        got[ok] = np.minimum(plan[rows[ok], p - plan_start] * wh_per_w[p], remaining[here[ok]])
        remaining[here] -= got
        changed = bool((remaining[here] <= 1e-6).any() or (problem.departure_slot[here] == p + 1).any())
    return float((problem.energy_wh - remaining).sum())
