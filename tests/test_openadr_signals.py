"""OpenADR signals -> the site's DR limits and prices (pure), and the `[[openadr]]` site-file
programs. The 2.0b payloads are built and parsed by openleadr itself (its XML round trip)."""

from datetime import UTC, datetime, timedelta

import pytest
from openleadr import objects
from openleadr.messaging import create_message, parse_message

from smartcharge.config import ConfigError, parse_site
from smartcharge.openadr import signals as sg
from smartcharge.openadr.v2b_events import parse_event

T0 = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
LEVELS = sg.simple_levels_w(None, (0.75, 0.5, 0.0), 40_000.0)


def _v2b(signal_name, signal_type, payloads, *, minutes=30, scale="k", status="far",
         priority=0, startafter=None, modification=0, unit="W", measurement_name="powerReal"):
    intervals = [objects.Interval(dtstart=T0 + timedelta(minutes=minutes * i),
                                  duration=timedelta(minutes=minutes), signal_payload=p)
                 for i, p in enumerate(payloads)]
    measurement = None
    if signal_name in ("LOAD_DISPATCH", "ELECTRICITY_PRICE"):
        measurement = objects.Measurement(name=measurement_name, description="RealPower",
                                          unit=unit, scale=scale,
                                          power_attributes=objects.PowerAttributes(
                                              hertz=50, voltage=230, ac=True))
    period = objects.ActivePeriod(dtstart=T0, duration=timedelta(minutes=minutes *
                                                                 len(payloads)),
                                  tolerance={"startafter": startafter} if startafter else None)
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id="ev-1", modification_number=modification, market_context="http://m",
            event_status=status, created_date_time=T0, priority=priority),
        active_period=period, targets=[{"ven_id": "ven-1"}], response_required="always",
        event_signals=[objects.EventSignal(intervals=intervals, signal_name=signal_name,
                                           signal_type=signal_type, signal_id="s1",
                                           measurement=measurement)])
    event.event_descriptor.event_status = status   # the object computes it from the clock
    _, payload = parse_message(create_message("oadrDistributeEvent", request_id="r",
                                              vtn_id="VTN", events=[event]))
    return parse_event("peak", payload["events"][0])


def _map(event, **kw):
    return sg.map_event(event, cap_w=40_000.0, levels_w=LEVELS, ven="v", randomize=False, **kw)


def test_load_dispatch_setpoint_in_kw_is_a_limit_for_exactly_the_event_intervals():
    mapping = _map(_v2b("LOAD_DISPATCH", "setpoint", [15.0, 15.0, 10.0]))
    assert [(e.event_id, e.start, e.end, e.limit_w) for e in mapping.limits] == [
        ("openadr:peak/ev-1", T0, T0 + timedelta(hours=1), 15_000.0),
        ("openadr:peak/ev-1#1", T0 + timedelta(hours=1), T0 + timedelta(minutes=90), 10_000.0)]
    assert all(e.priority == sg.LOWEST_PRIORITY for e in mapping.limits)   # 2.0b: 0 = none


def test_load_control_capacity_is_a_fraction_of_the_cap():
    """2.0b signal table: x-loadControlCapacity operates at a share of full capacity, 1.0 being
    100 % (0 = off); above 1.0 asks for no less than the cap."""
    mapping = _map(_v2b("LOAD_CONTROL", "x-loadControlCapacity", [0.5, 0.0, 1.5],
                        scale="none"))
    assert [e.limit_w for e in mapping.limits] == [20_000.0, 0.0, 40_000.0]


@pytest.mark.parametrize("level,limit_w", [(1, 30_000.0), (2, 20_000.0), (3, 0.0)])
def test_simple_levels_default_to_75_50_percent_and_uncontrollable_only(level, limit_w):
    mapping = _map(_v2b("SIMPLE", "level", [float(level)]))
    assert [e.limit_w for e in mapping.limits] == [limit_w]


