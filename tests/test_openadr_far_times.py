"""An OpenADR event at the calendar's far end must not stop control nor reach a station.

The REST API takes times in 1970-2089 only (`api/site_common.py`): a DR event until 9999-12-31
had made every dispatch fail (OverflowError a second after its end) and an event in 2999 sent
fail-safe startPeriods beyond OCPP's 32-bit integers. The VEN is another way in, and took any
time: a VTN's harmless 40 kW event ending 9999-12-31T23:59:59Z made every station's comparison
fail in every round - a real 5 kW event after it was never sent (29.9 kW drawn under it); an
event in 2999 put startPeriods of ~3.07e10 s into the stations' TxDefaultProfiles (found by the
session's review with a real 2.0b VTN). Any version's intervals are now held to the same
calendar (`signals.map_event`): one starting in 2090 or later asks for nothing (a note says
so), one ending later holds until 2090 - "until further notice" in a 32-bit startPeriod."""

from datetime import UTC, datetime, timedelta

from smartcharge.clock import TIMES_UNTIL
from smartcharge.openadr import v3_events
from smartcharge.openadr.signals import (CAPACITY_W, AdrEvent, Interval, Signal,
                                         map_event)
from tests.site_e2e import wait_until
from tests.test_openadr_2b import _clock, _profiles_sum_w, vtn_and_site_online

INT32_MAX = 2 ** 31 - 1


def _event(*intervals: Interval) -> AdrEvent:
    return AdrEvent(program="peak", event_id="e", signals=(Signal(CAPACITY_W, intervals),))


def test_intervals_beyond_the_calendar_are_held_to_it():
    far = datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    mapping = map_event(_event(Interval(far, far + timedelta(hours=1), 5_000.0)),
                        cap_w=40_000.0, levels_w={}, randomize=False)
    assert mapping.limits == () and any("outside 1970-2089" in note for note in mapping.notes)
    long = map_event(_event(Interval(now, datetime(2999, 1, 1, tzinfo=UTC), 5_000.0)),
                     cap_w=40_000.0, levels_w={}, randomize=False)
    assert [(e.start, e.end) for e in long.limits] == [(now, TIMES_UNTIL)]
    # with a randomised start too (the shift was added to 9999-12-31T23:59:59 unchecked)
    shifted = AdrEvent(program="peak", event_id="e", randomize_s=3600.0,
                       signals=(Signal(CAPACITY_W, (Interval(now, far + timedelta(hours=1),
                                                             5_000.0),)),))
    assert map_event(shifted, cap_w=40_000.0, levels_w={}).limits[0].end <= TIMES_UNTIL


def test_an_openadr3_event_at_the_calendars_end_asks_for_nothing():
    event = {"id": "e", "programID": "p", "intervalPeriod": {
        "start": "9999-12-31T22:59:59Z", "duration": "PT1H"},
        "intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT",
                                              "values": [5.0]}]}],
        "payloadDescriptors": [{"payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}]}
    parsed = v3_events.parse_event("peak", event)
    assert map_event(parsed, cap_w=40_000.0, levels_w={}, randomize=False).limits == ()


async def test_a_far_event_from_the_vtn_leaves_the_next_event_controlled(tmp_path):
    clock = _clock()
    async with vtn_and_site_online(tmp_path, clock) as (vtn, server, ven, fleet, monitor):
        controller = server.controller
        vtn.capacity_event("far", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC),
                           minutes=60, limit_kw=40.0)
        vtn.capacity_event("y2999", datetime(2999, 1, 1, tzinfo=UTC), minutes=60,
                           limit_kw=5.0)
        start = clock.now() + timedelta(minutes=6)
        vtn.capacity_event("real", start, minutes=10, limit_kw=5.0)
        await wait_until(lambda: controller.limits.event("openadr:peak/real") is not None,
                         15, "the real event taken")
        at = start + timedelta(minutes=1)
        await wait_until(lambda: _profiles_sum_w(fleet, at) <= 5_000 + 1, 15,
                         "the stations' profiles under the real event")
        assert controller.limits.event("openadr:peak/far") is None
        assert controller.limits.event("openadr:peak/y2999") is None
        for station in fleet.stations.values():
            for profile in station.profiles.profiles:
                assert all(p.start_s <= INT32_MAX for p in profile.schedule.periods), \
                    (station.station_id, profile)


def test_a_limit_stored_before_the_calendar_was_held_does_not_stop_the_defaults():
    """A store written before this fix restores such an event as it was: the fail-safe
    defaults' schedule (every round asks it of every station) ends its changes at 2090 - it
    raised OverflowError a second after 9999-12-31T23:59:59, and every comparison failed."""
    from smartcharge.model import Circuit, Site
    from smartcharge.site.failsafe_limits import node_limit_schedule
    from smartcharge.site.limits import DemandResponseEvent, SiteLimits
    from smartcharge.site.topology import SiteTopology

    site = Site(name="t", circuits=(Circuit("grid", None, limit_w=40_000.0),), stations=())
    limits = SiteLimits(site)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    limits.add_event(DemandResponseEvent("old", datetime(9999, 12, 31, 22, tzinfo=UTC),
                                         datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                                         limit_w=5_000.0))
    limits.add_event(DemandResponseEvent("real", now + timedelta(hours=1),
                                         now + timedelta(hours=2), limit_w=5_000.0))
    schedule = node_limit_schedule(SiteTopology(site), limits, now)
    assert [(at - now, values[0]) for at, values in schedule] == [
        (timedelta(0), 40_000.0), (timedelta(hours=1), 5_000.0), (timedelta(hours=2), 40_000.0)]
