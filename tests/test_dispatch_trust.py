"""Dispatch never takes the site over a limit, even when a station does not do what it is told:
increases wait for the decreases they depend on (per subtree), a profile is ordered by what it
does in every interval, and the sum of the limits installed in the simulated stations is checked
after every single profile a station installs."""

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.station import Quirks
from tests.installed_limits import InstallWatch, connector_limit_w
from tests.site_e2e import server_and_fleet, shorten_call_timeout, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEED = 60.0
SETTINGS = ControllerSettings(stale_after_s=600.0)
REF1, REF2, REF3 = ConnectorRef("CP1", 1), ConnectorRef("CP2", 1), ConnectorRef("CP3", 1)


def two_feeders() -> Site:
    """No grid limit: feeder A (CP1, CP2) and feeder B (CP3) are unrelated subtrees."""
    return Site(name="trust",
                circuits=(Circuit("grid", None), Circuit("feeder-a", "grid", limit_w=22_000),
                          Circuit("feeder-b", "grid", limit_w=11_000)),
                stations=(Station("CP1", "feeder-a", (Connector(1),)),
                          Station("CP2", "feeder-a", (Connector(1),)),
                          Station("CP3", "feeder-b", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


def one_grid(limit_w=22_000) -> Site:
    return Site(name="trust-dr", circuits=(Circuit("grid", None, limit_w=limit_w),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


def big_ev() -> SimEV:
    return SimEV(capacity_wh=100_000, soc=0.1, max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})


@asynccontextmanager
async def trust_site(site, tmp_path, clock, fleet_kw=None, **server_kw):
    """`site_e2e.server_and_fleet` with this file's controller settings."""
    server_kw.setdefault("settings", SETTINGS)
    async with server_and_fleet(site, tmp_path, clock, fleet_kw=fleet_kw, **server_kw) as both:
        yield both


@asynccontextmanager
async def cp1_on_a_tx_profile(tmp_path, call_timeout_s: float, cp1_cap_w: float | None = None):
    """CP1 (2.0.1) and CP2 charging under one 22 kW grid, CP1 on a TxProfile (what CP2's
    7 kW leaves, or `cp1_cap_w`), every plan dispatched: (clock, site, server, fleet, cp1).
    Set up under dispatch's default call timeout; `call_timeout_s` from the yield on, when
    the test's faults begin (site_e2e.shorten_call_timeout says why)."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = one_grid(22_000)
    async with trust_site(site, tmp_path, clock, fleet_kw={"ocpp_versions": {"CP1": "2.0.1"}},
                          dispatch=DispatchSettings(retries=0)) as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        for sid in fleet.stations:
            assert await fleet.plug_in(sid, 1, big_ev(), "DRIVER-1")
        # both sessions known to the controller before their caps: a cap set earlier was
        # dropped with the sessions it did not know yet (closed_loop.forget_ended), and CP1
        # stayed on a 22 kW TxProfile - "CP1 on its TxProfile" under 6 kW never came (5 of 24
        # copies at load 17-20)
        await wait_until(lambda: controller.plan is not None
                         and all(ref in controller.plan.connectors for ref in (REF1, REF2)),
                         10, "both sessions planned")
        controller.ev_cap_w[REF2] = 7_000.0
        if cp1_cap_w is not None:
            controller.ev_cap_w[REF1] = cp1_cap_w
        controller.request_replan("test")
        cp1 = fleet.station("CP1")
        on_plan = (lambda w: w > 14_000) if cp1_cap_w is None else \
            (lambda w: w < cp1_cap_w + 1_000)
        await wait_until(lambda: any(p.purpose == "TxProfile" for p in cp1.profiles.profiles)
                         and on_plan(limit_w(fleet, REF1)), 10, "CP1 on its TxProfile")
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        shorten_call_timeout(server, call_timeout_s)
        yield clock, site, server, fleet, cp1

def limit_w(fleet, ref, at=None):
    station = fleet.station(ref.station_id)
    return connector_limit_w(station, ref.connector_id, at or station.clock.now())[0]


async def both_charging_at_11_kw(controller, fleet, clock):
    """CP1 and CP2 booted, a car on each, both planned and limited to 11 kW."""
    await fleet.start(wait_booted_s=10)
    for sid in fleet.stations:
        assert await fleet.plug_in(sid, 1, big_ev(), "DRIVER-1")
    await wait_until(lambda: controller.plan is not None
                     and len(controller.plan.connectors) == 2, 10, "both planned")
    controller.ev_cap_w.update({REF1: 11_000.0, REF2: 11_000.0})
    controller.request_replan("test")
    # (no TxProfile where the plan equals the fail-safe share: the limits say it; the
    # fail-safe shares are 11 / 11 kW too, so the plan must say it first, or the next
    # re-plan swallows this one and the first plan's round is still out)
    await wait_until(lambda: all(abs(controller.plan.connectors[ref].power_at(
        clock.now()) - 11_000) < 100 for ref in (REF1, REF2)), 10, "11 / 11 kW planned")
    await wait_until(lambda: abs(limit_w(fleet, REF1) - 11_000) < 100
                     and abs(limit_w(fleet, REF2) - 11_000) < 100, 10, "11 / 11 kW")


async def start_three(server, fleet, clock):
    """CP1 and CP2 share feeder A at ~11 kW each; CP3 is held at 5 kW (a closed-loop cap)."""
    controller = server.controller
    await fleet.start(wait_booted_s=10)
    for sid in fleet.stations:
        assert await fleet.plug_in(sid, 1, big_ev(), "DRIVER-1")
    await wait_until(lambda: all(ref in (controller.plan.connectors if controller.plan else {})
                                 for ref in (REF1, REF2, REF3)), 10, "all three planned")
    # closed-loop caps (what each car takes) make the split deterministic
    controller.ev_cap_w.update({REF1: 11_000.0, REF2: 11_000.0, REF3: 5_000.0})
    controller.request_replan("test")
    # (a connector whose plan equals its fail-safe share gets no TxProfile: the limits say it)
    await wait_until(lambda: abs(limit_w(fleet, REF1) - 11_000) < 100
                     and abs(limit_w(fleet, REF2) - 11_000) < 100
                     and abs(limit_w(fleet, REF3) - 5_000) < 300, 10,
                     "11 / 11 / 5 kW installed")


async def test_a_rejected_decrease_holds_the_increases_under_its_feeder_only(tmp_path):
    clock = AcceleratedClock(T0, speed=SPEED)
    site = two_feeders()
    async with trust_site(site, tmp_path, clock,
                          dispatch=DispatchSettings(call_timeout_s=5.0)) as (server, fleet):
        controller = server.controller
        await start_three(server, fleet, clock)
        before_w = limit_w(fleet, REF1)
        watch = InstallWatch(site, fleet, controller.limits, clock)
        fleet.station("CP1").quirks = Quirks(reject_all_profiles=True)
        # CP1's car takes less: CP1 goes down, CP2 may take the rest of feeder A; CP3's
        # cap is lifted (feeder B, unrelated)
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2], controller.ev_cap_w[REF3]
        controller.request_replan("test")
        await wait_until(lambda: limit_w(fleet, REF3) > 10_000, 10, "CP3 raised")
        await wait_until(lambda: REF1 in controller.plan.fixed_w, 10, "CP1 re-planned")
        await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        # CP1 still draws what its old profile allows: planned at that, not at its maximum
        assert abs(controller.plan.fixed_w[REF1] - before_w) < 100, controller.plan.fixed_w
        assert limit_w(fleet, REF2) <= 22_000 - before_w + 1
        assert not watch.excesses, watch.excesses[:5]
        assert watch.installs > 0


async def test_a_silent_station_holds_its_subtree_not_the_others(tmp_path):
    clock = AcceleratedClock(T0, speed=SPEED)
    site = two_feeders()
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        await start_three(server, fleet, clock)
        watch = InstallWatch(site, fleet, controller.limits, clock)
        cp1 = fleet.station("CP1")
        cp1.quirks = Quirks(silent_profiles=True)
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2], controller.ev_cap_w[REF3]
        controller.request_replan("test")
        # CP3 (feeder B) does not wait for CP1's answer; CP2 (feeder A) does
        await wait_until(lambda: limit_w(fleet, REF3) > 10_000, 10, "CP3 raised")
        assert limit_w(fleet, REF2) <= 11_000 + 1
        assert not cp1.profile_answers.is_set()
        cp1.quirks = Quirks()
        cp1.profile_answers.set()        # CP1 answers (late) and takes its decrease
        await wait_until(lambda: limit_w(fleet, REF2) > 15_000, 10, "CP2 raised after")
        assert limit_w(fleet, REF1) < 5_000
        assert not watch.excesses, watch.excesses[:5]


async def test_a_profile_that_raises_now_and_lowers_later_waits_for_the_decreases(tmp_path):
    """Inside a 22 kW DR window on a 50 kW grid, with a deeper one announced."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = one_grid(50_000)
    # CP2 stays silent far longer than the bound on CP1's lowering below
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        controller.limits.add_event(DemandResponseEvent(
            "dr-now", T0 - timedelta(minutes=1), T0 + timedelta(hours=2), limit_w=22_000))
        await both_charging_at_11_kw(controller, fleet, clock)
        # checked now and inside the coming event, at every profile installed
        start = clock.now() + timedelta(minutes=5)
        watch = InstallWatch(site, fleet, controller.limits, clock,
                             moments=(start + timedelta(seconds=30),
                                      start + timedelta(minutes=9)))
        controller.limits.add_event(DemandResponseEvent(
            "dr-mixed", start, start + timedelta(minutes=10), limit_w=8_000))
        # CP2 goes down now and later; CP1 goes up now (CP2's room) and down in the event.
        # CP2 answers only when released: CP1's raise must wait for it, its lowering not.
        cp2 = fleet.station("CP2")
        cp2.quirks = Quirks(silent_profiles=True)
        controller.ev_cap_w[REF2] = 3_000.0
        del controller.ev_cap_w[REF1]
        controller.request_replan("test")
        inside = start + timedelta(seconds=60)
        # a decrease goes out at once, whatever CP2 (or an older round's request to it)
        # is doing: the bound is a re-plan and one answer, nowhere near CP2's 60 s. (It
        # was 10 s, then 30 s, and failed one suite run in four: a round waited for all
        # its decreases, and an older round's unanswered decrease at CP2 held this one.)
        await wait_until(lambda: limit_w(fleet, REF1, inside) < 8_000, 5,
                         "CP1 lowered inside the event")
        assert limit_w(fleet, REF1) <= 11_000 + 1
        cp2.quirks = Quirks()
        cp2.profile_answers.set()
        await wait_until(lambda: limit_w(fleet, REF1) > 15_000, 10, "CP1 raised now")
        inside = start + timedelta(seconds=60)
        assert limit_w(fleet, REF1, inside) + limit_w(fleet, REF2, inside) <= 8_000 + 1
        assert not watch.excesses, watch.excesses[:5]


async def test_increases_wait_the_settle_time_after_the_decreases_are_acknowledged(tmp_path):
    """A raise comes into force no sooner than the settle time after the decreases it relies
    on were acknowledged - and no later than its own hold after it is sent (edges.held): it
    is sent as soon as they are acknowledged, not held back a settle time first and then
    again by its own hold (it was in force settle + hold after them). A raise that relies on
    no decrease (another subtree) is not held back by them."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = two_feeders()
    dispatch = DispatchSettings(call_timeout_s=5.0, settle_s=45.0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        await start_three(server, fleet, clock)
        # (site time, station, the installed schedule's limits for the next two minutes)
        installs = []
        for station in fleet.stations.values():
            station.on_profiles_changed = lambda st: installs.append(
                (clock.now(), st.spec.station_id, [
                    limit_w(fleet, ConnectorRef(st.spec.station_id, 1),
                            clock.now() + timedelta(seconds=s)) for s in range(120)]))
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2], controller.ev_cap_w[REF3]
        controller.request_replan("test")
        await wait_until(lambda: limit_w(fleet, REF2, clock.now() + timedelta(seconds=119))
                         > 15_000, 10, "CP2 raised")
        lowered = max(at for at, sid, ws in installs if sid == "CP1" and ws[0] < 5_000)
        sent, in_force = min((at, at + timedelta(seconds=next(s for s, w in enumerate(ws)
                                                              if w > 15_000)))
                             for at, sid, ws in installs if sid == "CP2" and max(ws) > 15_000)
        raise_delay_s = 45 + dispatch.edge_margin_s
        assert (in_force - lowered).total_seconds() >= 45.0 - 0.5
        # sent once CP1's decrease was acknowledged: in force its own hold after that
        assert (sent - lowered).total_seconds() < 45.0
        assert (in_force - sent).total_seconds() <= raise_delay_s + 1
        # CP3 depends on no decrease (feeder B, no grid limit): it was not held back by them
        sent3 = min(at for at, sid, ws in installs if sid == "CP3" and max(ws) > 10_000)
        assert (sent3 - lowered).total_seconds() < 45.0


async def test_an_unanswered_increase_counts_as_installed(tmp_path):
    """The station may have installed the raise it did not answer: it is planned at that."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = two_feeders()
    dispatch = DispatchSettings(call_timeout_s=1.0, retries=0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        cp2 = fleet.station("CP2")
        await start_three(server, fleet, clock)
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2]
        cp2.quirks = Quirks(silent_profiles=True)   # hangs on the raise
        controller.request_replan("test")
        await wait_until(lambda: REF2 in controller.uncontrollable, 10, "CP2 unanswered")
        await wait_until(lambda: controller.plan is not None
                         and REF2 in controller.plan.fixed_w, 10, "CP2 re-planned")
        assert controller.plan.fixed_w[REF2] > 15_000, controller.plan.fixed_w
        assert controller.plan.connectors[REF1].power_at(clock.now()) \
            <= 22_000 - controller.plan.fixed_w[REF2] + 1


async def test_a_newer_plans_decrease_does_not_wait_for_a_silent_stations_older_one(tmp_path):
    """A round used to wait for every decrease it sent: while CP2 sat on an older round's
    decrease (call timeout x attempts: 20 s real by default), a DR event's decrease for CP1
    waited too. The order is forced: CP2's request is in flight and unanswered, then the event
    comes; CP1 must be lowered before CP2 answers."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = one_grid(22_000)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        cp2 = fleet.station("CP2")
        await both_charging_at_11_kw(controller, fleet, clock)
        cp2.quirks = Quirks(silent_profiles=True)
        controller.ev_cap_w[REF2] = 3_000.0      # CP2 goes down: a decrease, unanswered
        controller.request_replan("test")
        await wait_until(lambda: cp2.profiles_held > 0, 10, "CP2's decrease unanswered")
        now = clock.now()
        controller.limits.add_event(DemandResponseEvent(
            "dr-zero-notice", now - timedelta(minutes=1), now + timedelta(hours=1),
            limit_w=10_000))
        controller.request_replan("limit")
        # CP2 is still planned at 3 kW (it has not failed to answer yet): CP1 <= 7 kW
        await wait_until(lambda: limit_w(fleet, REF1) <= 7_000 + 1, 5,
                         "CP1 lowered while CP2 is silent")
        # (the site is over the zero-notice event while CP2 keeps its 11 kW: nothing
        # dispatch can do; CP1 is what it can, and did at once)
        assert not cp2.profile_answers.is_set()


async def test_an_increase_waiting_when_a_limit_is_lowered_is_not_sent(tmp_path):
    """An operator's cap lowered at once: the re-plan takes a moment, and an increase of the
    old plan that finished waiting meanwhile went out, raising a site already over its new cap
    (seen in test_site_e2e's zero-notice test, about one run in three). The order is forced:
    CP2's increase waits for CP1's decrease, which CP1 holds; the cap is lowered and CP1
    answers in one step, before any re-plan."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = two_feeders()
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        dispatcher = server.dispatcher
        cp1 = fleet.station("CP1")
        await start_three(server, fleet, clock)
        await wait_until(lambda: dispatcher.rounds_running == 0, 10, "rounds over")
        cp1.quirks = Quirks(silent_profiles=True)
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2]
        controller.request_replan("test")
        await wait_until(lambda: cp1.profiles_held > 0, 10, "CP1's decrease held")
        assert limit_w(fleet, REF2) <= 11_000 + 1      # waiting for CP1's decrease
        controller.limits.set_operator_cap(12_000.0, since=clock.now())
        cp1.quirks = Quirks()
        cp1.profile_answers.set()
        await wait_until(lambda: dispatcher.rounds_running == 0, 10, "the round over")
        assert limit_w(fleet, REF2) <= 11_000 + 1


async def test_a_stations_decreases_go_out_before_the_other_stations_are_compared(tmp_path,
                                                                                  monkeypatch):
    """A DR event's round compared every station (~1 ms each: 0.5 s at 500 stations) before
    the first decrease went out (issue 10). Each station's decreases now start as soon as its
    comparison finds them. The order is forced, not timed: the round yields to the loop after
    every station it compares (TURN_S < 0), and a log records each comparison and each
    decrease as it starts; CP1's decrease must start before CP2 is compared."""
    from smartcharge.site import dispatch_round
    monkeypatch.setattr(dispatch_round, "TURN_S", -1.0)
    clock = AcceleratedClock(T0, speed=SPEED)
    site = one_grid(22_000)
    async with trust_site(site, tmp_path, clock) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await both_charging_at_11_kw(controller, fleet, clock)
        await wait_until(lambda: dispatcher.rounds_running == 0, 10, "rounds over")
        log: list[tuple[str, str]] = []
        work, run_items, dispatch_plan = (dispatcher._work, dispatcher._run_items,
                                          dispatcher.dispatch_plan)

        def logged_work(control, plan, cplans):
            log.append(("compared", control.station_id))
            return work(control, plan, cplans)

        async def logged_run_items(control, items, *, decrease, **kwargs):
            # a lowered default under a plan in force waits, by design, behind every
            # station's decreases (dispatch_round.is_later): not one that goes out at once
            if decrease and not all(dispatch_round.is_later(item) for item in items):
                log.append(("decrease", control.station_id))
            return await run_items(control, items, decrease=decrease, **kwargs)

        async def logged_dispatch_plan(plan):
            log.append(("round", ""))
            return await dispatch_plan(plan)

        monkeypatch.setattr(dispatcher, "_work", logged_work)
        monkeypatch.setattr(dispatcher, "_run_items", logged_run_items)
        monkeypatch.setattr(dispatcher, "dispatch_plan", logged_dispatch_plan)
        now = clock.now()
        controller.limits.add_event(DemandResponseEvent(
            "dr-now", now - timedelta(minutes=1), now + timedelta(hours=1), limit_w=10_000))
        controller.request_replan("limit")
        # both lowered under the event's 10 kW (the split is the optimizer's: 5 + 5 kW, or
        # 5.86 + 4.14 kW with each running car kept at its minimum, optimizer/running.py)
        await wait_until(lambda: limit_w(fleet, REF1) < 11_000 and limit_w(fleet, REF2) < 11_000
                         and limit_w(fleet, REF1) + limit_w(fleet, REF2) <= 10_000 + 2, 10,
                         "both lowered")
        # every decrease sent at once against the comparison that came after its own
        # station's in its round (in which round CP1's plan is lowered depends on the
        # machine's speed: a round may first lower only its fail-safe default, which waits)
        before_the_next, compared, downs = 0, [], set()
        for kind, sid in log:
            if kind == "round":
                compared, downs = [], set()
            elif kind == "compared":
                compared.append(sid)
            elif kind == "decrease" and sid not in downs and sid in compared:   # (not busy)
                downs.add(sid)
                assert compared[-1] == sid, log   # no other station compared since its own
                before_the_next += int(len(compared) == 1)   # and the other one still waits
        assert before_the_next >= 1, log


async def test_a_limit_lowered_while_an_increase_is_answered_stops_the_next_increase(tmp_path):
    """One station, two connectors, both raised by one plan: the first raise is on its way
    (the station has not answered) when a DR event lowers the limit now. That one cannot be
    called back; the second must not follow it (it went out after the first's answer)."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = Site(name="trust-two", circuits=(Circuit("grid", None, limit_w=30_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))
    one, two = ConnectorRef("CP1", 1), ConnectorRef("CP1", 2)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        for ref in (one, two):
            assert await fleet.plug_in("CP1", ref.connector_id, big_ev(), "DRIVER-1")
        await wait_until(lambda: controller.plan is not None
                         and len(controller.plan.connectors) == 2, 10, "both planned")
        controller.ev_cap_w.update({one: 4_000.0, two: 4_000.0})
        controller.request_replan("test")
        await wait_until(lambda: all(3_500 < limit_w(fleet, r) < 4_500 for r in (one, two)),
                         10, "4 / 4 kW installed")
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        cp1 = fleet.station("CP1")
        cp1.quirks = Quirks(silent_profiles=True)
        raised_after_event = []
        event_added = asyncio.Event()

        def installed(station) -> None:
            if event_added.is_set():
                raised_after_event.extend(
                    ref for ref in (one, two) if limit_w(fleet, ref) > 4_500)
        cp1.on_profiles_changed = installed
        controller.ev_cap_w.update({one: 11_000.0, two: 11_000.0})   # both raised
        controller.request_replan("test")
        await wait_until(lambda: cp1.profiles_held >= 1, 10, "the first raise on its way")
        event_added.set()
        controller.limits.add_event(DemandResponseEvent(
            "dr-now", clock.now() - timedelta(seconds=1), clock.now() + timedelta(hours=1),
            limit_w=8_000))
        cp1.quirks = Quirks()
        cp1.profile_answers.set()
        await wait_until(lambda: limit_w(fleet, one) + limit_w(fleet, two) <= 8_000 + 1,
                         10, "under the event's limit")
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        assert len(set(raised_after_event)) <= 1, raised_after_event


async def test_an_idle_share_that_lowers_after_the_old_expiry_goes_before_the_raises(tmp_path):
    """Every plan and idle schedule ends at one common instant E1; when it moves on to E2, the
    car's plan is re-sent to E2 and an idle connector's share too. The car's plan raises it in
    [E1, E2) (installed there: its fail-safe default); the idle share of 0 lowers the idle
    connector there (installed: its idle schedule of 0 until E1, then its fail-safe default).
    That share went out as an increase (0 is not below the 0 sent before), after the raise: in
    between, and for ever if the second request never came, the station allowed the car its
    plan and the idle connector its default from E1 on - over the grid limit. (Seen in the demo
    under CPU load: idle connectors whose cars the controller had not yet heard of.)"""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = Site(name="trust-expiry", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))
    car, idle = ConnectorRef("CP1", 1), ConnectorRef("CP1", 2)
    dispatch = DispatchSettings(call_timeout_s=5.0, profile_lifetime_s=300.0,
                                refresh_before_s=200.0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")
        # the car takes the whole limit; the idle connector's share is 0
        await wait_until(lambda: limit_w(fleet, car) > 21_000 and limit_w(fleet, idle) < 100,
                         10, "22 kW for the car, 0 for the idle connector")
        await wait_until(lambda: dispatcher.idle, 10, "dispatched")
        first_end = dispatcher.expiry
        after_end = first_end + timedelta(seconds=30)
        # the fail-safe defaults hold from E1 on: under the limit together
        assert limit_w(fleet, car, after_end) + limit_w(fleet, idle, after_end) <= 22_000 + 1
        watch = InstallWatch(site, fleet, controller.limits, clock, moments=(after_end,))
        await wait_until(lambda: clock.now() > first_end - timedelta(seconds=190), 10,
                         "the common end near")
        controller.request_replan("test")
        await wait_until(lambda: dispatcher.expiry > first_end and dispatcher.idle, 10,
                         "every profile re-sent to the new end")
        assert limit_w(fleet, car, after_end) > 21_000          # the car keeps its 22 kW ...
        assert limit_w(fleet, idle, after_end) < 100            # ... the idle share stays 0
        assert not watch.excesses, watch.excesses[:5]


async def test_a_plan_sent_as_the_default_counts_as_lowered_only_once_the_old_txprofile_is_cleared(
        tmp_path):
    """A 2.0.1 station refuses CP1's lower TxProfile and takes the plan as the EVSE's default
    instead; its old, higher TxProfile overrules any default until it is cleared. The clear
    went unanswered, yet dispatch counted the decrease as done and raised CP2 into the room
    CP1 still held. Until the clear is acknowledged CP1 may draw what its old TxProfile
    allows: CP2 must wait."""
    async with cp1_on_a_tx_profile(tmp_path, 1.0) as set_up:
        clock, site, server, fleet, cp1 = set_up
        controller = server.controller
        watch = InstallWatch(site, fleet, controller.limits, clock)
        cp1.quirks = Quirks(reject_tx_profiles=True, silent_clears=True)
        controller.ev_cap_w[REF1] = 3_000.0     # CP1 down, CP2 may take the rest
        controller.ev_cap_w.pop(REF2, None)
        controller.request_replan("test")
        await wait_until(lambda: REF1 in controller.plan.fixed_w or watch.excesses, 10,
                         "CP1 planned at what its old TxProfile allows")
        assert not watch.excesses, watch.excesses[:5]
        await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        assert limit_w(fleet, REF1) > 14_000          # the old TxProfile still overrules
        assert limit_w(fleet, REF1) + limit_w(fleet, REF2) <= 22_000 + 1
        assert not watch.excesses, watch.excesses[:5]


async def test_an_unanswered_clear_under_a_raise_counts_the_plan_as_what_may_apply(tmp_path):
    """The raise's twin: CP1 sits on a low TxProfile; its raise is refused as a TxProfile and
    taken as the EVSE's default, and the old TxProfile's clear goes unanswered. The station
    may have cleared it (the higher default then applies), so CP1 must be counted at the plan
    (the idle layer the failed clear leaves), not at the old TxProfile, or CP2 gets room CP1
    takes once the clear lands. (Written from a review of `_accepted`; it passed first.)"""
    async with cp1_on_a_tx_profile(tmp_path, 1.0, cp1_cap_w=5_000.0) as set_up:
        clock, site, server, fleet, cp1 = set_up
        controller = server.controller
        cp1.quirks = Quirks(reject_tx_profiles=True, silent_clears=True)
        controller.ev_cap_w[REF1] = 15_000.0    # CP1 up: refused, sent as the default
        controller.request_replan("test")
        await wait_until(lambda: REF1 in controller.plan.fixed_w, 10,
                         "CP1 uncontrollable after the unanswered clear")
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        controller.ev_cap_w.pop(REF2, None)     # CP2 may take whatever CP1 leaves
        controller.request_replan("test")
        await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        cp1.profile_answers.set()               # the clear lands: CP1's default applies
        await wait_until(lambda: not any(p.purpose == "TxProfile"
                                         for p in cp1.profiles.profiles), 10, "cleared")
        assert limit_w(fleet, REF1) + limit_w(fleet, REF2) <= 22_000 + 1, \
            (limit_w(fleet, REF1), limit_w(fleet, REF2))


async def test_a_clear_cut_off_by_a_dropped_connection_leaves_the_old_txprofile_counted(
        tmp_path):
    """CP1's decrease is refused as a TxProfile and taken as the EVSE's default; the old,
    higher TxProfile's clear never comes back because the connection drops. The station keeps
    charging under that TxProfile: what dispatch counts CP1 at must stay the old TxProfile,
    not the lower default (the fallback of an offline connector is what it was last told)."""
    async with cp1_on_a_tx_profile(tmp_path, 5.0) as set_up:
        clock, site, server, fleet, cp1 = set_up
        controller = server.controller
        control = server.dispatcher.stations["CP1"]
        told = control.sent[1]                  # the 15 kW TxProfile
        cp1.quirks = Quirks(reject_tx_profiles=True, silent_clears=True)
        controller.ev_cap_w[REF1] = 5_000.0     # CP1 down: refused, sent as the default
        controller.request_replan("test")
        await wait_until(lambda: control.sent[1].default, 10, "the plan taken as default")
        await cp1.go_offline()                  # the clear's answer never comes
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        assert control.sent[1] == told           # the old TxProfile, still in force


async def test_a_car_arriving_during_the_solve_keeps_the_idle_share_the_plan_left_it(
        tmp_path, monkeypatch):
    """The picture is taken, the plan solved in a worker thread: a car plugged in meanwhile was
    idle in the picture, and the room it had was given to another car. Its idle share (what the
    plan left it) was dropped - 'it waits for its own plan' - so it kept drawing the share of
    the plan before, and the other car was raised into that room: over the limit until the next
    plan (seen in tests/test_site_e2e.py under CPU load: 44.9 kW installed under a 30 kW cap).
    The order is forced: every solve waits until the test lets it go."""
    import threading

    from smartcharge.site import planner
    clock = AcceleratedClock(T0, speed=SPEED)
    site = one_grid(22_000)
    async with trust_site(site, tmp_path, clock) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")
        await wait_until(lambda: controller.plan is not None
                         and REF1 in controller.plan.connectors, 10, "CP1 planned")
        controller.ev_cap_w[REF1] = 11_000.0
        controller.request_replan("test")
        # CP1 at 11 kW; CP2, idle, may give a car arriving the other 11 kW
        await wait_until(lambda: controller.plan is not None
                         and REF1 in controller.plan.connectors
                         and abs(controller.plan.idle_w.get(REF2, 0) - 11_000) < 100
                         and dispatcher.idle, 10, "planned 11 / 11 kW and dispatched")
        assert abs(limit_w(fleet, REF1) - 11_000) < 100
        # (CP2's idle share rose from the 0 W of CP1's first plan: its raise is held by its
        # schedule a raise delay after it was sent, edges.held)
        await wait_until(lambda: abs(limit_w(fleet, REF2) - 11_000) < 100, 10,
                         "CP2's idle share in force")
        make_plan, solves = planner.make_plan, []

        def held(*args, **kwargs):   # in the worker thread
            solve = threading.Event()
            solves.append(solve)
            solve.wait(timeout=30)
            return make_plan(*args, **kwargs)
        monkeypatch.setattr(planner, "make_plan", held)
        watch = InstallWatch(site, fleet, controller.limits, clock)
        controller.ev_cap_w.pop(REF1, None)      # CP1 may take the whole limit ...
        controller.request_replan("test")
        await wait_until(lambda: len(solves) == 1, 10, "the picture taken, the solve held")
        assert await fleet.plug_in("CP2", 1, big_ev(), "DRIVER-1")   # ... as CP2 arrives
        await wait_until(lambda: REF2 in controller.state.sessions, 10, "CP2's session known")
        solves[0].set()
        await wait_until(lambda: controller.plan.connectors[REF1].power_at(clock.now())
                         > 20_000, 10, "CP1 planned at 22 kW without CP2")
        await wait_until(lambda: dispatcher.idle, 10, "that plan dispatched")
        assert not watch.excesses, watch.excesses[:5]
        monkeypatch.setattr(planner, "make_plan", make_plan)
        for solve in solves:
            solve.set()
        await wait_until(lambda: REF2 in controller.plan.connectors and dispatcher.idle, 10,
                         "CP2 planned and dispatched")
        assert limit_w(fleet, REF1) + limit_w(fleet, REF2) <= 22_000 + 1
        assert not watch.excesses, watch.excesses[:5]


async def test_an_older_plans_increase_landing_late_never_overwrites_a_newer_decrease(tmp_path):
    """The order the demo's depot-b excess was first blamed on, forced: an older plan's
    increase for CP2 is in flight (CP2 holds its answer) when a newer plan lowers CP2 and
    raises CP1 into that room. The stale request lands after the newer round has started;
    the newer round compares CP2 only once that request is answered (its lock), so CP2's
    decrease goes out after it and CP1's raise waits for that decrease. At no install do the
    stations' limits exceed the grid's."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = one_grid(22_000)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        cp2 = fleet.station("CP2")
        await both_charging_at_11_kw(controller, fleet, clock)
        await wait_until(lambda: dispatcher.idle, 10, "rounds over")
        # every install checked now and at every later change of what is installed
        watch = InstallWatch(site, fleet, controller.limits, clock, ahead_s=1800.0)
        # the older plan: CP1 down (acknowledged), CP2 up - its raise held at CP2
        cp2.quirks = Quirks(silent_profiles=True)
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2]
        controller.request_replan("older")
        await wait_until(lambda: cp2.profiles_held > 0, 10, "the older plan's raise held")
        assert limit_w(fleet, REF1) <= 4_140 + 100
        # the newer plan: CP2 down, CP1 up into its room
        controller.ev_cap_w[REF2] = 3_000.0
        del controller.ev_cap_w[REF1]
        controller.request_replan("newer")
        await wait_until(lambda: controller.plan.connectors[REF1].power_at(clock.now())
                         > 15_000, 10, "the newer plan made")
        await wait_until(lambda: dispatcher._latest is controller.plan
                         and not dispatcher._wake.is_set(), 10, "the newer round started")
        cp2_w = []   # CP2's limit at each profile it installs, in order
        watched = cp2.on_profiles_changed   # the watch's hook, kept

        def cp2_changed(station):
            # what it installed lets it draw once a raise's hold after sending is over
            cp2_w.append(limit_w(fleet, REF2, clock.now() + timedelta(seconds=15)))
            watched(station)
        cp2.on_profiles_changed = cp2_changed
        assert limit_w(fleet, REF1) <= 4_140 + 100    # CP1 waits for CP2's decrease
        cp2.quirks = Quirks()
        cp2.profile_answers.set()                      # the stale raise lands now
        await wait_until(lambda: limit_w(fleet, REF1) > 15_000, 10, "CP1 raised")
        await wait_until(lambda: dispatcher.idle, 10, "every plan dispatched")
        assert limit_w(fleet, REF2) <= 4_140 + 100
        assert not watch.excesses, watch.excesses[:5]
        # the stale raise did land first, and the newer decrease after it
        assert cp2_w[0] > 15_000 and cp2_w[-1] <= 4_140 + 100, cp2_w


async def test_a_probe_never_raises_a_connector_that_took_its_decrease_late(tmp_path):
    """CP2 does not answer its decrease in time: it is planned at what it may draw under its
    old profile and probed now and then. It took the decrease all the same, late; a probe at
    its old level raised it again - with nothing waiting for it - while a zero-notice cap had
    the site over (seen as a rare raise in test_site_e2e's zero-notice test). A probe offers
    a connector at most its minimum: if it obeys it is controlled again, and the re-plan that
    follows raises it like any increase, after the decreases it depends on."""
    clock = AcceleratedClock(T0, speed=SPEED)
    site = one_grid(22_000)
    dispatch = DispatchSettings(call_timeout_s=1.0, retries=0, probe_every_s=60.0)
    async with trust_site(site, tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        cp2 = fleet.station("CP2")
        await both_charging_at_11_kw(controller, fleet, clock)
        await wait_until(lambda: dispatcher.idle, 10, "rounds over")
        cp2.quirks = Quirks(silent_profiles=True)
        controller.ev_cap_w[REF2] = 3_000.0        # CP2 down: unanswered in time
        controller.request_replan("test")
        await wait_until(lambda: REF2 in controller.uncontrollable, 10, "CP2 unanswered")
        await wait_until(lambda: controller.plan is not None and REF2 in controller.plan.fixed_w
                         and dispatcher.idle, 10, "CP2 planned at its old 11 kW")
        controller.limits.set_operator_cap(9_000.0, since=clock.now())   # at once, under CP2
        await wait_until(lambda: dispatcher._latest is controller.plan and dispatcher.idle
                         and dispatcher._probed.get(REF2) is not None, 10, "CP2 probed")
        watch = InstallWatch(site, fleet, controller.limits, clock, zero_notice=True)
        cp2.quirks = Quirks()
        cp2.profile_answers.set()     # the late decrease lands, then whatever followed it
        await wait_until(lambda: cp2.profiles_held == 0 and dispatcher.idle, 10, "answered")
        await wait_until(lambda: REF2 not in controller.uncontrollable
                         and dispatcher.idle, 10, "CP2 controlled again")
        assert not watch.excesses, watch.excesses[:5]
        assert limit_w(fleet, REF1) + limit_w(fleet, REF2) <= 9_000 + 1