def test_simple_level_0_is_normal_operation_at_the_cap_and_explicit_watts_win():
    """Level 0 asks for nothing below the circuit's cap - held as a limit at the cap, so that
    a higher-priority event at level 0 lifts a lower-priority one of its program."""
    assert [e.limit_w for e in _map(_v2b("SIMPLE", "level", [0.0])).limits] == [40_000.0]
    levels = sg.simple_levels_w((25_000.0, 12_000.0, 4_000.0), (0.75, 0.5, 0.0), 40_000.0)
    mapping = sg.map_event(_v2b("SIMPLE", "level", [1.0, 3.0]), cap_w=40_000.0,
                           levels_w=levels, randomize=False)
    assert [e.limit_w for e in mapping.limits] == [25_000.0, 4_000.0]


def test_prices_per_kwh_and_per_mwh():
    mapping = _map(_v2b("ELECTRICITY_PRICE", "price", [0.31, 0.12], scale="none",
                        unit="USD", measurement_name="currencyPerKWh"))
    assert [(p.start, p.price_per_kwh) for p in mapping.prices] == [
        (T0, 0.31), (T0 + timedelta(minutes=30), 0.12)]
    assert mapping.limits == ()


def test_cancelled_or_opted_out_event_asks_for_nothing():
    assert _map(_v2b("LOAD_DISPATCH", "setpoint", [15.0], status="cancelled")).limits == ()
    assert _map(_v2b("LOAD_DISPATCH", "setpoint", [15.0]), opt_in=False).limits == ()


def test_priority_and_modification_number_are_kept():
    event = _v2b("LOAD_DISPATCH", "setpoint", [15.0], priority=2, modification=3)
    assert (event.priority, event.modification) == (2, 3)
    assert {e.priority for e in _map(event).limits} == {2}


def test_randomised_start_shifts_the_whole_event_within_its_window_the_same_every_time():
    event = _v2b("LOAD_DISPATCH", "setpoint", [15.0], startafter=timedelta(minutes=10))
    first = sg.map_event(event, cap_w=40_000.0, levels_w=LEVELS, ven="v").limits[0]
    again = sg.map_event(event, cap_w=40_000.0, levels_w=LEVELS, ven="v").limits[0]
    assert first == again
    shift = first.start - T0
    assert timedelta(0) <= shift < timedelta(minutes=10)
    assert first.end - first.start == timedelta(minutes=30)
    # a modification (a new level, say) does not draw again: a running event stays in force
    modified = _v2b("LOAD_DISPATCH", "setpoint", [9.0], startafter=timedelta(minutes=10),
                    modification=1)
    moved = sg.map_event(modified, cap_w=40_000.0, levels_w=LEVELS, ven="v").limits[0]
    assert (moved.start, moved.limit_w) == (first.start, 9_000.0)


def test_overlapping_limit_signals_take_the_lowest():
    event = sg.AdrEvent("p", "e", signals=(
        sg.Signal(sg.CAPACITY_W, (sg.Interval(T0, T0 + timedelta(hours=2), 20_000.0),)),
        sg.Signal(sg.SIMPLE, (sg.Interval(T0 + timedelta(hours=1),
                                          T0 + timedelta(hours=3), 2.0),))))
    limits = _map(event).limits
    assert [(e.start, e.end, e.limit_w) for e in limits] == [
        (T0, T0 + timedelta(hours=3), 20_000.0)]
    assert [e.event_id for e in limits] == ["openadr:p/e"]


def test_unknown_signals_are_named_not_acted_on():
    mapping = _map(_v2b("BID_LOAD", "setpoint", [1.0]))
    assert mapping.limits == () and "BID_LOAD" in mapping.notes[0]


# --- the site file ------------------------------------------------------------------------
SITE = """
[grid]
limit_w = 40000
[[circuits]]
id = "feeder-1"
limit_w = 20000
[[stations]]
id = "CP1"
[[stations.connectors]]
id = 1
"""


