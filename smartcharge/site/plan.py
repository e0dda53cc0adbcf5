"""A plan: what each connector gets over the coming slots, why, and the safety net that clips
any allocation back under every limit of a Problem."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np

from smartcharge import units
from smartcharge.site.limits import SOURCE_CONNECTOR, SOURCE_ENERGY, LimitSource
from smartcharge.site.topology import ConnectorRef, SiteTopology


@dataclass(frozen=True, slots=True)   # slots: no __dict__, one tracked object each (issue 10)
class ConnectorPlan:
    ref: ConnectorRef
    transaction_id: int
    start: datetime                    # the moment the plan was made (first slot's start)
    slot_starts: list[datetime]        # start of each slot; slot 0 starts at `start`
    power_w: np.ndarray                # (T,) allocation per slot [W]
    min_power_w: float
    binding: LimitSource | None = None
    phases: int = 3                    # phases it is planned on (1: a single-phase car)
    phases_known: bool = True          # False: a 3-phase connector whose car's phase use is
                                       # not measured yet (planned balanced, sent fail-safe)

    def power_at(self, moment: datetime) -> float:
        # the last slot started at or before `moment` (the first before any): a bisection, as
        # this is asked per connector on every sample and every dashboard snapshot (issue 10)
        index = max(bisect_right(self.slot_starts, moment) - 1, 0)
        return float(self.power_w[index])

    def window(self, start: datetime, duration_s: float) -> tuple[list[float], list[float]]:
        """(period starts [s from start], powers [W]) covering [start, start + duration_s)."""
        offsets, powers = [0.0], [self.power_at(start)]
        # only the slots that begin inside the window (bisected: a plan has ~100 slots and
        # every connector's window is asked in every dispatch round, issue 10)
        first = bisect_right(self.slot_starts, start)
        last = bisect_left(self.slot_starts, start + timedelta(seconds=duration_s))
        for index in range(first, last):
            offsets.append((self.slot_starts[index] - start).total_seconds())
            powers.append(float(self.power_w[index]))
        return offsets, powers


@dataclass(frozen=True)
class Plan:
    at: datetime
    # ref -> its plan; the planner's is columns read as ConnectorPlans (connector_plans.py)
    connectors: Mapping[ConnectorRef, ConnectorPlan]
    fixed_w: dict[ConnectorRef, float]      # uncontrollable connectors, planned at fallback
    root_limit_w: float
    root_source: LimitSource | None
    status: str
    idle_w: dict[ConnectorRef, float] = field(default_factory=dict)  # what a car arriving may draw
    # connectors drawing without a session: room taken at their draw, never sent a profile
    sessionless_w: dict[ConnectorRef, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def node_loads(problem, power_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((M,T) power per node [W], (M,3,T) current per node and phase [A])."""
    incidence = problem.node_connector
    load_w = np.asarray(incidence @ power_w)
    amps = problem.amps_per_w                                  # (N,3)
    per_phase = np.einsum("np,nt->npt", amps, power_w)         # (N,3,T)
    load_a = np.stack([np.asarray(incidence @ per_phase[:, p, :]) for p in range(3)], axis=1)
    return load_w, load_a


def clip_to_limits(problem, power_w: np.ndarray) -> np.ndarray:
    """Scale connectors down until no node, connector or window limit is exceeded; anything
    pushed below its minimum rate pauses. Only ever lowers, so one pass from the root down is
    enough: scaling a subtree never raises a load elsewhere."""
    power = np.clip(np.asarray(power_w, float), 0.0, problem.upper_w)
    for node in range(problem.n_nodes):
        members = problem.node_connector[node].indices
        if members.size == 0:
            continue
        load_w, load_a = node_loads(problem, power)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor_w = np.where(load_w[node] > 0, problem.node_limit_w[node] / load_w[node], 1.0)
            factor_a = np.where(load_a[node] > 0, problem.node_limit_a[node][None, :] /
                                load_a[node], 1.0).min(axis=0)
        factor = np.clip(np.minimum(factor_w, factor_a), 0.0, 1.0) * (1 - 1e-9)
        power[members] *= factor[None, :]
    below_min = (power > 0) & (power < problem.min_power_w[:, None])
    power[below_min] = 0.0
    return power


