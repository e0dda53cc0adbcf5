"""The site's circuit tree and stations as the optimizer's node arrays, and back.

Nodes: the circuits in tree order (the grid connection is node 0, parents before children), then
one node per station under its circuit, carrying the station's own maxima. Connectors are numbered
in site order; `ConnectorRef` maps an index back to (station_id, connector_id).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcharge import units
from smartcharge.model import PHASE_NAMES, Connector, Site, Station
from smartcharge.site.limits import SOURCE_CIRCUIT, SOURCE_SITE, SOURCE_STATION, LimitSource


@dataclass(frozen=True, order=True)
class ConnectorRef:
    station_id: str
    connector_id: int


class SiteTopology:
    def __init__(self, site: Site) -> None:
        self.site = site
        order = _tree_order(site)
        self.node_ids: list[str] = [c.circuit_id for c in order]
        index = {cid: i for i, cid in enumerate(self.node_ids)}
        parent = [-1] + [index[c.parent_id] for c in order[1:]]
        limit_w = [np.inf if c.limit_w is None else float(c.limit_w) for c in order]
        limit_a = [np.inf if c.limit_a is None else float(c.limit_a) for c in order]
        self.node_sources: list[LimitSource] = [
            LimitSource(SOURCE_SITE if i == 0 else SOURCE_CIRCUIT, c.circuit_id,
                        "grid connection" if i == 0 else "breaker/feeder")
            for i, c in enumerate(order)]
        self.station_node: dict[str, int] = {}
        for station in site.stations:
            if station.circuit_id not in index:
                raise ValueError(f"stations[{station.station_id}].circuit: unknown circuit "
                                 f"{station.circuit_id!r}")
            self.station_node[station.station_id] = len(parent)
            self.node_ids.append(f"station:{station.station_id}")
            parent.append(index[station.circuit_id])
            limit_w.append(np.inf if station.max_power_w is None else float(station.max_power_w))
            limit_a.append(np.inf if station.max_current_a is None
                           else float(station.max_current_a))
            self.node_sources.append(LimitSource(SOURCE_STATION, station.station_id,
                                                 "station maximum"))
        self.node_parent = np.array(parent, dtype=np.int64)
        self.static_limit_w = np.array(limit_w)
        self.static_limit_a = np.array(limit_a)
        self._phase_limited: dict[str, bool] = {}   # station -> `phase_limited`
        # (station, connector, unit is W) -> installed.w_factor of a car of unknown phases
        # (the wiring)
        self.w_factors: dict[tuple, float] = {}
        self.refs: list[ConnectorRef] = []
        self._index: dict[ConnectorRef, int] = {}
        # looked up per connector on every guard pass and plan: a dict, not a scan (issue 10)
        self._connectors: dict[ConnectorRef, Connector] = {}
        self._rows: dict[ConnectorRef, tuple] = {}      # ref -> `arrays`' values (`_row`)
        for station in site.stations:
            for connector in station.connectors:
                ref = ConnectorRef(station.station_id, connector.connector_id)
                self._index[ref] = len(self.refs)
                self.refs.append(ref)
                self._connectors.setdefault(ref, connector)
        self.connector_node = np.array([self.station_node[r.station_id] for r in self.refs],
                                       dtype=np.int64)

    # --- lookups ----------------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    def index(self, ref: ConnectorRef) -> int:
        return self._index[ref]

    def has(self, ref: ConnectorRef) -> bool:
        return ref in self._index

    def station(self, station_id: str) -> Station:
        station = self.site.station(station_id)
        if station is None:
            raise KeyError(f"unknown station {station_id!r}")
        return station

    def connector(self, ref: ConnectorRef) -> Connector:
        connector = self._connectors.get(ref)
        if connector is None:
            raise KeyError(f"unknown connector {ref}")
        return connector

    def ancestors(self, node: int) -> list[int]:
        """The node itself and every node above it, up to the root."""
        out = []
        while node >= 0:
            out.append(node)
            node = int(self.node_parent[node])
        return out

    # --- per-connector arrays ---------------------------------------------------------------
    def max_power_w(self, ref: ConnectorRef, phases: int | None = None) -> float:
        """The connector's maximum [W] on `phases` phases (default: all of its phases)."""
        return units.connector_max_w(self.station(ref.station_id), self.connector(ref), phases)

    def station_max_w(self, station_id: str) -> float:
        """The station's maximum [W] (what its fail-safe maximum is set to)."""
        return units.station_max_w(self.station(station_id))

    def min_power_w(self, ref: ConnectorRef, phases: int | None = None) -> float:
        station, connector = self.station(ref.station_id), self.connector(ref)
        phases = connector.phases if phases is None else min(phases, connector.phases)
        return float(min(units.a_to_w(connector.min_current_a, phases, station.voltage_v),
                         self.max_power_w(ref, phases)))

    def phase_index(self, ref: ConnectorRef) -> int:
        return PHASE_NAMES.index(self.connector(ref).phase)

    def site_phase(self, ref: ConnectorRef, station_phase: int) -> int:
        """The site phase (0..2) that a station phase (0..2) of this connector is wired to.

        A 1-phase connector loads its `phase`. On a 3-phase connector, `phase` names the site
        phase its L1 is wired to (the rotation; the site file's default "L1" means L1->L1,
        L2->L2, L3->L3), and the other phases follow in order."""
        connector = self.connector(ref)
        rotation = PHASE_NAMES.index(connector.phase)
        return rotation if connector.phases == 1 else (rotation + station_phase) % 3

    def most_phase_a(self, ref: ConnectorRef, load_w: float, phases_in_use: int | None) -> float:
        """The most current [A] a load of `load_w` on the connector puts on any one phase: what
        a fixed load takes off every phase's current limit above it (planner), and what the
        guard counts a draw at on each phase it may load. `phases_in_use`: the car's phases
        as known (1, 3; None: not known).

        On a 1-phase connector, or a single-phase car on a 3-phase one, all of it is on one
        phase; a three-phase car's is balanced. Not known on a 3-phase connector, it is the
        worst of the two: all on one phase (a 7.4 kW single-phase car puts 32 A there, not the
        10.7 A of a balanced count). On a 3-phase connector a phase carries at most the
        connector's rated current (the site file's, its station's), so a load past what one
        phase can carry is counted at that rating - at least at its balanced share: 22 kW of
        a car whose phases are not known is 32 A on each phase, what a three-phase car draws,
        not the 96 A no phase of it could carry."""
        connector = self.connector(ref)
        station = self.station(ref.station_id)
        voltage = station.voltage_v
        if connector.phases == 1:
            return units.w_to_a(load_w, 1, voltage)
        balanced_a = units.w_to_a(load_w, connector.phases, voltage)
        if phases_in_use == 3:
            return balanced_a
        rated_a = connector.max_current_a if station.max_current_a is None \
            else min(connector.max_current_a, station.max_current_a)
        return max(balanced_a, min(units.w_to_a(load_w, 1, voltage), rated_a))

    def phase_limited(self, ref: ConnectorRef) -> bool:
        """True when a per-phase current limit [A] holds anywhere above the connector (its
        station or a circuit): there a W limit lets a single-phase car on a 3-phase connector
        put 3x the planned per-phase current on one phase."""
        station_id = ref.station_id
        known = self._phase_limited.get(station_id)
        if known is None:   # the wiring is fixed: once per station (issue 10: asked twice per
            # schedule built, a numpy check per node above it each time)
            known = self._phase_limited[station_id] = any(
                np.isfinite(self.static_limit_a[node])
                for node in self.ancestors(self.station_node[station_id]))
        return known

    def arrays(self, refs: list[ConnectorRef]) -> dict[str, np.ndarray]:
        """connector_node, phases, phase, voltage_v, max_power_w (N,), min_power_w for refs."""
        rows = [self._row(r) for r in refs]
        node, phases, phase, voltage, max_w, min_w = zip(*rows) if rows else ((),) * 6
        return {
            "connector_node": np.array(node, dtype=np.int64),
            "phases": np.array(phases, dtype=np.int64),
            "phase": np.array(phase, dtype=np.int64),
            "voltage_v": np.array(voltage, float),
            "max_power_w": np.array(max_w, float),
            "min_power_w": np.array(min_w, float),
        }

    def _row(self, ref: ConnectorRef) -> tuple:
        """`arrays`' values of one connector, looked up once: every plan asked the site for
        them again (6 ms of a 1 000-connector re-plan: benchmarks/README.md, s33-warm). The
        site, its stations and connectors are frozen and the topology's own."""
        row = self._rows.get(ref)
        if row is None:
            row = self._rows[ref] = (
                self.station_node[ref.station_id], self.connector(ref).phases,
                self.phase_index(ref), self.station(ref.station_id).voltage_v,
                self.max_power_w(ref), self.min_power_w(ref))
        return row

    def node_limits(self, root_limit_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(node_limit_w (M,T), node_limit_a (M,T)): the tree's limits with the root's W limit
        per slot replaced by min(site file, root_limit_w)."""
        root_limit_w = np.asarray(root_limit_w, dtype=float)
        t = root_limit_w.shape[0]
        limit_w = np.repeat(self.static_limit_w[:, None], t, axis=1)
        limit_w[0] = np.minimum(limit_w[0], root_limit_w)
        limit_a = np.repeat(self.static_limit_a[:, None], t, axis=1)
        return limit_w, limit_a

    # --- fail-safe defaults -----------------------------------------------------------------
    def default_shares(self, root_limit_w: float | None = None, *, node_limit_w=None,
                       node_limit_a=None, held_w=None) -> dict[ConnectorRef, tuple[float, float]]:
        """Each connector's (power_w, current_a) share of the tightest limit above it.

        The W limits are the site file's, with the root's lowered to `root_limit_w`, or every
        node's as given in `node_limit_w` (M,) (a DR event on a circuit lowers that circuit);
        the A limits the site file's, or lower as given in `node_limit_a` (M,).

        Every node's W and A limits are split equally among the connectors in its subtree that
        get a share, and a connector takes the smallest share over its ancestors (and its own
        maximum), so the sum over any node never exceeds that node's limit, whatever the
        stations draw on their own. A share below the connector's minimum current lets no car
        charge at all, so where a node cannot give everyone its minimum, fewer connectors get
        one (the last ones in site order get 0): fewer stations, each with a usable share.

        `held_w` ({ref: W}): connectors that keep what they hold whatever we say (an offline
        station's accepted default): each is its own share, taken off every node above it, and
        the others share what is left.
        """
        limit_w = self.static_limit_w.copy()
        if node_limit_w is not None:
            limit_w = np.minimum(limit_w, np.asarray(node_limit_w, dtype=float))
        if root_limit_w is not None:
            limit_w[0] = min(limit_w[0], root_limit_w)
        limit_a = self.static_limit_a if node_limit_a is None else \
            np.minimum(self.static_limit_a, np.asarray(node_limit_a, dtype=float))
        held = {}
        if held_w:
            limit_a = limit_a.copy()
            # what the held take beyond each node's limit: records that sum above it (a cap
            # lowered while we were down, a kill before a round's lowered record was written)
            excess_w = np.zeros(self.n_nodes)
            excess_a = np.zeros(self.n_nodes)
            for ref, power_w in held_w.items():
                i = self._index[ref]
                current_a = units.w_to_a(power_w, self.connector(ref).phases,
                                         self.station(ref.station_id).voltage_v)
                for a in self.ancestors(int(self.connector_node[i])):
                    excess_w[a] += max(power_w - limit_w[a], 0.0)
                    excess_a[a] += max(current_a - limit_a[a], 0.0)
                    limit_w[a] = max(limit_w[a] - power_w, 0.0)
                    limit_a[a] = max(limit_a[a] - current_a, 0.0)
                held[ref] = (float(power_w), float(current_a))
            if excess_w.any() or excess_a.any():
                # a held connector's share is what it is sent at its set-up, the others still
                # at theirs: its record less the excess over every node above it (its record
                # as it was, the stations' own profiles summed over the limit once we were gone)
                for ref, (power_w, current_a) in held.items():
                    chain = self.ancestors(int(self.connector_node[self._index[ref]]))
                    cut_w = max(float(excess_w[a]) for a in chain)
                    cut_a = max(float(excess_a[a]) for a in chain)
                    if cut_w > 0 or cut_a > 0:
                        phases = self.connector(ref).phases
                        voltage_v = self.station(ref.station_id).voltage_v
                        current_a = max(min(current_a - cut_a,
                                            units.w_to_a(max(power_w - cut_w, 0.0), phases,
                                                         voltage_v)), 0.0)
                        held[ref] = (min(max(power_w - cut_w, 0.0),
                                         units.a_to_w(current_a, phases, voltage_v)),
                                     current_a)
        # the shares as arrays over the connectors (`_equal_shares`): a Python loop over every
        # connector and the nodes above it took ~20 ms at 1 000 connectors and ~200 ms at
        # 10 000, in one step of the event loop at every change of the limits - a DR event's
        # first comparison, before its first decrease (issue 10)
        arrays = self._share_arrays()
        taking = np.ones(len(self.refs), dtype=bool)   # connectors that get a share
        taking[[self._index[ref] for ref in held]] = False
        for _ in range(len(self.refs) + 1):
            rows = np.flatnonzero(taking)
            share_w, share_a, node, by_w = self._equal_shares(limit_w, rows, limit_a)
            short = share_a < arrays["min_current_a"][rows] - 1e-6
            if not short.any():
                break
            k = int(np.where(short, share_a, np.inf).argmin())   # the first of the least
            if node[k] < 0:          # its own maximum is below its minimum: never usable
                taking[rows[k]] = False
                continue
            bottleneck, unit = int(node[k]), "w" if by_w[k] else "a"
            members = rows[(arrays["chains"][rows] == bottleneck).any(axis=1)]
            need = float(arrays["min_need_w" if unit == "w" else "min_current_a"][members].max())
            room = limit_w[bottleneck] if unit == "w" else limit_a[bottleneck]
            keep = min(int(room // need) if need > 0 else len(members), len(members) - 1)
            taking[members[max(keep, 0):]] = False
        out = dict.fromkeys(self.refs, (0.0, 0.0))
        refs = self.refs
        for i, w, a in zip(rows.tolist(), share_w.tolist(), share_a.tolist()):
            out[refs[i]] = (w, a)
        out.update(held)
        return out

    def _equal_shares(self, limit_w: np.ndarray, rows: np.ndarray, limit_a: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Equal shares among the connectors `rows` (ascending): (W, A, the bottleneck node -
        -1: the connector's own maximum, below its minimum -, whether that node binds in W)
        per row. The same float operations in the same order as the loop it replaced
        (units.w_to_a, a_to_w), so the same shares; between nodes of the same share, the one
        nearest the connector, as `min` over its chain did."""
        arrays = self._share_arrays()
        chains = arrays["chains"][rows]     # (A, D): the nodes above each, nearest first
        m = self.n_nodes
        # connectors with a share, per node (the padding counts on its own entry, m)
        count = np.bincount(chains.ravel(), minlength=m + 1)[:m].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_w = np.append(np.asarray(limit_w, dtype=float) / count, np.inf)
            ratio_a = np.append(np.asarray(limit_a, dtype=float) / count, np.inf)
        node_w = _first_least(chains, ratio_w)
        node_a = _first_least(chains, ratio_a)
        share_w = ratio_w[node_w]
        share_a = ratio_a[node_a]
        phases, voltage = arrays["phases"][rows], arrays["voltage_v"][rows]
        max_current_a = arrays["max_current_a"][rows]
        from_w = share_w / (phases * voltage)                       # units.w_to_a
        by_w = from_w < share_a
        unusable = max_current_a < np.minimum(share_a, from_w)
        share_a = np.minimum(np.minimum(share_a, max_current_a), from_w)
        share_w = np.minimum(np.minimum(share_w, arrays["max_power_w"][rows]),
                             share_a * phases * voltage)            # units.a_to_w
        node = np.where(unusable, -1, np.where(by_w, node_w, node_a))
        return share_w, share_a, node, by_w & ~unusable

    def _share_arrays(self) -> dict[str, np.ndarray]:
        """Per connector, fixed by the wiring (built once): `chains` (N, D), the nodes above it
        nearest first (its station's node up to the root), padded with `n_nodes`; phases,
        voltage_v, max_current_a, max_power_w, min_current_a and min_need_w (its minimum on
        all its phases) (N,)."""
        arrays = getattr(self, "_shares_arrays", None)
        if arrays is not None:
            return arrays
        n, m = len(self.refs), self.n_nodes
        by_node: dict[int, list[int]] = {}
        chains_of = []
        for i in range(n):
            node = int(self.connector_node[i])
            chain = by_node.get(node)
            if chain is None:
                chain = by_node[node] = self.ancestors(node)
            chains_of.append(chain)
        depth = max((len(c) for c in chains_of), default=1)
        chains = np.full((n, depth), m, dtype=np.int64)
        for i, chain in enumerate(chains_of):
            chains[i, :len(chain)] = chain
        connectors = [self.connector(ref) for ref in self.refs]
        phases = np.array([c.phases for c in connectors], dtype=float)
        voltage = np.array([self.station(r.station_id).voltage_v for r in self.refs],
                           dtype=float)
        min_current_a = np.array([c.min_current_a for c in connectors], dtype=float)
        arrays = self._shares_arrays = {
            "chains": chains, "phases": phases, "voltage_v": voltage,
            "max_current_a": np.array([c.max_current_a for c in connectors], dtype=float),
            "max_power_w": np.array([self.max_power_w(r) for r in self.refs], dtype=float),
            "min_current_a": min_current_a,
            "min_need_w": min_current_a * phases * voltage}          # units.a_to_w
        return arrays


def _first_least(chains: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Per row of `chains` (nodes nearest first, padded with an index whose `ratio` is inf),
    the node with the least `ratio`, the nearest among equals - `min(chain, key=...)`."""
    column = ratio[chains].argmin(axis=1)   # the first of the least: the nearest
    return chains[np.arange(len(chains)), column]


def _tree_order(site: Site):
    """Circuits, root first and parents before children (the site file promises it; check)."""
    if site.root.parent_id is not None:
        raise ValueError(f"circuits[0] ({site.root.circuit_id}): the root must have no parent")
    seen = {site.root.circuit_id}
    for i, circuit in enumerate(site.circuits[1:], start=1):
        if circuit.parent_id not in seen:
            raise ValueError(f"circuits[{i}] ({circuit.circuit_id}).parent: "
                             f"{circuit.parent_id!r} is not an earlier circuit")
        seen.add(circuit.circuit_id)
    return list(site.circuits)
