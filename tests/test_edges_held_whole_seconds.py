"""`edges.held` keeps a schedule no higher than what is installed for a while; its moments fall on
whole seconds of the schedule "where it falls, at or before". The schedule's start carries a
fraction (now, less the edge margin), and the request counts its periods from that start
truncated to the second (`schedules.schedule_rates`): a fall on a whole second - every slot edge
- was floored from the fractional start and so sent a second early. The next round's build
(not through `held`) had it on the second: read as a one-second decrease 14 minutes ahead, a
raise went out as two requests (tests/test_dispatch_resend.py's small_raise[1.6], its rounds
5 s or more apart: benchmarks/README.md, s32-suite)."""

from datetime import UTC, datetime, timedelta

from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp.schedules import schedule_rates
from smartcharge.site.edges import held


def _sent(start: datetime, offsets_s: list[float], powers_w: list[float]) -> list[tuple]:
    """(moment, W) of each period as the request says it (whole seconds from its start)."""
    schedule = schedule_rates(start, offsets_s, powers_w, unit="W", phases=3, max_periods=24)
    begin = parse_ocpp_time(schedule["startSchedule"])
    return [(begin + timedelta(seconds=p["startPeriod"]), p["limit"])
            for p in schedule["chargingSchedulePeriod"]]


def test_a_fall_on_a_whole_second_is_sent_on_that_second_from_a_fractional_start():
    start = datetime(2026, 1, 1, 12, 0, 35, 456_000, tzinfo=UTC)
    edge, end = datetime(2026, 1, 1, 12, 15, tzinfo=UTC), datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    offsets = [0.0, (edge - start).total_seconds(), (end - start).total_seconds()]
    powers = [19_900.0, 10_400.0, 0.0]
    installed = [(start - timedelta(seconds=5), 19_900.0), (edge, 10_300.0), (end, 0.0)]
    # held while the raise delay runs (10 s): nothing of it rises before then
    offsets_held, powers_held = held(start, offsets, powers, installed,
                                     start + timedelta(seconds=10))
    sent = _sent(start, offsets_held, powers_held)
    assert sent == [(start.replace(microsecond=0), 19_900.0), (edge, 10_400.0), (end, 0.0)], sent


def test_a_fall_between_whole_seconds_is_sent_at_the_second_before_it():
    start = datetime(2026, 1, 1, 12, 0, 35, 456_000, tzinfo=UTC)
    fall = datetime(2026, 1, 1, 12, 5, 0, 700_000, tzinfo=UTC)
    offsets = [0.0, (fall - start).total_seconds()]
    offsets_held, powers_held = held(start, offsets, [7_000.0, 4_000.0],
                                     [(start, 7_000.0)], start + timedelta(seconds=10))
    sent = _sent(start, offsets_held, powers_held)
    assert sent[1] == (fall.replace(microsecond=0), 4_000.0), sent