def safe_baseline(problem) -> np.ndarray:
    """Everyone as early and as fast as allowed, clipped under every limit, stopping at the
    requested energy: the plan when the optimizer is unavailable."""
    power = clip_to_limits(problem, np.array(problem.upper_w))
    wh = power * problem.wh_per_w[None, :]
    before = np.cumsum(wh, axis=1) - wh                       # energy delivered before slot t
    room = np.clip(problem.energy_wh[:, None] - before, 0.0, None)
    return np.minimum(power, room / problem.wh_per_w[None, :])


def binding_sources(problem, power_w: np.ndarray, topology: SiteTopology,
                    root_sources: list, refs: list[ConnectorRef],
                    node_sources: dict[int, LimitSource] | None = None
                    ) -> list[LimitSource | None]:
    """For each connector, the limit that binds it in the first slot.

    At its maximum: the connector (or car) binds. Otherwise the nearest node above it with no
    room for more of this connector binds: less than a small tolerance left, or - for a
    connector at 0 - less than its minimum rate left (so "paused because the cap's remainder is
    below 6 A" names the cap). Otherwise it is its energy need (spread over the stay).
    """
    n = problem.n_connectors
    if n == 0:
        return []
    load_w, load_a = node_loads(problem, power_w)
    headroom_w = problem.node_limit_w[:, 0] - load_w[:, 0]                    # (M,)
    headroom_a = problem.node_limit_a[:, 0][:, None] - load_a[:, :, 0]         # (M,3)
    # Every connector's path at once (a loop of small numpy calls per connector and ancestor
    # took 12-20 ms of a 1 000-connector re-plan: benchmarks/README.md, s33-warm); the same
    # products and comparisons per (connector, ancestor), nearest ancestor first.
    first_w = power_w[:, 0]
    max_w = problem.upper_w[:, 0]
    at_max = (first_w >= max_w - 1.0) & (max_w > 0)
    need_w = np.maximum(np.where(first_w <= 1e-6, problem.min_power_w, 50.0), 1.0)
    with np.errstate(divide="ignore"):
        watts_per_amp = 1.0 / problem.amps_per_w                               # (N,3) inf off-phase
    on_phase = np.isfinite(watts_per_amp)
    paths = _paths(topology, problem.connector_node)          # (N, D), -1 past the root
    binds = np.full(n, -1, dtype=np.int64)                                    # the binding node
    for depth in range(paths.shape[1]):
        node = paths[:, depth]
        open_ = (binds < 0) & (node >= 0) & ~at_max
        if not open_.any():
            break
        at = np.maximum(node, 0)
        with np.errstate(invalid="ignore"):
            room_a_as_w = np.where(on_phase, headroom_a[at] * watts_per_amp, np.inf).min(axis=1)
        tight = open_ & (np.minimum(headroom_w[at], room_a_as_w) < need_w)
        binds[tight] = node[tight]
    sources = node_sources or {}
    by_node = {}
    out: list[LimitSource | None] = []
    for i, node in enumerate(binds.tolist()):
        if at_max[i]:
            out.append(_source(SOURCE_CONNECTOR, f"{refs[i].station_id}/{refs[i].connector_id}",
                               "connector or car maximum"))
        elif node >= 0:
            found = by_node.get(node)
            if found is None:
                found = by_node[node] = (
                    root_sources[0] if node == 0 and root_sources[0] is not None
                    else sources.get(node, topology.node_sources[node]))
            out.append(found)
        else:
            detail = ("energy need met" if problem.energy_wh[i] <= 1e-6
                      else "energy need spread over the stay")
            out.append(_source(SOURCE_ENERGY, f"{refs[i].station_id}/{refs[i].connector_id}",
                               detail))
    return out


