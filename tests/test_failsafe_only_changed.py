"""New fail-safe defaults go only to connectors whose default schedule changes (issue 10: a DR
event at 1 000 connectors sent every one of 500 stations new defaults). A DR event on one feeder
changes the shares under that feeder only: its stations get new defaults, those under the other
feeder none, and whatever is installed still keeps every node under its limit at every moment of
the event, as if smartcharge vanished now. When the event's start passes, the defaults already
carry it: nobody gets them again (every station did, every time a limit began or ended)."""

import json
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock, ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.failsafe import FailSafeSetup
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.station_control import StationControl
from smartcharge.sim.fleet import Fleet
from tests.installed_limits import connector_limit_w, forecast_excesses
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FEEDER_DR_W = 10_000.0   # 5 kW each for the feeder's two connectors (above their minimum)


def _site() -> Site:
    stations = tuple(Station(f"CP{f.upper()}{i}", f"feeder-{f}", (Connector(1),))
                     for f in "ab" for i in (1, 2))
    return Site(name="defaults-only-changed",
                circuits=(Circuit("grid", None, limit_w=60_000), Circuit("feeder-a", "grid"),
                          Circuit("feeder-b", "grid")),
                stations=stations, id_tags=frozenset({"DRIVER-1"}))


async def _defaults_sent(dispatcher, after_id: int) -> list[tuple[int, str]]:
    """(row id, station) of every fail-safe default (TxDefaultProfile, stack level 0) audited
    after `after_id`."""
    await dispatcher.flush_audit()
    rows = await dispatcher.store.run(lambda tx: tx.profiles_sent())
    out = []
    for row in rows:
        profile = json.loads(row["profile_json"])["csChargingProfiles"]
        if row["id"] > after_id and profile["chargingProfilePurpose"] == "TxDefaultProfile" \
                and profile["stackLevel"] == 0:
            out.append((row["id"], row["station_id"]))
    return out


async def _round_after(dispatcher, rounds: int) -> None:
    await wait_until(lambda: dispatcher.rounds_done > rounds and dispatcher.idle, 10,
                     "the round of the re-plan")


async def test_a_feeder_dr_event_sends_defaults_only_under_that_feeder(tmp_path):
    clock = AcceleratedClock(T0, speed=120.0)     # the event 3 site minutes ahead: 1.5 s real
    site = _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=3600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=3600, call_timeout_s=5.0)
        try:
            await fleet.start(wait_booted_s=10)
            controller, dispatcher = server.controller, server.dispatcher
            await wait_until(lambda: all(c.default_layer for c in dispatcher.stations.values())
                             and dispatcher.idle, 10, "every station set up")
            setup = await _defaults_sent(dispatcher, 0)
            mark = max(row_id for row_id, _ in setup)

            start = clock.now() + timedelta(minutes=3)
            end = start + timedelta(minutes=30)
            inside = [start + timedelta(minutes=m) for m in (0, 10, 29)]

            def feeder_a_w(at: datetime) -> float:
                return sum(connector_limit_w(fleet.station(s), 1, at)[0]
                           for s in ("CPA1", "CPA2"))

            assert max(feeder_a_w(m) for m in inside) > FEEDER_DR_W
            rounds = dispatcher.rounds_done
            controller.limits.add_event(DemandResponseEvent(
                "dr-a", start, end, limit_w=FEEDER_DR_W, circuit_id="feeder-a"))
            controller.request_replan("dr on feeder a")
            await wait_until(lambda: max(feeder_a_w(m) for m in inside) <= FEEDER_DR_W + 1.0,
                             10, "feeder a's defaults under its DR limit")
            await _round_after(dispatcher, rounds)
            sent = await _defaults_sent(dispatcher, mark)
            # under feeder a: new defaults; under feeder b nothing changed: nothing sent
            assert {station for _, station in sent} == {"CPA1", "CPA2"}, sent
            # and whatever is installed keeps every node under its limit, event included
            excesses = forecast_excesses(site, fleet, controller.limits, clock.now(),
                                         hours=1.0, step_s=60.0)
            assert not excesses, excesses[:6]

            # the event begins: the defaults carry it already, nobody gets them again
            mark = max(row_id for row_id, _ in sent)
            await wait_until(lambda: clock.now() > start + timedelta(seconds=10), 10,
                             "the event's start")
            rounds = dispatcher.rounds_done
            controller.request_replan("after the start")
            await _round_after(dispatcher, rounds)
            assert await _defaults_sent(dispatcher, mark) == []
            assert not forecast_excesses(site, fleet, controller.limits, clock.now(),
                                         hours=1.0, step_s=60.0)
        finally:
            await fleet.stop()


