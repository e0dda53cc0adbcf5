"""Connectors a station reports that its site entry does not declare (a 1.6 connectorId, a 2.0.1
EVSE id not in the site file).

The ledger bills their sessions like any other, but the site has no connector for them: no
maximum, no phases, no profile of ours. Only the station-wide maximum (ChargePointMaxProfile,
installed at setup) bounds what such a connector draws, so it is counted and planned as its
station's load, never as nothing: under the station's node by the guard and the site reading
(at its fresh measured draw; with a session and no fresh sample, at the station's maximum -
missing is not zero); the planner keeps the station's maximum (or more, if such a connector
was measured drawing more) free on every node above the station, idle or charging - a station
may start a transaction there without asking us - while the station's listed connectors share
that maximum inside it (the station's maximum profile bounds its total); a session on it is
shown as a fixed load at that value. Connector 0 is the station's own main meter, never a
connector of its own.
"""

from __future__ import annotations

from datetime import datetime

from smartcharge import units
from smartcharge.site.topology import ConnectorRef, SiteTopology


def is_undeclared(topology: SiteTopology, ref: ConnectorRef) -> bool:
    """A connector of a station in the site file that the file does not list (not 0)."""
    return ref.connector_id > 0 and not topology.has(ref) \
        and ref.station_id in topology.station_node


def max_w(topology: SiteTopology, ref: ConnectorRef) -> float:
    """What it may draw [W]: its station's maximum, the only bound there is."""
    return topology.station_max_w(ref.station_id)


def phases(topology: SiteTopology, ref: ConnectorRef) -> int:
    """The phases its load is counted on: the most any of the station's connectors has (as
    the station's maximum is), a balanced load."""
    return max(c.phases for c in topology.station(ref.station_id).connectors)


def amps(topology: SiteTopology, ref: ConnectorRef, watts: float) -> float:
    """The most current [A] `watts` of it may put on one phase: nothing tells its car's
    phases, so as topology.most_phase_a counts a car of unknown phases - all on one phase, at
    most the station's rated current there (its own, else its connectors' largest), at least
    balanced over `phases`. Balanced, a single-phase car's 7.4 kW were 10.7 A of its 32 A."""
    station = topology.station(ref.station_id)
    balanced_a = units.w_to_a(watts, phases(topology, ref), station.voltage_v)
    if phases(topology, ref) == 1:
        return balanced_a
    rated_a = station.max_current_a if station.max_current_a is not None \
        else max(c.max_current_a for c in station.connectors)
    return max(balanced_a, min(units.w_to_a(watts, 1, station.voltage_v), rated_a))


def draw_w(state, topology: SiteTopology, ref: ConnectorRef, now: datetime,
           stale_after_s: float) -> tuple[float, str]:
    """(W, "fresh" | "stale" | "idle") as the guard counts it now: its fresh sample; with a
    session and none fresh, the station's maximum (or its last sample, if more)."""
    measured = state.measured_w(ref, now, stale_after_s)
    if measured is not None:
        return measured, "fresh"
    if ref not in state.sessions:
        return 0.0, "idle"
    return planned_w(state, topology, ref), "stale"


def planned_w(state, topology: SiteTopology, ref: ConnectorRef) -> float:
    """What the planner plans its session at: the station's maximum, or what it was last
    measured drawing if that is more (a station over its own maximum)."""
    return max(max_w(topology, ref), state.last_measured_w(ref) or 0.0)


def station_reserves_w(state, topology: SiteTopology) -> tuple[tuple[str, float], ...]:
    """(station id, W) for each station with a connector the site file does not list, seen
    so far: what the plan keeps free above that station, idle or charging - its maximum, or
    more if one of those connectors was planned at more (measured over it)."""
    out: dict[str, float] = {}
    for ref in state.undeclared:
        if not is_undeclared(topology, ref):
            continue
        watts = planned_w(state, topology, ref) if ref in state.sessions \
            else max_w(topology, ref)
        out[ref.station_id] = max(out.get(ref.station_id, 0.0), watts)
    return tuple(sorted(out.items()))


def reserve_w(topology: SiteTopology, refs, node_w: tuple[float, ...]) -> tuple[float, ...]:
    """Every node's W limit (topology order) with the maximum of each station that has a
    connector the site file does not list taken off every node above that station: the
    fail-safe defaults of the others are sized so that the site stays under every limit
    whatever that connector draws once we are gone (its station's maximum bounds it and
    nothing else). Its station's own declared connectors keep their shares (inside the
    same maximum: counted twice, which errs on the safe side)."""
    return take_off_w(topology, station_maxima_w(topology, refs), node_w)


def reserve_a(topology: SiteTopology, refs) -> tuple[float, ...] | None:
    """`reserve_w` for the per-phase current limits [A] (the site file's; None: no station
    to make room for): the station's maximum as a balanced current, off every phase."""
    return take_off_a(topology, station_maxima_w(topology, refs), None)


def station_maxima_w(topology: SiteTopology, refs) -> tuple[tuple[str, float], ...]:
    """(station id, its maximum W) for each station with a connector the site file does not
    list among `refs`: what its fail-safe room is (`reserve_w`)."""
    return tuple((station_id, max_w(topology, ConnectorRef(station_id, 0)))
                 for station_id in _stations(topology, refs))


def take_off_w(topology: SiteTopology, reserves: tuple[tuple[str, float], ...],
               node_w: tuple[float, ...]) -> tuple[float, ...]:
    """Every node's W limit with each (station id, W) reserve taken off every node above that
    station (the fail-safe defaults' shares are sized in what is left)."""
    if not reserves:
        return node_w
    out = list(node_w)
    for station_id, reserved in reserves:
        for node in topology.ancestors(topology.station_node[station_id])[1:]:
            out[node] = max(out[node] - reserved, 0.0)
    return tuple(out)


def take_off_a(topology: SiteTopology, reserves: tuple[tuple[str, float], ...],
               node_a: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """`take_off_w` for the per-phase current limits [A] (`node_a`: None, the site file's;
    returned as None when there is nothing to take off), each reserve as a balanced current
    off every phase."""
    if not reserves:
        return node_a
    out = list(node_a) if node_a is not None else [float(a) for a in topology.static_limit_a]
    for station_id, reserved in reserves:
        current_a = amps(topology, ConnectorRef(station_id, 0), reserved)
        for node in topology.ancestors(topology.station_node[station_id])[1:]:
            out[node] = max(out[node] - current_a, 0.0)
    return tuple(out)


def _stations(topology: SiteTopology, refs) -> list[str]:
    return sorted({ref.station_id for ref in refs if is_undeclared(topology, ref)})
