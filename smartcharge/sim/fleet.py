"""Many simulated stations from one `Site`: start and stop them together, plug cars in and out,
read what each connector draws. The demo and the end-to-end tests script a day with this.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp

from smartcharge.clock import Clock
from smartcharge.model import Site
from smartcharge.sim.ev import SimEV
from smartcharge.sim.core import StationCore
from smartcharge.sim.spec import Quirks, StationSpec, Transaction
from smartcharge.sim.stations import make_station


class Fleet:
    def __init__(self, site: Site, url: str, clock: Clock, *, seed: int = 0,
                 quirks: dict[str, Quirks] | None = None,
                 ocpp_versions: dict[str, str] | None = None,
                 clock_offsets_s: dict[str, float] | None = None, **spec_overrides) -> None:
        """`url` is the OCPP endpoint without the station id, e.g. ws://127.0.0.1:8080/ocpp.

        `spec_overrides` apply to every StationSpec (e.g. meter_interval_s=60); `quirks` gives
        individual stations their misbehaviour, `ocpp_versions` the protocol of those that do
        not speak 1.6 ("2.0.1"). Each station gets its own seed derived from `seed`, so a run is
        the same every time. `clock_offsets_s`: how far a station's own clock runs ahead of
        `clock` (negative: behind).
        """
        self.site = site
        self.url = url
        self.clock = clock
        quirks = quirks or {}
        ocpp_versions = ocpp_versions or {}
        self.stations: dict[str, StationCore] = {}
        self._http: aiohttp.ClientSession | None = None
        for index, station in enumerate(site.stations):
            spec = StationSpec.from_model(station, **spec_overrides)
            if station.station_id in quirks:
                spec = replace(spec, quirks=quirks[station.station_id])
            if station.station_id in ocpp_versions:
                spec = replace(spec, ocpp_version=ocpp_versions[station.station_id])
            if station.station_id in (clock_offsets_s or {}):
                spec = replace(spec, clock_offset_s=clock_offsets_s[station.station_id])
            self.stations[station.station_id] = make_station(
                spec, url, clock, seed=seed * 100_003 + index)

    def station(self, station_id: str) -> StationCore:
        try:
            return self.stations[station_id]
        except KeyError:
            raise KeyError(f"no simulated station {station_id!r} in site "
                           f"{self.site.name!r}") from None

    async def start(self, *, wait_booted_s: float | None = 30.0) -> None:
        """Connect every station; with `wait_booted_s`, wait (bounded) until all have booted."""
        # one HTTP session (one connector pool) for the fleet: thousands of sessions would each
        # carry their own pool and DNS cache for nothing
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for station in self.stations.values():
            await station.start(self._http)
        if wait_booted_s is not None:
            await self.wait_booted(wait_booted_s)

    async def wait_booted(self, timeout_s: float = 30.0) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(s.booted.wait() for s in self.stations.values())), timeout_s)

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.stations.values()),
                             return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def plug_in(self, station_id: str, connector_id: int, ev: SimEV,
                      id_tag: str | None) -> bool:
        return await self.station(station_id).plug_in(connector_id, ev, id_tag)

    async def unplug(self, station_id: str, connector_id: int) -> Transaction | None:
        return await self.station(station_id).unplug(connector_id)

    def draw_w(self, station_id: str, connector_id: int) -> float:
        return self.station(station_id).draw_w(connector_id)

    def draws_w(self) -> dict[tuple[str, int], float]:
        """Every connector's draw right now [W], keyed by (station id, connector id)."""
        return {(sid, cid): station.draw_w(cid)
                for sid, station in self.stations.items() for cid in station.connectors}

    def site_draw_w(self) -> float:
        return sum(station.total_draw_w() for station in self.stations.values())

    async def drained(self, timeout_s: float = 30.0) -> None:
        """Wait until every station has delivered everything it queued."""
        await asyncio.gather(*(s.drained(timeout_s) for s in self.stations.values()))