class _Compare(FailSafeSetup):
    """The comparison alone: the wanted defaults given, the sent ones on the station."""

    def __init__(self, now: datetime, wanted: dict):
        self.clock = ManualClock(now)
        self.wanted = wanted

    def _wanted_defaults(self, control):
        return ("key",), self.wanted


def test_a_default_that_lowers_later_and_raises_now_goes_out_lowered_first():
    now = T0 + timedelta(minutes=5)
    later = T0 + timedelta(hours=1)
    control = StationControl("CP1")
    control.default_sent = {1: [(T0, 10_000.0), (later, 5_000.0)],   # raises now, lowers later
                            2: [(T0, 10_000.0), (later, 5_000.0)],   # the same: nothing
                            3: [(T0, 10_000.0)]}                     # only lowers later
    wanted = {1: [(now, 12_000.0), (later, 4_000.0)], 2: [(now, 10_000.0), (later, 5_000.0)],
              3: [(now, 10_000.0), (later, 4_000.0)], 4: [(now, 10_000.0)]}   # 4: never sent
    downs, ups = _Compare(now, wanted)._default_changes(control)
    assert downs == {1: [(now, 10_000.0), (later, 4_000.0)], 3: wanted[3], 4: wanted[4]}
    assert ups == {1: wanted[1]}
    assert control.defaults_key is None   # something to send: compared again next round
    control.default_sent = {k: v for k, v in wanted.items()}
    assert _Compare(now, wanted)._default_changes(control) == ({}, {})
    assert control.defaults_key == ("key",)


async def test_a_cancelled_events_lowered_defaults_are_raised_back(tmp_path):
    """A DR event announced for later lowers the fail-safe defaults under its feeder in its
    window; cancelled, the defaults are raised back. The limits were then the same as before
    the event, and a station's defaults were compared only when the limits differed from the
    ones it was last found up to date with - before the event: the lowered defaults stayed."""
    from tests.test_dispatch_trust import trust_site, two_feeders   # CP1, CP2 on feeder A
    clock = AcceleratedClock(T0, speed=60.0)
    async with trust_site(two_feeders(), tmp_path, clock) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await fleet.start(wait_booted_s=10)
        cp2 = fleet.station("CP2")
        start = clock.now() + timedelta(hours=2)
        middle = start + timedelta(minutes=30)
        # (its share of feeder A: 15.9 A, 10 971 W)
        await wait_until(lambda: dispatcher.idle
                         and 10_000 < connector_limit_w(cp2, 1, middle)[0] < 11_000, 10, "set up")
        controller.limits.add_event(DemandResponseEvent(
            "later", start, start + timedelta(hours=1), limit_w=4_000, circuit_id="feeder-a"))
        controller.request_replan("dr")
        await wait_until(lambda: dispatcher.idle and connector_limit_w(cp2, 1, middle)[0] < 1.0,
                         10, "CP2's default lowered in the event's window")
        controller.limits.cancel_event("later")
        controller.request_replan("dr cancelled")
        await wait_until(lambda: dispatcher.idle
                         and connector_limit_w(cp2, 1, middle)[0] > 10_000, 10,
                         "CP2's default raised back")
