"""The measured site load is a reading at one instant: each connector's draw at that instant
from its own samples; a stale meter counts at the connector's maximum and is counted as stale.
Fed real domain events with known times (no sockets: the reading itself)."""

from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge.clock import ManualClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import SiteController

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
P_MAX = 3 * 230 * 32.0



def _controller():
    site = Site(name="t", circuits=(Circuit("grid", None, limit_w=30_000.0),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),)) for i in range(3)))
    clock = ManualClock(T0)
    return SiteController(site, clock)


def _sample(controller, station, tx, at, power_w):
    controller.on_event(ev.MeterSampled(station, 1, tx, T0 + timedelta(seconds=at),
                                        "Sample.Periodic", power_w=power_w,
                                        received_at=T0 + timedelta(seconds=at)))


def _start(controller, station, tx, at=0.0):
    controller.on_event(ev.StationBooted(station, T0, True, "v", "m"))
    controller.on_event(ev.SessionStarted(station, 1, tx, "TAG", 0.0,
                                          T0 + timedelta(seconds=at)))


def test_load_is_read_at_one_instant_never_a_sum_of_different_instants():
    # Two cars share 20 kW. At t=10 s A is turned down 15 -> 5 kW and B up 5 -> 15 kW: the
    # site drew 20 kW at every instant. A's meter last spoke at t=0 (15 kW, before its
    # decrease), B's at t=50 s (15 kW, after its increase): summing the last samples says 30 kW,
    # a load never drawn.
    controller = _controller()
    _start(controller, "CP0", 1)
    _start(controller, "CP1", 2)
    _sample(controller, "CP0", 1, 0, 15_000.0)
    _sample(controller, "CP1", 2, 0, 5_000.0)
    _sample(controller, "CP1", 2, 50, 15_000.0)
    controller.clock.set(T0 + timedelta(seconds=55))
    reading = controller.site_reading()
    # the newest instant every connector is known at is t=0 (A's last sample): 20 kW then
    assert reading.at == T0
    assert reading.load_w == 20_000.0
    assert reading.stale == 0
    snap = controller.snapshot()
    assert snap["site_load_w"] == 20_000.0
    assert snap["site_load_at"] == format_ocpp_time(T0)
    assert snap["site_load_stale"] == 0
    # A speaks at t=60 (5 kW), B again at t=70: the reading moves to t=60, A's new sample
    # and B's last one before it (t=50): 5 + 15 kW
    _sample(controller, "CP0", 1, 60, 5_000.0)
    _sample(controller, "CP1", 2, 70, 15_000.0)
    controller.clock.set(T0 + timedelta(seconds=71))
    reading = controller.site_reading()
    assert reading.at == T0 + timedelta(seconds=60)
    assert reading.load_w == 20_000.0


def test_a_stale_meter_counts_at_its_maximum_and_is_counted():
    controller = _controller()
    _start(controller, "CP0", 1)
    _start(controller, "CP1", 2)
    _sample(controller, "CP0", 1, 0, 7_000.0)
    _sample(controller, "CP1", 2, 200, 4_000.0)
    # CP0's meter is silent for longer than stale_after_s (180 s), its station still online:
    # missing is not zero, it counts at its maximum
    controller.clock.set(T0 + timedelta(seconds=201))
    reading = controller.site_reading()
    assert reading.stale == 1
    assert reading.at == T0 + timedelta(seconds=200)
    assert reading.load_w == P_MAX + 4_000.0
    assert controller.snapshot()["site_load_stale"] == 1


def test_a_session_not_metered_yet_draws_nothing_before_it_started():
    controller = _controller()
    _start(controller, "CP0", 1)
    _sample(controller, "CP0", 1, 30, 7_000.0)
    _start(controller, "CP1", 2, at=20)       # no sample yet: known to draw 0 before t=20
    controller.clock.set(T0 + timedelta(seconds=40))
    reading = controller.site_reading()
    # at t=20 CP0's draw is unknown (begun at t=0, first sampled at t=30, maybe after CP1's
    # arrival turned it down or up): the site is read when CP0 began, both drawing nothing
    assert reading.at == T0
    assert reading.stale == 0
    assert reading.load_w == 0.0
    # CP1 speaks at t=45, CP0 again at t=60: both are known at t=45 (CP1's sample, CP0's of
    # t=30)
    _sample(controller, "CP1", 2, 45, 4_000.0)
    _sample(controller, "CP0", 1, 60, 6_000.0)
    controller.clock.set(T0 + timedelta(seconds=61))
    reading = controller.site_reading()
    assert reading.at == T0 + timedelta(seconds=45)
    assert reading.load_w == 7_000.0 + 4_000.0


def test_a_sample_before_a_decrease_counts_at_the_profile_unless_the_car_shows_it_does_not_obey():
    """`reading.cap_before_decrease_w`: a 22 kW sample at 0 s, the limit lowered to 11 kW at
    10 s (settle 5 s: the car must have followed by 15 s), a reading at 12 s."""
    from smartcharge.site.reading import cap_before_decrease_w
    from smartcharge.site.state import Measurement

    def at(s):
        return T0 + timedelta(seconds=s)

    sample = Measurement(22_000.0, at(0))

    def cap(reading_s, later):
        samples = [Measurement(w, at(s)) for s, w in later]
        return cap_before_decrease_w(
            sample, at(reading_s), at(15), 5.0, lambda: 11_000.0,
            lambda moment: next((m for m in samples if m.ordered_at > moment), None))

    # nothing later: what the profile allows
    assert cap(12, []) == 11_000.0
    # the next sample inside the settle time still shows the old draw of a car that obeys:
    # not a reason to let the 22 kW stand
    assert cap(12, [(13, 20_000.0)]) == 11_000.0
    assert cap(12, [(13, 20_000.0), (16, 10_900.0)]) == 11_000.0
    # once it had to follow, it still draws more: it does not obey, the sample stands
    assert cap(12, [(13, 20_000.0), (15, 21_500.0)]) is None
    assert cap(20, [(21, 21_500.0)]) is None
    # the decrease after the reading's instant, or the sample of the very instant: as it is
    assert cap(9, []) is None
    assert cap_before_decrease_w(Measurement(22_000.0, at(12)), at(12), at(15), 5.0,
                                 lambda: 11_000.0, lambda moment: None) is None
