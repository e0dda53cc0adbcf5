"""The optimizer's input: one charging-allocation problem as arrays.

Shapes (N connectors with an active session, T slots, M circuit-tree nodes):

    slot_s          (T,)    length of each slot [s]; slots may differ (fine near now, coarse later)
    max_power_w     (N, T)  connector's maximum power in each slot [W]
    min_power_w     (N,)    smallest non-zero power a connector can run at [W] (IEC 61851: 6 A);
                            a connector gets either 0 or at least this
    energy_wh       (N,)    energy still requested [Wh]
    arrival_slot    (N,)    first slot the car is present (inclusive)
    departure_slot  (N,)    first slot the car is gone (exclusive); power is 0 outside the window
    phases          (N,)    1 or 3
    phase           (N,)    site phase a single-phase connector loads: 0=L1, 1=L2, 2=L3
                            (ignored for 3-phase connectors)
    voltage_v       (N,)    phase-to-neutral voltage [V]
    weight          (N,)    priority weight (> 0); higher is served first when energy is short
    node_parent     (M,)    parent index of each node; node 0 is the root (the grid connection)
                            with parent -1, and every parent index is smaller than its child's
    connector_node  (N,)    the node each connector hangs under
    node_limit_w    (M, T)  power limit of each node per slot [W], +inf where there is none
    node_limit_a    (M, T)  per-phase current limit of each node per slot [A], +inf where none
    price_per_kwh   (T,) or None   energy price per slot [currency/kWh]
    phase_a_per_w   (N, 3) or None current each connector puts on L1..L3 per W it draws [A/W],
                    given per row where the electrical model below does not hold: e.g. a car of
                    unknown phases on a 3-phase connector planned on its worst case, 1/V A on
                    the site phase its connector's L1 is wired to (a single-phase car draws
                    there) and 1/(3V) on the other two (a three-phase car); None: from phases,
                    phase and voltage_v
    previous_w      (N, T) or None the allocation installed before this problem [W], NaN where
                    there is none to keep (a slot no station holds a profile for); among plans
                    equal on every level of the objective, solve keeps the one closest to it
                    (optimizer/stable.py). 0 means "not running": keep it so; the controller
                    gives a car the last plan did not have NaN (no preference).

A per-slot field (N, T) or (M, T) also takes a scalar (everyone, every slot) or one value per
connector or node (N,) / (M,), the same in every slot.

Electrical model: a 3-phase connector drawing p W puts p / (3 V) A on each phase; a single-phase
connector puts p / V A on its one phase (unless phase_a_per_w says otherwise for the row). A
node's load is the sum over every connector in its subtree, for power and for each phase's
current.

Everything is validated on construction; a bad field raises ValueError naming the field and the
first bad index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

N_PHASES = 3


def _fail(field_name: str, message: str, index=None) -> None:
    where = f"[{index}]" if index is not None else ""
    raise ValueError(f"{field_name}{where}: {message}")


def _first_bad(mask: np.ndarray):
    """Index (int or tuple) of the first True in mask."""
    flat = int(np.flatnonzero(mask.ravel())[0])
    idx = np.unravel_index(flat, mask.shape)
    return idx[0] if len(idx) == 1 else tuple(int(i) for i in idx)


def _as_float(name: str, value, shape: tuple[int, ...], *, allow_inf: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not numeric ({exc})") from None
    if arr.ndim == 1 and len(shape) == 2 and arr.shape[0] == shape[0]:
        arr = arr[:, None]  # one value per row (connector or node), the same in every slot
    try:
        arr = np.broadcast_to(arr, shape).copy()
    except ValueError:
        _fail(name, f"shape {arr.shape} does not fit {shape}")
    if np.isnan(arr).any():
        _fail(name, "is NaN", _first_bad(np.isnan(arr)))
    if not allow_inf and np.isinf(arr).any():
        _fail(name, "is infinite", _first_bad(np.isinf(arr)))
    arr.setflags(write=False)
    return arr


def _as_int(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    raw = np.asarray(value)
    if raw.dtype.kind == "f":
        if np.isnan(raw).any() or (raw != np.round(raw)).any():
            _fail(name, "must be whole numbers")
    elif raw.dtype.kind not in "iub":
        _fail(name, f"must be integers, got {raw.dtype}")
    try:
        arr = np.broadcast_to(raw.astype(np.int64), shape).copy()
    except ValueError:
        _fail(name, f"shape {raw.shape} does not fit {shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Problem:
    slot_s: np.ndarray
    max_power_w: np.ndarray
    energy_wh: np.ndarray
    arrival_slot: np.ndarray
    departure_slot: np.ndarray
    node_parent: np.ndarray
    connector_node: np.ndarray
    node_limit_w: np.ndarray | float = np.inf
    node_limit_a: np.ndarray | float = np.inf
    min_power_w: np.ndarray | float = 0.0
    phases: np.ndarray | int = 3
    phase: np.ndarray | int = 0
    voltage_v: np.ndarray | float = 230.0
    weight: np.ndarray | float = 1.0
    price_per_kwh: np.ndarray | None = None
    n_slots: int | None = field(default=None)
    previous_w: np.ndarray | None = None
    phase_a_per_w: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        connector_node = np.atleast_1d(np.asarray(self.connector_node))
        node_parent = np.atleast_1d(np.asarray(self.node_parent))
        n, m = connector_node.shape[0], node_parent.shape[0]
        slot_s = np.atleast_1d(np.asarray(self.slot_s, dtype=float))
        t = int(self.n_slots) if self.n_slots is not None else slot_s.shape[0]
        if t < 1:
            _fail("n_slots", "must be at least 1")
        set_("n_slots", t)
        set_("slot_s", _as_float("slot_s", slot_s, (t,)))
        if (self.slot_s <= 0).any():
            _fail("slot_s", "must be positive", _first_bad(self.slot_s <= 0))

        set_("node_parent", _as_int("node_parent", node_parent, (m,)))
        if m < 1:
            _fail("node_parent", "needs at least the root node")
        if self.node_parent[0] != -1:
            _fail("node_parent", "node 0 is the root and must have parent -1", 0)
        if m > 1:
            rest = self.node_parent[1:]
            bad = (rest < 0) | (rest >= np.arange(1, m))
            if bad.any():
                i = int(np.flatnonzero(bad)[0]) + 1
                _fail("node_parent", "must name an earlier node (parents come before children)", i)
        set_("connector_node", _as_int("connector_node", connector_node, (n,)))
        bad = (self.connector_node < 0) | (self.connector_node >= m)
        if bad.any():
            _fail("connector_node", f"must be a node index in [0, {m})", _first_bad(bad))

        set_("max_power_w", _as_float("max_power_w", self.max_power_w, (n, t)))
        set_("min_power_w", _as_float("min_power_w", self.min_power_w, (n,)))
        set_("energy_wh", _as_float("energy_wh", self.energy_wh, (n,)))
        set_("voltage_v", _as_float("voltage_v", self.voltage_v, (n,)))
        set_("weight", _as_float("weight", self.weight, (n,)))
        set_("node_limit_w", _as_float("node_limit_w", self.node_limit_w, (m, t), allow_inf=True))
        set_("node_limit_a", _as_float("node_limit_a", self.node_limit_a, (m, t), allow_inf=True))
        for name in ("max_power_w", "min_power_w", "energy_wh", "node_limit_w", "node_limit_a"):
            arr = getattr(self, name)
            if (arr < 0).any():
                _fail(name, "must not be negative", _first_bad(arr < 0))
        if (self.voltage_v <= 0).any():
            _fail("voltage_v", "must be positive", _first_bad(self.voltage_v <= 0))
        if (self.weight <= 0).any():
            _fail("weight", "must be positive", _first_bad(self.weight <= 0))

        set_("arrival_slot", _as_int("arrival_slot", self.arrival_slot, (n,)))
        set_("departure_slot", _as_int("departure_slot", self.departure_slot, (n,)))
        bad = (self.arrival_slot < 0) | (self.arrival_slot > t)
        if bad.any():
            _fail("arrival_slot", f"must be in [0, {t}]", _first_bad(bad))
        bad = (self.departure_slot < 0) | (self.departure_slot > t)
        if bad.any():
            _fail("departure_slot", f"must be in [0, {t}]", _first_bad(bad))
        bad = self.departure_slot < self.arrival_slot
        if bad.any():
            _fail("departure_slot", "is before arrival_slot", _first_bad(bad))

        set_("phases", _as_int("phases", self.phases, (n,)))
        bad = (self.phases != 1) & (self.phases != 3)
        if bad.any():
            _fail("phases", "must be 1 or 3", _first_bad(bad))
        set_("phase", _as_int("phase", self.phase, (n,)))
        bad = (self.phases == 1) & ((self.phase < 0) | (self.phase >= N_PHASES))
        if bad.any():
            _fail("phase", "a single-phase connector must name phase 0 (L1), 1 (L2) or 2 (L3)",
                  _first_bad(bad))

        if self.phase_a_per_w is not None:
            per_w = np.asarray(self.phase_a_per_w, dtype=float)
            if per_w.shape != (n, N_PHASES):
                _fail("phase_a_per_w", f"shape {per_w.shape} does not fit {(n, N_PHASES)}")
            set_("phase_a_per_w", _as_float("phase_a_per_w", per_w, (n, N_PHASES)))
            if (self.phase_a_per_w < 0).any():
                _fail("phase_a_per_w", "must not be negative", _first_bad(self.phase_a_per_w < 0))
            none = ~(self.phase_a_per_w > 0).any(axis=1)
            if none.any():
                _fail("phase_a_per_w", "a connector must draw current on some phase",
                      _first_bad(none))
        if self.price_per_kwh is not None:
            price = _as_float("price_per_kwh", self.price_per_kwh, (t,))
            set_("price_per_kwh", price)
        if self.previous_w is not None:
            previous = np.asarray(self.previous_w, dtype=float)
            known = np.where(np.isnan(previous), 0.0, previous)
            set_("previous_w", _as_float("previous_w", known, (n, t)))  # shape and infinities
            if (self.previous_w < 0).any():
                _fail("previous_w", "must not be negative", _first_bad(self.previous_w < 0))
            previous = np.broadcast_to(previous if previous.ndim != 1 or len(previous) != n
                                       else previous[:, None], (n, t)).copy()
            previous.setflags(write=False)
            set_("previous_w", previous)

    # --- sizes ---------------------------------------------------------------------------------
    @property
    def n_connectors(self) -> int:
        return int(self.connector_node.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.node_parent.shape[0])

    # --- derived arrays (computed once, read-only) ---------------------------------------------
    @cached_property
    def available(self) -> np.ndarray:
        """(N, T) bool: the car is present in the slot."""
        slots = np.arange(self.n_slots)
        mask = (slots >= self.arrival_slot[:, None]) & (slots < self.departure_slot[:, None])
        mask.setflags(write=False)
        return mask

    @cached_property
    def upper_w(self) -> np.ndarray:
        """(N, T) the connector's power bound: max power inside the window, 0 outside."""
        upper = np.where(self.available, self.max_power_w, 0.0)
        upper.setflags(write=False)
        return upper

    @cached_property
    def wh_per_w(self) -> np.ndarray:
        """(T,) energy in Wh delivered by 1 W held for one slot."""
        return self.slot_s / 3600.0

    @cached_property
    def ancestors(self) -> sp.csr_matrix:
        """(M, M) sparse 0/1: row a has a 1 in column d when node d is in a's subtree (a itself too)."""
        m = self.n_nodes
        rows, cols = [np.arange(m)], [np.arange(m)]
        current = np.arange(m)
        parent = self.node_parent
        alive = parent[current] >= 0
        while alive.any():
            current = np.where(alive, parent[current], current)
            rows.append(current[alive])
            cols.append(np.arange(m)[alive])
            alive = alive & (parent[current] >= 0)
        data = np.ones(sum(len(r) for r in rows))
        return sp.csr_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))

    @cached_property
    def node_paths(self) -> tuple[np.ndarray, ...]:
        """Every node's path to the root (itself first)."""
        parent = self.node_parent
        paths = []
        for node in range(self.n_nodes):
            path = [node]
            while parent[path[-1]] >= 0:
                path.append(int(parent[path[-1]]))
            paths.append(np.array(path))
        return tuple(paths)

    @cached_property
    def node_connector(self) -> sp.csr_matrix:
        """(M, N) sparse 0/1 incidence: node m contains connector i anywhere in its subtree."""
        n, m = self.n_connectors, self.n_nodes
        direct = sp.csr_matrix((np.ones(n), (self.connector_node, np.arange(n))), shape=(m, n))
        return (self.ancestors @ direct).tocsr()

    @cached_property
    def load_matrix(self) -> sp.csr_matrix:
        """(4 M, N) sparse: `load_matrix @ power_w` stacks every node's power load (rows 0..M-1)
        and its current on L1, L2, L3 (rows M.., 2M.., 3M..), in one sparse product instead of
        four plus three (N, T) temporaries (optimizer/check.py `node_loads`).

        Each block has node_connector's row layout and entry order (its rows are not sorted,
        and the order of a row's entries is the order of the sum); the current blocks hold
        amps_per_w of the entry's connector, explicit zeros kept. So each load is the very sum
        `node_connector @ (amps_per_w[:, ph, None] * power_w)` computes, to the bit: a product
        amps * p added in the same order (1.0 * t there is t), a zero added where it added one."""
        conn = self.node_connector
        m, nnz = conn.shape[0], conn.nnz
        amps = self.amps_per_w
        data = np.concatenate([conn.data] + [amps[conn.indices, ph] for ph in range(N_PHASES)])
        indptr = np.concatenate([conn.indptr[:-1] + block * nnz
                                 for block in range(N_PHASES + 1)] + [[(N_PHASES + 1) * nnz]])
        indices = np.tile(conn.indices, N_PHASES + 1)
        matrix = sp.csr_matrix((data, indices, indptr), shape=((N_PHASES + 1) * m, conn.shape[1]))
        return matrix

    @cached_property
    def amps_per_w(self) -> np.ndarray:
        """(N, 3) current each connector puts on phases L1..L3 per watt it draws [A/W]."""
        if self.phase_a_per_w is not None:
            return self.phase_a_per_w
        out = np.zeros((self.n_connectors, N_PHASES))
        three = self.phases == 3
        out[three, :] = (1.0 / (3.0 * self.voltage_v[three]))[:, None]
        single = np.flatnonzero(~three)
        out[single, self.phase[single]] = 1.0 / self.voltage_v[single]
        out.setflags(write=False)
        return out

    @cached_property
    def has_phase_limits(self) -> bool:
        """True when some finite per-phase current limit exists."""
        return bool(np.isfinite(self.node_limit_a).any())
