"""A station's clock offset from its messages' stamps (`ocpp/clock_offset.py`) and the absolute
times of a SetChargingProfile moved onto a station's clock (`ocpp/schedules.shifted_times`).
Pure: stamps and receipts given, no clock read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.clock import format_ocpp_time
from smartcharge.ocpp.clock_offset import MAX_SHIFT_S, ClockOffset, shift_s, stamps
from smartcharge.ocpp.schedules import shifted_times
from smartcharge.ocpp.v16 import profiles as P16
from smartcharge.ocpp.v201 import profiles as P201

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_nothing_known_before_a_stamp():
    assert ClockOffset().offset_s is None


def test_ahead_is_believed_from_one_stamp_and_queued_messages_do_not_pull_it_down():
    est = ClockOffset()
    est.observe(_at(180), _at(0.2))          # live: 3 min ahead, 0.2 s latency
    assert est.offset_s == 179.8
    for age_s in (3600, 600, 60):            # its queue, flushed after it
        est.observe(_at(180 - age_s), _at(0.3))
    assert est.offset_s == 179.8


def test_behind_is_believed_only_once_stamps_span_a_minute():
    est = ClockOffset(watch_s=60)
    est.observe(_at(-600), _at(0))           # a queued message - or a station behind
    assert est.offset_s is None
    est.observe(_at(-541), _at(59))
    assert est.offset_s is None
    est.observe(_at(-540), _at(60))          # still behind a minute later: believed
    assert est.offset_s == -600


def test_a_queue_flushed_after_a_reconnect_is_not_taken_for_a_clock_behind():
    est = ClockOffset(watch_s=60)
    for age_s in (900, 600, 300):            # the queue, in a burst
        est.observe(_at(-age_s), _at(0.1))
    assert est.offset_s is None
    est.observe(_at(61), _at(61))            # the first live stamp: in step
    assert est.offset_s == 0


def test_a_clock_set_back_is_followed_once_the_old_stamps_leave_the_window():
    est = ClockOffset(window_s=600)
    est.observe(_at(300), _at(0))            # 5 min ahead
    est.observe(_at(100), _at(100))          # set right
    assert est.offset_s == 300               # the window still holds the ahead stamp
    est.observe(_at(599), _at(599))
    assert est.offset_s == 300
    est.observe(_at(601), _at(601))
    assert est.offset_s == 0
    # with no newer stamps, the last estimate stays
    assert est.offset_s == 0


def test_a_clock_set_forward_is_followed_at_once_and_reset_forgets():
    est = ClockOffset()
    est.observe(_at(-10), _at(0))
    est.observe(_at(200), _at(10))
    assert est.offset_s == 190
    est.reset()
    assert est.offset_s is None


def test_the_memory_is_bounded_by_the_window():
    est = ClockOffset(window_s=600)
    for i in range(10_000):                  # a live message a second, a clock drifting back
        est.observe(_at(i - i * 0.001), _at(i))
    assert len(est._kept) <= 601
    assert -10.0 < est.offset_s < -9.3


def test_the_stamps_of_each_stamped_message_both_versions():
    t1, t2 = format_ocpp_time(_at(1)), format_ocpp_time(_at(2))
    assert list(stamps("StatusNotification", {"connectorId": 1, "timestamp": t1})) == [t1]
    assert list(stamps("StatusNotification", {"connectorId": 1})) == []   # 1.6: optional
    assert list(stamps("MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": t1, "sampledValue": []}, {"timestamp": t2, "sampledValue": []}]})) \
        == [t1, t2]
    assert list(stamps("StopTransaction", {"timestamp": t2, "transactionData": [
        {"timestamp": t1}]})) == [t2, t1]
    assert list(stamps("TransactionEvent", {"timestamp": t1, "meterValue": [
        {"timestamp": t2}]})) == [t1, t2]
    # sent from its queue, as it says itself: no stamp to read
    assert list(stamps("TransactionEvent", {"timestamp": t1, "offline": True})) == []
    assert list(stamps("Heartbeat", {})) == []


def test_observe_call_skips_an_unreadable_stamp():
    est = ClockOffset()
    est.observe_call("StatusNotification", {"timestamp": "yesterday"}, _at(0))
    assert est.offset_s is None
    est.observe_call("StatusNotification", {"timestamp": format_ocpp_time(_at(90))}, _at(0))
    assert est.offset_s == 90


def test_shifted_times_moves_every_absolute_time_of_both_versions_and_leaves_the_original():
    sched16 = P16.schedule_rates(_at(0.7), [0, 900], [16.0, 6.0], unit="A", phases=3,
                                 max_periods=24, duration_s=1800)
    payload16 = P16.set_charging_profile(1, P16.TX_PROFILE, sched16, stack_level=1,
                                         transaction_id=7)
    moved = shifted_times(payload16, 180)
    assert moved["csChargingProfiles"]["chargingSchedule"]["startSchedule"] \
        == "2026-01-01T12:03:00Z"
    assert payload16["csChargingProfiles"]["chargingSchedule"]["startSchedule"] \
        == "2026-01-01T12:00:00Z"
    # only the times: the periods count from startSchedule
    assert moved["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] \
        == payload16["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]

    sched201 = P201.charging_schedule(_at(0), [0, 900], [16.0, 6.0], unit="A", phases=3,
                                      max_periods=24, schedule_id=0, duration_s=1800)
    request = P201.set_charging_profile(1, P201.TX_DEFAULT_PROFILE, sched201, stack_level=1,
                                        bounded=True)
    moved = shifted_times(request, -180)
    profile = moved["chargingProfile"]
    assert profile["chargingSchedule"][0]["startSchedule"] == "2026-01-01T11:57:00Z"
    assert profile["validFrom"] == "2026-01-01T11:57:00Z"
    assert profile["validTo"] == "2026-01-01T12:27:00Z"
    assert request["chargingProfile"]["validTo"] == "2026-01-01T12:30:00Z"
    assert not P201.check_request(moved)


def test_nothing_moves_within_the_edge_margin_and_beyond_it_whole_seconds_never_more():
    assert shift_s(None, 5) == 0
    assert shift_s(5.0, 5) == 0 and shift_s(-5.0, 5) == 0 and shift_s(0.4, 5) == 0
    assert shift_s(179.8, 5) == 179        # floored: never past the (lower-bound) estimate
    assert shift_s(-180.2, 5) == -181
    assert shift_s(59.0, 60) == 0 and shift_s(61.5, 60) == 61


def test_an_offset_of_hours_or_years_is_not_believed() -> None:
    """One stamp decides "ahead": a meter whose clock was never set, or a sample stamped years
    ahead, moved by its offset every profile's validity out of the station's now (none would
    limit it). Beyond MAX_SHIFT_S nothing is moved."""
    est = ClockOffset()
    est.observe(_at(2 * 365 * 86_400.0), _at(0.1))      # one sample stamped two years ahead
    assert shift_s(est.offset_s, 5) == 0
    assert shift_s(-30 * 365 * 86_400.0, 5) == 0        # a meter at 1996, say
    assert shift_s(MAX_SHIFT_S, 5) == int(MAX_SHIFT_S)  # an hour is still followed
    assert shift_s(MAX_SHIFT_S + 1, 5) == 0
