"""Helpers for the site controller's end-to-end tests: the real server app with the controller,
simulated stations over real WebSockets, and a monitor of measured site load vs the limit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
from aiohttp import web

from smartcharge.app import create_app
from smartcharge.clock import format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.setup import CONTROLLER, DISPATCHER
from tests.hang_budget import hang_budget_s
from tests.installed_limits import forecast_excesses


async def wait_until(predicate, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Bounded wait for a condition that other tasks make true (re-checked every 10 ms);
    `timeout_s` is a quiet machine's budget, the wait bounds a hang (tests/hang_budget.py)."""
    loop = asyncio.get_running_loop()
    budget_s = hang_budget_s(timeout_s)
    deadline = loop.time() + budget_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {budget_s:g} s waiting for {what}")
        await asyncio.sleep(0.01)


async def post_dr_event(server, token: str, event_id: str, start: datetime, end: datetime,
                        limit_w: float) -> None:
    """A utility's demand-response event through the REST API, as a utility sends it."""
    body = {"id": event_id, "start": format_ocpp_time(start), "end": format_ocpp_time(end),
            "limit_w": limit_w}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.http_url}/api/demand-response/events", json=body,
                             headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 201, await resp.text()


@dataclass
class Server:
    app: web.Application
    runner: web.AppRunner
    ws_url: str
    http_url: str

    @property
    def controller(self):
        return self.app[CONTROLLER]

    @property
    def dispatcher(self):
        return self.app[DISPATCHER]


@contextlib.asynccontextmanager
async def control_server(site, db_path, clock, *, settings: ControllerSettings | None = None,
                         dispatch: DispatchSettings | None = None,
                         insecure_open_api: bool = False, port: int = 0,
                         phase_probe: bool = False):
    """`phase_probe` False (the default here): a new car's station is not asked for a sample
    of its phases (site/phase_probe.py) - like the hourly meter values of FLEET_DEFAULTS, no
    sample a test did not ask for moves the plan under its feet."""
    if not phase_probe:
        dispatch = dataclasses.replace(
            dispatch or DispatchSettings(settle_s=site.server.settle_s,
                                         edge_margin_s=site.server.edge_margin_s),
            phase_probe_after_s=None)
    app = create_app(site, db_path=str(db_path), clock=clock, control=settings,
                     dispatch=dispatch, insecure_open_api=insecure_open_api)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", port)
    await tcp.start()
    port = runner.addresses[0][1]
    server = Server(app, runner, f"ws://127.0.0.1:{port}/ocpp", f"http://127.0.0.1:{port}")
    try:
        yield server
    finally:
        await runner.cleanup()


# the simulated stations of the end-to-end tests: quick reconnects, 5 s for an answer, hourly
# meter values (no closed loop moving the plan under a test's feet unless it asks)
FLEET_DEFAULTS = {"meter_interval_s": 3600, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3,
                  "call_timeout_s": 5.0}


@contextlib.asynccontextmanager
async def server_and_fleet(site, tmp_path, clock, *, fleet_kw: dict | None = None,
                           **server_kw):
    """The control server on `site` (`control_server`'s options) and its simulated stations,
    not started yet (`fleet_kw`: Fleet options over FLEET_DEFAULTS): (server, fleet). At the
    end every station's held messages and answers are released and the fleet stopped, whatever
    the test did to them."""
    async with control_server(site, tmp_path / "sc.sqlite", clock, **server_kw) as server:
        fleet = Fleet(site, server.ws_url, clock, **{**FLEET_DEFAULTS, **(fleet_kw or {})})
        try:
            yield server, fleet
        finally:
            for station in fleet.stations.values():
                release_messages(station)
                station.profile_answers.set()
            await fleet.stop()


def shorten_call_timeout(server: Server, timeout_s: float) -> None:
    """From now on dispatch waits `timeout_s` (real) for a station's answer (every port of the
    dispatcher shares its one PortSettings, read at each call). For a test whose fault is a
    station that stops answering: it sets its site up under the default timeout and shortens
    it once the fault begins. With the short one from the start, a starved xdist worker (load
    17-29) answered a set-up call late: the set-up was postponed and nothing sets a station up
    again on the same connection - no fail-safe default, its 22 kW counted beside the plans
    (test_dispatch_trust: 44 kW of limits on a 22 kW grid), or a healthy station's late
    answer taken as silence (benchmarks/README.md, s31-suite)."""
    server.dispatcher._port_settings.call_timeout_s = timeout_s


def hold_messages(station) -> None:
    """From now on the simulated station's messages to the server wait in its outbox (a lagging
    link, a queue like the demo's) until `release_messages`."""
    held: list = []
    station._enqueue = held.append


def release_messages(station) -> None:
    """The station's held messages go out, in order, and later ones at once (no-op when none
    are held)."""
    hold = vars(station).pop("_enqueue", None)
    if hold is not None:
        for item in hold.__self__:   # the list `hold_messages` appends to
            station._enqueue(item)


