"""The aiohttp application factory: the CLI, the demo and the tests all build the app here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import ocpp.messages
from aiohttp import web

from smartcharge import api, http_log
from smartcharge.appkeys import CLOCK, EVENTS, PORTS, REGISTRY, SITE, STORE
from smartcharge.clock import Clock, SystemClock
from smartcharge.events import EventBus
from smartcharge.model import Site
from smartcharge.ocpp import server
from smartcharge.ocpp.ports import port_factory
from smartcharge.ocpp.registry import StationRegistry
from smartcharge.openadr.setup import setup_openadr
from smartcharge.retention import setup_retention
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.setup import setup_site_control
from smartcharge.store import SqliteStore
from smartcharge.web import setup_dashboard

log = logging.getLogger(__name__)

# aiohttp rounds every timer of a connection longer than this (5 s by default) up to a whole
# second of the loop's clock: each station's WebSocket ping (`server.ping_interval_s`, 30 s)
# fell due on the same whole second as every other station's whose last frame came in that
# second - at 5 000 stations 800-1 700 pings sent in one turn of the loop, 3-7 ms of it
# (s34-stall). Never rounded: each ping falls due 30 s after its own station's last frame,
# as spread as the frames were.
TIMEOUT_CEIL_THRESHOLD_S = float("inf")


def create_app(site: Site, *, db_path: str | None = None, clock: Clock | None = None,
               control: ControllerSettings | None = None,
               dispatch: DispatchSettings | None = None,
               smart_charging: bool = True,
               insecure_open_api: bool = False) -> web.Application:
    """The whole service for `site`: OCPP endpoint, store, REST API, site controller, dashboard.

    The store opens on startup and closes on cleanup. `db_path` overrides the site file's
    `server.database`; `clock` defaults to wall time; `control`/`dispatch` tune the controller;
    `smart_charging=False` leaves the controller out (a metering-only central system: no
    charging profiles are sent). `insecure_open_api` lets every API request through without a
    token (`--insecure-open-api`, the demo on loopback); without it the API fails closed.
    """
    # The library validates every payload in a worker thread by default; the thread hop costs
    # more than validating an OCPP payload inline (measured: ~15-25 % more MeterValues/s).
    ocpp.messages.ASYNC_VALIDATION = False
    http_log.install()   # a request HTTP cannot read: the client's fault, a WARNING line
    app = web.Application(client_max_size=1 << 20,
                          handler_args={"timeout_ceil_threshold": TIMEOUT_CEIL_THRESHOLD_S})
    app[SITE] = site
    app[CLOCK] = clock or SystemClock()
    app[EVENTS] = EventBus()
    app[REGISTRY] = StationRegistry(queue_drain_s=site.server.queue_drain_s)
    app[PORTS] = port_factory(app[CLOCK])   # per connection, by its negotiated protocol
    database = db_path or site.server.database

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        # the stations' billing messages are written in a process of their own (store_writer.py)
        app[STORE] = await SqliteStore.open(
            database, writer_process=True,
            refusal_summary_s=site.server.store_refusal_summary_s)
        log.info("store: %s (schema version %d)", database, app[STORE].schema_version)
        yield
        await app[STORE].close()

    async def close_stations(app: web.Application) -> None:
        await app[REGISTRY].close_all("server shutdown")

    app.cleanup_ctx.append(store_ctx)
    setup_retention(app, site.server.inbound_retention_days,   # after the store: needs it open
                    site.server.audit_retention_days)
    app.on_shutdown.append(close_stations)
    server.add_routes(app)
    api.add_routes(app, open_api=insecure_open_api)
    if smart_charging:
        setup_site_control(app, settings=control, dispatch_settings=dispatch)
        api.add_site_routes(app)
        setup_openadr(app)    # the site's VENs (site file [[openadr]]) feed its limits
    setup_dashboard(app)
    return app