def test_programs_of_both_versions_parse_with_defaults():
    site = parse_site(SITE + """
[[openadr]]
program = "evening-peak"
version = "2.0b"
vtn_url = "http://vtn.example/OpenADR2/Simple/2.0b/"
ven_name = "depot"

[[openadr]]
program = "gac"
version = "3"
vtn_url = "https://vtn3.example/openadr3"
ven_name = "depot"
circuit = "feeder-1"
client_id = "id"
client_secret = "secret"
simple_levels_w = [15000, 10000, 0]
opt_in = false
""")
    first, second = site.openadr
    assert (first.version, first.vtn_url, first.circuit, first.opt_in) == (
        "2.0b", "http://vtn.example/OpenADR2/Simple/2.0b", "grid", True)
    assert first.simple_levels == (0.75, 0.5, 0.0) and first.simple_levels_w is None
    assert (second.version, second.circuit, second.simple_levels_w, second.opt_in) == (
        "3", "feeder-1", (15000.0, 10000.0, 0.0), False)


@pytest.mark.parametrize("extra,path", [
    ('version = "2.0a"', r"openadr\[0\].version"),
    ('version = "2.0b"\nvtn_url = "ftp://x"', r"openadr\[0\].vtn_url"),
    ('version = "2.0b"\nvtn_url = "http://x"\ncircuit = "nope"', r"openadr\[0\].circuit"),
    ('version = "2.0b"\nvtn_url = "http://x"\nclient_id = "a"', r"openadr\[0\].client_id"),
    ('version = "3"\nvtn_url = "http://x"', r"openadr\[0\] .*credentials"),
    ('version = "3"\nvtn_url = "http://x"\nclient_id = "a"', r"openadr\[0\].client_secret"),
    ('version = "3"\nvtn_url = "http://x"\nbearer_token = "t"\ncallback_url = "depot:8080"',
     r"openadr\[0\].callback_url"),
    ('version = "2.0b"\nvtn_url = "http://x"\ncallback_url = "http://depot"',
     r"openadr\[0\].callback_url"),
    ('version = "2.0b"\nvtn_url = "http://x"\nsimple_levels = [0.5, 0.75, 0]',
     r"openadr\[0\].simple_levels"),
    ('version = "2.0b"\nvtn_url = "http://x"\nsimple_levels = [nan, 0.5, 0.2]',
     r"openadr\[0\].simple_levels"),
    ('version = "2.0b"\nvtn_url = "http://x"\nsimple_levels_w = [inf, 5000, 3000]',
     r"openadr\[0\].simple_levels_w"),
    ('version = "2.0b"\nvtn_url = "http://x"\ncert = "missing.pem"', r"openadr\[0\].cert"),
    ('version = "2.0b"\nvtn_url = "http://x"\ncert = "c.pem"\nkey = "c.pem"',
     r"openadr\[0\].ca_file"),
])
def test_program_errors_name_the_field(extra, path, tmp_path):
    (tmp_path / "c.pem").write_text("not checked here")
    with pytest.raises(ConfigError, match=path):
        parse_site(SITE + f'\n[[openadr]]\nprogram = "p"\nven_name = "v"\n{extra}\n', tmp_path)


# --- OpenADR 3 payloads as the user guide shows them ----------------------------------------
from smartcharge.openadr import v3_events  # noqa: E402


def test_v3_prices_24_hourly_intervals_from_the_event_interval_period():
    event = {"id": "prices-1", "programID": "p1", "eventName": "day-ahead",
             "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                     "payloadType": "PRICE", "units": "KWH",
                                     "currency": "EUR"}],
             "intervalPeriod": {"start": "2026-12-05T00:00:00Z", "duration": "PT1H"},
             "intervals": [{"id": i, "payloads": [{"type": "PRICE", "values": [0.10 + i / 100]}]}
                           for i in range(24)]}
    mapping = _map(v3_events.parse_event("gac", event))
    assert len(mapping.prices) == 24
    assert mapping.prices[5].start == datetime(2026, 12, 5, 5, tzinfo=UTC)
    assert mapping.prices[5].end - mapping.prices[5].start == timedelta(hours=1)
    assert mapping.prices[5].price_per_kwh == pytest.approx(0.15)