class _Sampling:
    """A monitor's loop: every real 10 ms the simulated stations brought up to the clock, then
    `_sample(now)` kept in `samples`; `start`, `stop`. Needs `fleet`, `clock`, `samples`,
    `task`."""

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            now = self.clock.now()
            for station in self.fleet.stations.values():
                station.advance_to(now)
            self.samples.append(self._sample(now))
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@dataclass
class LoadMonitor(_Sampling):
    """Samples the simulated stations' summed draw against the limit in force (real 10 ms)."""

    fleet: object
    clock: object
    limit_at: object                   # callable(datetime) -> float
    samples: list[tuple[datetime, float, float]] = field(default_factory=list)
    task: asyncio.Task | None = None

    def _sample(self, now: datetime) -> tuple[datetime, float, float]:
        return now, self.fleet.site_draw_w(), self.limit_at(now)

    def excesses(self, *, allow_after: list[datetime] = (), grace_s: float = 0.0,
                 tol_w: float = 1.0) -> list[tuple[datetime, float, float]]:
        """Samples over the limit, except within grace_s after a zero-notice change."""
        out = []
        for at, load, limit in self.samples:
            if load <= limit + tol_w:
                continue
            if any(c <= at <= c + timedelta(seconds=grace_s) for c in allow_after):
                continue
            out.append((at, load, limit))
        return out


def composite_w(fleet, station_id: str, at) -> float:
    """What the simulated station's installed profiles let connector 1 draw at `at` [W] (3
    phases at 230 V; no limit: infinity)."""
    station = fleet.station(station_id)
    state = station.connectors[1]
    tx = state.transaction.context() if state.transaction else None
    limit = station.profiles.limit_w(1, at, tx, voltage_v=230.0, phases_in_use=3)
    return float("inf") if limit is None else limit


def site_phase_currents_a(site, fleet) -> list[float]:
    """The site's current per phase [A] from the simulated draws: a car's draw over the phases it
    charges on, starting at the site phase its connector's L1 is wired to (`phase`)."""
    totals = [0.0, 0.0, 0.0]
    for station in site.stations:
        sim = fleet.station(station.station_id)
        for connector in station.connectors:
            state = sim.connectors[connector.connector_id]
            phases = state.ev.phases if state.ev is not None else connector.phases
            if state.draw_w <= 0:
                continue
            first = ("L1", "L2", "L3").index(connector.phase)
            for k in range(phases):
                totals[(first + k) % 3] += state.draw_w / (station.voltage_v * phases)
    return totals


@dataclass
class PhaseMonitor(_Sampling):
    """Samples the site's per-phase current from the simulated draws (real 10 ms)."""

    site: object
    fleet: object
    clock: object
    samples: list[tuple[datetime, list[float]]] = field(default_factory=list)
    task: asyncio.Task | None = None

    def _sample(self, now: datetime) -> tuple[datetime, list[float]]:
        return now, site_phase_currents_a(self.site, self.fleet)

    def peak_a(self) -> float:
        return max((max(amps) for _, amps in self.samples), default=0.0)


def big_car() -> SimEV:
    """A car that takes more than any one connector here gives: 100 kWh at 10 %, 22 kW on
    three phases (7.4 kW on one)."""
    return SimEV(capacity_wh=100_000, soc=0.1, max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})


async def a_big_car_charging(server, fleet, station_id: str, limit_w: float) -> None:
    """A big car plugged in at `station_id`'s connector 1, charging within `limit_w`, every
    plan of it dispatched."""
    assert await fleet.plug_in(station_id, 1, big_car(), "DRIVER-1")
    await wait_until(lambda: 5_000 < fleet.draw_w(station_id, 1) <= limit_w + 1, 20,
                     f"the car at {station_id} charging under {limit_w:.0f} W")
    await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")


async def draws_over(fleet, clock, limit_w: float, minutes: float,
                     every_s: float = 2.0) -> list:
    """Every `every_s` site seconds for the next `minutes`: the moments the site's simulated
    draw was above `limit_w` (+1 W), with each connector's draw."""
    over = []
    until = clock.now() + timedelta(minutes=minutes)
    while clock.now() < until:
        if fleet.site_draw_w() > limit_w + 1:
            over.append((clock.now(), fleet.draws_w()))
        await wait_until(lambda t=clock.now(): clock.now() > t + timedelta(seconds=every_s),
                         5, f"{every_s:g} seconds")
    return over


def two_stations(name: str, grid_w: float, connectors: int = 1):
    """CP1 and CP2, `connectors` each, under one grid limit of `grid_w`."""
    return Site(name=name, circuits=(Circuit("grid", None, limit_w=grid_w),),
                stations=tuple(Station(sid, "grid", tuple(Connector(c + 1)
                                                          for c in range(connectors)))
                               for sid in ("CP1", "CP2")),
                id_tags=frozenset({"DRIVER-1"}))


async def a_second_car_stays_under_the_grid(site, tmp_path, clock, grid_w: float, *,
                                            fleet_kw: dict, second=("CP1", 1),
                                            before_second=None) -> None:
    """A big car charging on CP2/1 and every plan dispatched, a site minute on: whatever the
    stations hold keeps the site under `grid_w` for hours (`forecast_excesses`), and a second
    big car plugged in at `second` keeps it there, drawn, for three site minutes.
    `before_second(fleet)`: the test's own checks before the second car comes."""
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"meter_interval_s": 60, **fleet_kw}
                                ) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP2", 1, big_car(), "DRIVER-1")
        await wait_until(lambda: fleet.draw_w("CP2", 1) > 5_000, 20, "CP2 charging")
        await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        settled = clock.now() + timedelta(minutes=1)
        await wait_until(lambda: clock.now() > settled, 10, "a minute")
        if before_second is not None:
            before_second(fleet)
        excess = forecast_excesses(site, fleet, server.controller.limits, clock.now())
        assert excess == [], (len(excess), excess[:2], excess[-2:])
        assert await fleet.plug_in(*second, big_car(), "DRIVER-1")
        over = await draws_over(fleet, clock, grid_w, minutes=3)
        assert over == [], (len(over), over[:3])
