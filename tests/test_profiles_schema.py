"""Every SetChargingProfile the 1.6 and 2.0.1 builders make is valid against the library's schema
of its version, over any schedule, and is exactly what the library would serialise from the
port's message: the proof that lets the control port send them as they are, without
serialising and checking each one again on the way out (~0.45 ms of the loop per request,
~0.5 s of a DR event at 1 000 connectors: issue 10). What a station sends us is still checked,
every time."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.charge_point import remove_nones
from ocpp.messages import Call, _validate_payload
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from smartcharge.ocpp.central import camel_payload
from smartcharge.ocpp.v16 import profiles as P
from smartcharge.ocpp.v201 import profiles as P201

NOW = datetime(2026, 1, 1, 12, 3, 7, 800_000, tzinfo=UTC)

powers = st.floats(min_value=0.0, max_value=2_000_000.0, allow_nan=False)
# periods at least a second apart (slot and limit moments are; two within one second would
# share a startPeriod, which the 2.0.1 builder refuses with ValueError before anything is sent)
gaps = st.floats(min_value=1.0, max_value=7200.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(gaps, powers), min_size=1, max_size=100),
       st.sampled_from(["A", "W"]), st.sampled_from([1, 2, 3]),
       st.integers(min_value=1, max_value=96), st.one_of(st.none(), st.integers(1, 86_400)),
       st.one_of(st.none(), powers), st.sampled_from([P.TX_PROFILE, P.TX_DEFAULT_PROFILE,
                                                      P.CHARGE_POINT_MAX_PROFILE]),
       st.integers(min_value=0, max_value=8), st.sampled_from([230.0, 120.0, 400.0]),
       st.integers(min_value=0, max_value=600))
def test_every_built_profile_is_schema_valid(periods, unit, phases, max_periods, duration_s,
                                             min_power_w, purpose, stack_level, voltage_v,
                                             start_ms):
    offsets = [0.0]
    for gap, _ in periods[1:]:
        offsets.append(offsets[-1] + gap)
    sched = P.schedule(NOW + timedelta(milliseconds=start_ms), offsets,
                       [w for _, w in periods], unit=unit, phases=phases, voltage_v=voltage_v,
                       max_periods=max_periods, duration_s=duration_s, min_power_w=min_power_w)
    payload = P.set_charging_profile(
        0 if purpose == P.CHARGE_POINT_MAX_PROFILE else 2, purpose, sched,
        stack_level=stack_level, transaction_id=17 if purpose == P.TX_PROFILE else None,
        fallback=purpose == P.TX_DEFAULT_PROFILE and stack_level > 0)
    # what the port sends as it is: the library's serialisation of its message, unchanged
    message = call16.SetChargingProfile(connector_id=payload["connectorId"],
                                        cs_charging_profiles=payload["csChargingProfiles"])
    assert camel_payload(message) == payload
    assert remove_nones(payload) == payload   # sent as it is: not even its Nones dropped
    _validate_payload(Call("t", "SetChargingProfile", payload), "1.6")   # raises if not
    assert len(sched["chargingSchedulePeriod"]) <= max_periods


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(gaps, powers), min_size=1, max_size=100),
       st.sampled_from(["A", "W"]), st.sampled_from([1, 2, 3]),
       st.integers(min_value=1, max_value=96), st.one_of(st.none(), st.integers(1, 86_400)),
       st.one_of(st.none(), powers), st.sampled_from(["station_max", "failsafe", "upper",
                                                      "tx"]),
       st.integers(min_value=0, max_value=600))
def test_every_built_201_profile_is_schema_valid(periods, unit, phases, max_periods,
                                                 duration_s, min_rate, layer, start_ms):
    offsets = [0.0]
    for gap, _ in periods[1:]:
        offsets.append(offsets[-1] + gap)
    sched = P201.charging_schedule(NOW + timedelta(milliseconds=start_ms), offsets,
                                   [w / 1000.0 for _, w in periods], unit=unit, phases=phases,
                                   max_periods=max_periods, schedule_id=1,
                                   duration_s=duration_s, min_rate=min_rate)
    request = {"station_max": lambda: P201.station_max(sched),
               "failsafe": lambda: P201.failsafe(1, sched),
               "upper": lambda: P201.upper_default(2, sched),
               "tx": lambda: P201.tx_profile(1, "b7e2c1a0-5f0e-4c1b-9a1f-3f1e2d4c5b6a",
                                             sched)}[layer]()
    message = call201.SetChargingProfile(evse_id=request["evseId"],
                                         charging_profile=request["chargingProfile"])
    assert camel_payload(message) == request
    assert remove_nones(request) == request
    _validate_payload(Call("t", "SetChargingProfile", request), "2.0.1")   # raises if not
