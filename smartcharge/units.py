"""W <-> A per phase, and a station's maximum: the one copy.

Every current is per phase, every voltage phase-to-neutral (model.py); a limit in W is for the
whole connector, balanced over its phases."""

from __future__ import annotations

NOMINAL_VOLTAGE_V = 230.0   # phase-to-neutral, where a station's own is not known


def w_to_a(power_w: float, phases: int, voltage_v: float) -> float:
    """Power [W] on `phases` balanced phases -> current per phase [A]."""
    return power_w / (phases * voltage_v)


def a_to_w(current_a: float, phases: int, voltage_v: float) -> float:
    """Current per phase [A] on `phases` phases -> power [W]."""
    return current_a * phases * voltage_v


def rate_to_w(rate: float, unit: str, phases: int, voltage_v: float) -> float:
    """A limit in "A" (per phase) or "W" -> W."""
    return a_to_w(rate, phases, voltage_v) if unit == "A" else rate


def connector_max_w(station, connector, phases: int | None = None) -> float:
    """The most a connector of `station` may draw [W] on `phases` phases (default: all of its
    own): its current, its own W cap, the station's W and current caps."""
    voltage = station.voltage_v
    phases = connector.phases if phases is None else min(phases, connector.phases)
    caps = [a_to_w(connector.max_current_a, phases, voltage)]
    if connector.max_power_w is not None:
        caps.append(connector.max_power_w)
    if station.max_power_w is not None:
        caps.append(station.max_power_w)
    if station.max_current_a is not None:
        caps.append(a_to_w(station.max_current_a, phases, voltage))
    return float(min(caps))


def station_max_w(station) -> float:
    """The most a station may draw [W]: the sum of its connectors' maxima under its own caps
    (its current cap on the most phases any of its connectors has)."""
    phases = max(c.phases for c in station.connectors)
    total_w = sum(connector_max_w(station, c) for c in station.connectors)
    if station.max_power_w is not None:
        total_w = min(total_w, station.max_power_w)
    if station.max_current_a is not None:
        total_w = min(total_w, a_to_w(station.max_current_a, phases, station.voltage_v))
    return total_w
