"""Connectors nothing of ours bounds while they wait for a car: their station refused their
fail-safe default (a 1.6 station without Smart Charging, one that says Rejected to every
profile; one left unanswered changes nothing - it may have been taken). A car arriving there
draws the connector's maximum at once - nobody asks us first - so the site keeps that much
free above the station: in the plan (the other cars' room, as for a connector the site file
does not list, `undeclared.py`) and in every other station's fail-safe default (what runs when
we are gone: taken off the nodes above it with the undeclared stations' room,
`undeclared.take_off_w`). Before, the other cars had the whole room:
a car arriving at such a station took the site to 147 % of its grid limit until the re-plan
(tests/test_refusing_station_idle.py).

Only the idle ones are reserved here, at most the station's maximum together: a connector
with a session is planned as any other (a station may refuse defaults and take TxProfiles; one
that refuses those too is planned at its fallback, `plan_inputs.fallback_w`)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping

from smartcharge.site.topology import ConnectorRef, SiteTopology


def station_reserves_w(topology: SiteTopology, refs: Iterable[ConnectorRef],
                       busy: Mapping[ConnectorRef, object] | None = None
                       ) -> tuple[tuple[str, float], ...]:
    """(station id, W) to keep free above each station with unbounded idle connectors: the sum
    of their maxima, at most the station's maximum. `refs` a mapping: what each may draw
    (at most its maximum) - an idle connector of a station with one stack level keeps its
    accepted fail-safe default under a car that arrives (no idle schedule fits above it)."""
    out: dict[str, float] = {}
    for ref in refs:
        if not topology.has(ref) or (busy is not None and ref in busy):
            continue
        draw_w = topology.max_power_w(ref)
        if isinstance(refs, Mapping):
            draw_w = min(draw_w, refs[ref])
        out[ref.station_id] = out.get(ref.station_id, 0.0) + draw_w
    return tuple(sorted((sid, min(w, topology.station_max_w(sid))) for sid, w in out.items()))


def held_reserve(topology: SiteTopology, station_id: str, held: list) -> tuple:
    """A held station's idle connectors (learned.HeldIdle) made ready for `held_reserves_w`:
    (its maximum, ((ref, moments, the most from each moment on, at most the connector's
    maximum), ...)), connectors the site file does not list left out."""
    out = []
    for ref, moments, most in held:
        if topology.has(ref):
            top = topology.max_power_w(ref)
            out.append((ref, moments, tuple(min(w, top) for w in most)))
    return topology.station_max_w(station_id), tuple(out)


def held_reserves_w(held: Mapping[str, tuple], now,
                    busy: Mapping[ConnectorRef, object]) -> tuple[tuple[str, float], ...]:
    """(station id, W) to keep free above each held station: what its idle connectors (a car
    there is planned as its session) may let a car draw from `now` on, at most the station's
    maximum together - a bisection per connector (`held_reserve` made the rest once)."""
    out = []
    for station_id, (station_max_w, connectors) in held.items():
        total = 0.0
        for ref, moments, most in connectors:
            if ref in busy:
                continue
            if len(most) == 1 or now >= moments[-1]:
                total += most[-1]   # (most held ones: one step, or past its last change)
            else:
                total += most[max(bisect_right(moments, now) - 1, 0)]
        if total > 0.0:
            out.append((station_id, min(total, station_max_w)))
    return tuple(sorted(out))

