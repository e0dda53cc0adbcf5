"""Where OpenADR events land: the site's stored DR events (reconciled per event: a modification
that drops an interval cancels its piece, a cancellation lifts every piece), prices in the
optimizer's cost term. A real SQLite store, the real controller, a manual clock."""

from datetime import UTC, datetime, timedelta

import numpy as np

from smartcharge import store_obligations as ob
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, OpenAdrProgram, Site, Station
from smartcharge.openadr import signals as sg
from smartcharge.openadr.sink import OpenAdrSink
from smartcharge.site.controller import SiteController
from smartcharge.site.obligations import ObligationWriter
from smartcharge.site.prices import Price, SitePrices
from smartcharge.store import SqliteStore

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
PROGRAM = OpenAdrProgram("gac", "3", "http://vtn", "depot", bearer_token="t",
                         randomize_start=False)


def _site() -> Site:
    return Site("s", (Circuit("grid", None, limit_w=40_000.0),),
                (Station("CP1", "grid", (Connector(1),)),))


def _event(intervals, kind=sg.CAPACITY_W, modification=0, cancelled=False):
    return sg.AdrEvent("gac", "e1", modification=modification, cancelled=cancelled,
                       signals=(sg.Signal(kind, tuple(
                           sg.Interval(T0 + timedelta(hours=a), T0 + timedelta(hours=b), v)
                           for a, b, v in intervals)),))