def _paths(topology: SiteTopology, connector_node: np.ndarray) -> np.ndarray:
    """(N, D) each connector's node and the nodes above it, nearest first, -1 past the root."""
    nodes = {int(m): topology.ancestors(int(m)) for m in np.unique(connector_node)}
    depth = max(len(p) for p in nodes.values())
    table = {m: p + [-1] * (depth - len(p)) for m, p in nodes.items()}
    return np.array([table[m] for m in connector_node.tolist()], dtype=np.int64).reshape(
        len(connector_node), depth)


@lru_cache(maxsize=1 << 16)
def _source(kind: str, name: str, detail: str) -> LimitSource:
    """One LimitSource per (kind, connector, detail), kept from plan to plan: a plan made a new
    one per connector its own maximum or its need binds, objects every young collection after a
    re-plan traversed (issue 10). Immutable and compared by value, so sharing changes nothing."""
    return LimitSource(kind, name, detail)


def idle_shares(problem, power_w: np.ndarray, topology: SiteTopology, busy: set,
                window_slots: int) -> dict[ConnectorRef, float]:
    """What each idle connector (no session) may draw if a car arrives before the next re-plan:
    its equal share of the room the plan leaves under every node above it over the first
    window_slots slots, in W; below its minimum rate it is 0. Sent as a short-lived
    idle schedule, so an arrival never pushes the site over a limit while it waits for its
    own plan."""
    load_w, load_a = node_loads(problem, power_w)
    k = max(1, min(window_slots, problem.n_slots))
    room_w = (problem.node_limit_w[:, :k] - load_w[:, :k]).min(axis=1)                 # (M,)
    room_a = (problem.node_limit_a[:, None, :k] - load_a[:, :, :k]).min(axis=(1, 2))  # (M,)
    idle = [r for r in topology.refs if r not in busy]
    count = np.zeros(topology.n_nodes)
    for ref in idle:
        for node in topology.ancestors(topology.station_node[ref.station_id]):
            count[node] += 1
    out = {}
    for ref in idle:
        connector = topology.connector(ref)
        watts_per_amp = units.a_to_w(1.0, connector.phases,
                                     topology.station(ref.station_id).voltage_v)
        share = topology.max_power_w(ref)
        for node in topology.ancestors(topology.station_node[ref.station_id]):
            share = min(share, max(room_w[node], 0.0) / count[node],
                        max(room_a[node], 0.0) / count[node] * watts_per_amp)
        out[ref] = float(share) if share >= topology.min_power_w(ref) else 0.0
    return out


def over_limits(problem, power_w: np.ndarray, tol_w: float = 1e-3) -> list[str]:
    """Our own last check (independent of the optimizer's): every node W/A limit and connector
    bound; returns a description per breach, empty when the allocation is safe."""
    out = []
    if problem.n_connectors == 0:
        return out
    power = np.asarray(power_w, float)
    over = power - problem.upper_w
    if (over > tol_w).any():
        i, t = np.unravel_index(int(np.argmax(over)), over.shape)
        out.append(f"connector {i} slot {t}: {power[i, t]:.1f} W > bound "
                   f"{problem.upper_w[i, t]:.1f} W")
    load_w, load_a = node_loads(problem, power)
    excess_w = load_w - problem.node_limit_w
    if (excess_w > tol_w).any():
        m, t = np.unravel_index(int(np.argmax(excess_w)), excess_w.shape)
        out.append(f"node {m} slot {t}: {load_w[m, t]:.1f} W > limit "
                   f"{problem.node_limit_w[m, t]:.1f} W")
    excess_a = load_a - problem.node_limit_a[:, None, :]
    if (excess_a > tol_w).any():
        m, p, t = np.unravel_index(int(np.argmax(excess_a)), excess_a.shape)
        out.append(f"node {m} phase L{p + 1} slot {t}: {load_a[m, p, t]:.2f} A > limit "
                   f"{problem.node_limit_a[m, t]:.2f} A")
    return out