def test_v3_capacity_limit_in_kw_per_pt30m_interval_with_own_interval_periods():
    event = {"id": "cap-1", "priority": 1,
             "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                     "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}],
             "intervalPeriod": {"start": "2026-12-05T17:00:00Z", "duration": "PT30M",
                                "randomizeStart": "PT0S"},
             "intervals": [
                 {"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [20]}]},
                 {"id": 1, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [12.5]}]},
                 {"id": 2, "intervalPeriod": {"start": "2026-12-05T19:00:00Z",
                                              "duration": "PT30M"},
                  "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [12.5]}]}]}
    limits = _map(v3_events.parse_event("gac", event)).limits
    assert [(e.event_id, e.start.hour, e.start.minute, e.end.hour, e.end.minute, e.limit_w,
             e.priority) for e in limits] == [
        ("openadr:gac/cap-1", 17, 0, 17, 30, 20_000.0, 1),
        ("openadr:gac/cap-1#1", 17, 30, 18, 0, 12_500.0, 1),
        ("openadr:gac/cap-1#2", 19, 0, 19, 30, 12_500.0, 1)]


def test_v3_simple_levels_and_durations():
    event = {"id": "s-1", "intervalPeriod": {"start": "2026-12-05T17:00:00Z",
                                             "duration": "PT1H"},
             "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [2]}]}]}
    assert [e.limit_w for e in _map(v3_events.parse_event("gac", event)).limits] == [20_000.0]
    assert v3_events.parse_duration("P1DT2H30M") == timedelta(days=1, hours=2, minutes=30)
    with pytest.raises(ValueError):
        v3_events.parse_duration("1 hour")


def test_v3_start_now_and_until_further_notice_as_the_user_guide_writes_them():
    """"0001-01-01" is "now" (the moment the VEN first saw the event, given by the VEN);
    "P9999Y" is "until further notice"; years and months are durations too."""
    event = {"id": "s-now", "intervalPeriod": {"start": "0001-01-01T00:00:00Z",
                                               "duration": "P9999Y"},
             "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]}
    assert v3_events.starts_now(event)
    limits = _map(v3_events.parse_event("gac", event, now=T0)).limits
    assert [(e.start, e.end - e.start, e.limit_w) for e in limits] == [
        (T0, v3_events.UNTIL_FURTHER_NOTICE, 30_000.0)]
    with pytest.raises(ValueError):       # "now" means nothing without the moment it was seen
        v3_events.parse_event("gac", event)
    own = {"id": "i-now", "intervals": [{"id": 0, "intervalPeriod": {
        "start": "0001-01-01", "duration": "PT30M"}, "payloads": [
        {"type": "SIMPLE", "values": [2]}]}]}
    assert v3_events.starts_now(own) and not v3_events.starts_now({"intervals": []})
    assert [(e.start, e.end) for e in _map(v3_events.parse_event("gac", own, now=T0)).limits
            ] == [(T0, T0 + timedelta(minutes=30))]
    assert v3_events.parse_duration("P1Y2M") == timedelta(days=425)


def test_v3_secrets_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SMARTCHARGE_OPENADR_GAC_NL_CLIENT_SECRET", "from-env")
    site = parse_site(SITE + """
[[openadr]]
program = "gac-nl"
version = "3"
vtn_url = "https://vtn3.example"
ven_name = "depot"
client_id = "id"
""")
    assert site.openadr[0].client_secret == "from-env"


def test_v2b_resource_targets_are_kept_for_the_circuit_choice():
    event = {"event_descriptor": {"event_id": "x", "modification_number": 0},
             "active_period": {"dtstart": T0, "duration": timedelta(hours=1)},
             "event_signals": [], "targets_by_type": {"resource_id": ["feeder-1"],
                                                      "ven_id": ["v"]}}
    assert parse_event("p", event).resources == ("feeder-1",)


def test_v2b_an_interval_of_a_century_is_held_until_further_notice_as_in_v3():
    """A 2.0b interval of 100 years (a VTN's "until further notice") was taken as it came:
    its end in 2126 put a startPeriod of ~3.2e9 s into the stations' fail-safe profiles, beyond
    OCPP's 32-bit integers (and one until 9999 made every dispatch fail: the REST API refuses
    such times, tests/test_site_api_fields.py). It is held as OpenADR 3's P9999Y is, ten
    years."""
    mapping = _map(_v2b("LOAD_DISPATCH", "setpoint", [15.0], minutes=100 * 365 * 24 * 60))
    [event] = mapping.limits
    assert (event.start, event.end) == (T0, T0 + v3_events.UNTIL_FURTHER_NOTICE)