async def test_events_are_stored_modified_and_cancelled_as_a_whole(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        controller = SiteController(_site(), ManualClock(T0))
        sink = OpenAdrSink(controller, ObligationWriter(lambda: store))
        await sink.apply(PROGRAM, _event([(1, 2, 20_000.0), (2, 3, 10_000.0)]))
        stored = {r.event_id: r for r in (await store.run(ob.load)).events}
        assert {k: (r.limit_w, r.cancelled) for k, r in stored.items()} == {
            "openadr:gac/e1": (20_000.0, False), "openadr:gac/e1#1": (10_000.0, False)}
        assert sink.events_in_force(PROGRAM) == {"e1"}
        # a modification with one interval left: the second piece is cancelled
        await sink.apply(PROGRAM, _event([(1, 3, 15_000.0)], modification=1))
        stored = {r.event_id: r for r in (await store.run(ob.load)).events}
        assert (stored["openadr:gac/e1"].limit_w, stored["openadr:gac/e1#1"].cancelled) == (
            15_000.0, True)
        assert controller.effective_limit_at(T0 + timedelta(hours=2.5))[0] == 15_000.0
        # cancelled: every piece lifted
        await sink.apply(PROGRAM, _event([(1, 3, 15_000.0)], modification=2, cancelled=True))
        assert all(e.cancelled for e in controller.limits.events())
        assert controller.effective_limit_at(T0 + timedelta(hours=2))[0] == 40_000.0
        assert sink.events_in_force(PROGRAM) == set()
        # a cancellation is final: the event sent again (a VEN restarted) stays cancelled
        await sink.apply(PROGRAM, _event([(1, 3, 15_000.0)], modification=1))
        assert all(e.cancelled for e in controller.limits.events())
    finally:
        await store.close()


async def test_prices_reach_the_optimizers_cost_term(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        controller = SiteController(_site(), ManualClock(T0))
        sink = OpenAdrSink(controller, ObligationWriter(lambda: store))
        hours = [(h, h + 1, 0.30 if 17 <= 12 + h < 21 else 0.10) for h in range(24)]
        await sink.apply(PROGRAM, _event(hours, kind=sg.PRICE))
        assert controller.limits.events() == []
        starts = [T0 + timedelta(minutes=15 * k) for k in range(96)]
        ends = [s + timedelta(minutes=15) for s in starts]
        prices = controller.prices.per_slot(starts, ends)
        assert prices[0] == 0.10 and prices[4 * 5] == 0.30 and prices[4 * 9] == 0.10
        problem = controller.build_problem(T0)[0]
        assert problem.price_per_kwh is not None and problem.price_per_kwh.max() == 0.30
        shown = controller.snapshot()["prices"]
        assert len(shown) == 24 and shown[0]["source"] == "openadr:gac/e1"
        await sink.lift(PROGRAM, "e1")
        assert controller.prices.per_slot(starts, ends) is None
    finally:
        await store.close()


def test_prices_per_slot_weight_by_time_priority_wins_and_gaps_take_the_mean():
    prices = SitePrices()
    prices.set_source("a", [Price(T0, T0 + timedelta(minutes=30), 0.2, "a", 5),
                            Price(T0 + timedelta(minutes=30), T0 + timedelta(hours=1), 0.4,
                                  "a", 5)])
    prices.set_source("b", [Price(T0 + timedelta(minutes=45), T0 + timedelta(hours=1), 1.0,
                                  "b", 1)])
    hour = [T0, T0 + timedelta(hours=1)]
    values = prices.per_slot(hour, [hour[0] + timedelta(hours=1), hour[1] + timedelta(hours=1)])
    assert np.allclose(values, [(0.2 * 30 + 0.4 * 15 + 1.0 * 15) / 60] * 2)


async def test_a_program_on_a_circuit_limits_that_circuit_and_survives_a_restart(tmp_path):
    from smartcharge.site.restore import restore
    site = Site("s", (Circuit("grid", None, limit_w=40_000.0),
                      Circuit("feeder", "grid", limit_w=30_000.0)),
                (Station("CP1", "feeder", (Connector(1),)),
                 Station("CP2", "grid", (Connector(1),))))
    program = OpenAdrProgram("dso", "3", "http://vtn", "depot", bearer_token="t",
                             circuit="feeder", randomize_start=False)
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        controller = SiteController(site, ManualClock(T0))
        sink = OpenAdrSink(controller, ObligationWriter(lambda: store))
        await sink.apply(program, sg.AdrEvent("dso", "e1", signals=(
            sg.Signal(sg.CAPACITY_W, (sg.Interval(T0, T0 + timedelta(hours=1), 8_000.0),)),
            sg.Signal(sg.SIMPLE, (sg.Interval(T0 + timedelta(hours=1), T0 + timedelta(hours=2),
                                              1.0),)))))
        event = controller.limits.event("openadr:dso/e1")
        assert event.circuit_id == "feeder"
        assert controller.limits.event("openadr:dso/e1#1").limit_w == 0.75 * 30_000.0
        # the grid connection is not limited by it; the feeder is, for exactly its interval
        assert controller.effective_limit_at(T0 + timedelta(minutes=5))[0] == 40_000.0
        problem = controller.build_problem(T0)[0]
        feeder = controller.topology.node_ids.index("feeder")
        assert problem.node_limit_w[feeder, 0] == 8_000.0
        assert problem.node_limit_w[0, 0] == 40_000.0
        restarted = SiteController(site, ManualClock(T0))
        await restore(restarted, store)
        assert restarted.limits.event("openadr:dso/e1").circuit_id == "feeder"
        assert restarted.build_problem(T0)[0].node_limit_w[feeder, 0] == 8_000.0
    finally:
        await store.close()


async def test_the_rest_api_cannot_claim_or_rewrite_an_openadr_event(tmp_path):
    """"openadr:<program>/<event>" names what a VTN sent: a REST client may not create one
    (422) or rewrite one (409); an operator may still cancel one (DELETE)."""
    import aiohttp

    from smartcharge.clock import AcceleratedClock, format_ocpp_time
    from tests.site_e2e import control_server
    site = Site("s", (Circuit("grid", None, limit_w=40_000.0),),
                (Station("CP1", "grid", (Connector(1),)),), utility_tokens=frozenset({"ut"}))
    clock = AcceleratedClock(T0, speed=1.0)
    auth = {"Authorization": "Bearer ut"}
    async with control_server(site, tmp_path / "s.sqlite", clock) as server:
        from smartcharge.site.setup import OBLIGATIONS
        sink = OpenAdrSink(server.controller, server.app[OBLIGATIONS])
        await sink.apply(PROGRAM, _event([(1, 2, 20_000.0)]))
        body = {"start": format_ocpp_time(T0 + timedelta(hours=1)),
                "end": format_ocpp_time(T0 + timedelta(hours=2)), "limit_w": 1_000}
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.post("/api/demand-response/events",
                                 json={**body, "id": "openadr:gac/forged"}, headers=auth) as r:
                assert r.status == 422 and "openadr:" in (await r.json())["detail"]
            async with http.put("/api/demand-response/events/openadr:gac/e1", json=body,
                                headers=auth) as r:
                assert r.status == 409
            assert server.controller.limits.event("openadr:gac/e1").limit_w == 20_000.0
            async with http.delete("/api/demand-response/events/openadr:gac/e1",
                                   headers=auth) as r:
                assert r.status == 200 and (await r.json())["state"] == "cancelled"


async def test_an_event_that_names_one_circuit_limits_that_circuit(tmp_path):
    """2.0b resource_id / 3 RESOURCE_NAME targets naming one of the site's circuits send the
    event's limits there instead of to the program's circuit."""
    from smartcharge.openadr import v3_events
    site = Site("s", (Circuit("grid", None, limit_w=40_000.0),
                      Circuit("feeder", "grid", limit_w=30_000.0)),
                (Station("CP1", "feeder", (Connector(1),)),))
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        controller = SiteController(site, ManualClock(T0))
        sink = OpenAdrSink(controller, ObligationWriter(lambda: store))
        event = {"id": "t1", "targets": [{"type": "RESOURCE_NAME", "values": ["feeder"]}],
                 "intervalPeriod": {"start": "2026-12-05T13:00:00Z", "duration": "PT1H"},
                 "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [2]}]}]}
        await sink.apply(PROGRAM, v3_events.parse_event("gac", event))
        limit = controller.limits.event("openadr:gac/t1")
        assert (limit.circuit_id, limit.limit_w) == ("feeder", 15_000.0)   # 50 % of its cap
        event["id"], event["targets"] = "t2", [{"type": "RESOURCE_NAME", "values": ["pump"]}]
        await sink.apply(PROGRAM, v3_events.parse_event("gac", event))
        assert controller.limits.event("openadr:gac/t2").circuit_id is None   # the program's
    finally:
        await store.close()


def _capacity(program, event_id, priority, a_h, b_h, limit_w):
    return sg.AdrEvent(program, event_id, priority=priority, signals=(sg.Signal(
        sg.CAPACITY_W, (sg.Interval(T0 + timedelta(hours=a_h), T0 + timedelta(hours=b_h),
                                    limit_w),)),))


def _limit_at(controller, hours):
    limit_w, source = controller.effective_limit_at(T0 + timedelta(hours=hours))
    return limit_w, source.id if source else None


async def test_within_a_program_the_higher_priority_event_holds_alone_where_they_overlap(
        tmp_path):
    """The specifications (2.0b eventDescriptor priority, 3 event priority: lower number =
    higher priority): where two events of one program overlap, the higher-priority one holds
    alone - also when it allows more; equal priorities keep the lowest limit. Across programs,
    and against the site's other limits (REST DR events, caps), the lowest limit holds."""
    from smartcharge.site.restore import restore
    dso = OpenAdrProgram("dso", "3", "http://vtn2", "depot", bearer_token="t",
                         randomize_start=False)
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        controller = SiteController(_site(), ManualClock(T0))
        sink = OpenAdrSink(controller, ObligationWriter(lambda: store))
        await sink.apply(PROGRAM, _capacity("gac", "low", 5, 1, 5, 20_000.0))
        await sink.apply(PROGRAM, _capacity("gac", "high", 1, 2, 3, 25_000.0))
        await sink.apply(PROGRAM, _capacity("gac", "same", 5, 3.25, 3.75, 15_000.0))
        await sink.apply(dso, _capacity("dso", "other", 1, 4, 4.5, 30_000.0))
        probes = {1.5: (20_000.0, "openadr:gac/low"),     # the low one alone
                  2.5: (25_000.0, "openadr:gac/high"),    # the higher priority allows more
                  3.1: (20_000.0, "openadr:gac/low"),     # and the low one holds again after
                  3.5: (15_000.0, "openadr:gac/same"),    # equal priority: the lowest
                  4.25: (20_000.0, "openadr:gac/low")}    # another program: the lowest
        assert {h: _limit_at(controller, h) for h in probes} == probes
        # a restart in the middle keeps the resolved set (rebuilt from the store)
        restarted = SiteController(_site(), ManualClock(T0 + timedelta(hours=2.5)))
        await restore(restarted, store)
        assert {h: _limit_at(restarted, h) for h in probes} == probes
        # a REST DR event of the site is not part of any program: the lowest holds
        from smartcharge.site.limits import DemandResponseEvent
        controller.limits.add_event(DemandResponseEvent(
            "dr-1", T0 + timedelta(hours=2), T0 + timedelta(hours=3), limit_w=22_000.0))
        assert _limit_at(controller, 2.5) == (22_000.0, "dr-1")
        controller.limits.cancel_event("dr-1")
        # the higher-priority event cancelled: the low one holds in its window again
        await sink.lift(PROGRAM, "high")
        assert _limit_at(controller, 2.5) == (20_000.0, "openadr:gac/low")
        # a modification that moves the high one: recomputed
        await sink.apply(PROGRAM, _capacity("gac", "low", 0, 1, 5, 20_000.0))
        await sink.apply(PROGRAM, _capacity("gac", "same", 5, 3.25, 3.75, 15_000.0))
        assert _limit_at(controller, 3.5) == (20_000.0, "openadr:gac/low")   # low now higher
    finally:
        await store.close()


async def test_a_higher_priority_simple_level_0_lifts_the_programs_lower_priority_event(
        tmp_path):
    """SIMPLE 0 is normal operation: for its window it replaces a lower-priority event of the
    program (the site's own cap still holds)."""
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        controller = SiteController(_site(), ManualClock(T0))
        sink = OpenAdrSink(controller, ObligationWriter(lambda: store))
        await sink.apply(PROGRAM, sg.AdrEvent("gac", "low", priority=4, signals=(sg.Signal(
            sg.SIMPLE, (sg.Interval(T0 + timedelta(hours=1), T0 + timedelta(hours=4), 2.0),)),)))
        await sink.apply(PROGRAM, sg.AdrEvent("gac", "normal", priority=2, signals=(sg.Signal(
            sg.SIMPLE, (sg.Interval(T0 + timedelta(hours=2), T0 + timedelta(hours=3), 0.0),)),)))
        assert [_limit_at(controller, h)[0] for h in (1.5, 2.5, 3.5)] == [
            20_000.0, 40_000.0, 20_000.0]
    finally:
        await store.close()


async def test_priority_on_a_circuit_and_the_listing_names_the_event_held_back(tmp_path):
    site = Site("s", (Circuit("grid", None, limit_w=40_000.0),
                      Circuit("feeder", "grid", limit_w=30_000.0)),
                (Station("CP1", "feeder", (Connector(1),)),))
    program = OpenAdrProgram("dso", "3", "http://vtn", "depot", bearer_token="t",
                             circuit="feeder", randomize_start=False)
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        controller = SiteController(site, ManualClock(T0 + timedelta(hours=0.75)))
        sink = OpenAdrSink(controller, ObligationWriter(lambda: store))
        await sink.apply(program, _capacity("dso", "low", 3, 0, 2, 8_000.0))
        await sink.apply(program, _capacity("dso", "high", 2, 0.5, 1, 12_000.0))
        starts = [T0 + timedelta(minutes=m) for m in (15, 45, 75)]
        values, sources = controller.limits.circuit_limit_w(
            "feeder", starts, [s + timedelta(minutes=15) for s in starts])
        assert list(values) == [8_000.0, 12_000.0, 8_000.0]
        assert [s.id for s in sources] == ["openadr:dso/low", "openadr:dso/high",
                                           "openadr:dso/low"]
        shown = {e["id"]: e for e in controller.snapshot()["dr_events"]}
        assert shown["openadr:dso/low"]["held_back_by"] == "openadr:dso/high"
        assert "held_back_by" not in shown["openadr:dso/high"]
    finally:
        await store.close()
