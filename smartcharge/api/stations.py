"""Stations over REST: every declared or ever-seen station, with its live link, its last boot
and its connectors' statuses."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from smartcharge.api.auth import READ, route
from smartcharge.appkeys import REGISTRY, SITE, STORE
from smartcharge.ocpp.ports import ocpp_version
from smartcharge.store import db_time


async def list_stations(request: web.Request) -> web.Response:
    return web.json_response(await _stations(request.app))


async def get_station(request: web.Request) -> web.Response:
    station_id = request.match_info["station_id"]
    for station in await _stations(request.app):
        if station["station_id"] == station_id:
            return web.json_response(station)
    raise web.HTTPNotFound(text=f"unknown station {station_id!r}")


async def _stations(app: web.Application) -> list[dict[str, Any]]:
    site, registry = app[SITE], app[REGISTRY]
    rows, statuses = await app[STORE].read(lambda tx: (tx.stations(), tx.connector_statuses()))
    stored = {row["station_id"]: row for row in rows}
    ids = [s.station_id for s in site.stations] + sorted(set(stored) - {
        s.station_id for s in site.stations})
    result = []
    for station_id in ids:
        row = stored.get(station_id, {})
        link = registry.get(station_id)
        result.append({
            "station_id": station_id,
            "declared": site.station(station_id) is not None,
            "online": link is not None,
            "ocpp_version": ocpp_version(link.protocol) if link is not None else None,
            "boot_status": row.get("boot_status"),
            "vendor": row.get("vendor"), "model": row.get("model"),
            "firmware_version": row.get("firmware_version"),
            "last_seen": db_time(link.last_seen) if link and link.last_seen
            else row.get("last_seen"),
            "firmware_status": row.get("firmware_status"),
            "diagnostics_status": row.get("diagnostics_status"),
            "connectors": [{"connector_id": s["connector_id"], "status": s["status"],
                            "error_code": s["error_code"], "timestamp": s["timestamp"]}
                           for s in statuses if s["station_id"] == station_id],
        })
    return result


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/stations", list_stations, READ)
    route(app, "GET", "/api/stations/{station_id}", get_station, READ)
