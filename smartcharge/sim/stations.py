"""The simulated station class for a spec's OCPP version."""

from __future__ import annotations

from smartcharge.sim.core import StationCore
from smartcharge.sim.spec import StationSpec


def make_station(spec: StationSpec, url: str, clock, *, seed: int = 0,
                 http=None) -> StationCore:
    """A SimStation (1.6) or SimStation201 (2.0.1), as `spec.ocpp_version` says."""
    if spec.ocpp_version == "2.0.1":
        from smartcharge.sim.v201.station import SimStation201
        return SimStation201(spec, url, clock, seed=seed, http=http)
    from smartcharge.sim.station import SimStation
    return SimStation(spec, url, clock, seed=seed, http=http)
