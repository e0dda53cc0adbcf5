"""A 2.0.1 station's smart-charging capabilities: GetVariables on SmartChargingCtrlr."""

from ocpp.messages import Call, validate_payload
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case

from smartcharge.ocpp.v201 import capabilities as C


async def test_capabilities_request_is_schema_valid():
    payload = snake_to_camel_case(remove_nones(serialize_as_dict(C.request())))
    await validate_payload(Call("t", "GetVariables", payload), "2.0.1")
    names = [d["variable"]["name"] for d in payload["getVariableData"]]
    assert {"Entries", "PeriodsPerSchedule", "RateUnit", "LimitChangeSignificance",
            "Phases3to1"} <= set(names)
    assert {d["component"]["name"] for d in payload["getVariableData"]} == {
        "SmartChargingCtrlr"}


def test_capabilities_from_the_stations_answers():
    results = [
        {"attribute_status": "Accepted", "attribute_value": "W",
         "component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}},
        {"attribute_status": "Accepted", "attribute_value": "5",
         "variable": {"name": "PeriodsPerSchedule"}, "component": {}},
        {"attribute_status": "Accepted", "attribute_value": "8",
         "variable": {"name": "Entries", "instance": "ChargingProfiles"}, "component": {}},
        {"attribute_status": "Accepted", "attribute_value": "0.1",
         "variable": {"name": "LimitChangeSignificance"}, "component": {}},
        {"attribute_status": "Accepted", "attribute_value": "true",
         "variable": {"name": "Phases3to1"}, "component": {}},
        {"attribute_status": "UnknownVariable", "variable": {"name": "ProfileStackLevel"},
         "component": {}},
    ]
    caps = C.parse(C.values_from_results(results))
    assert caps.rate_units == ("W",) and caps.max_periods == 5
    assert caps.max_profiles_installed == 8 and caps.limit_change_significance == 0.1
    assert caps.phase_switching and caps.max_stack_level == 1   # unknown: the default
    neutral = caps.neutral()
    assert neutral.rate_units == ("W",) and neutral.max_periods == 5 and neutral.idle_layer


def test_refused_or_garbled_variables_keep_conservative_defaults():
    caps = C.parse({"RateUnit": "kW", "PeriodsPerSchedule": "many", "Entries": "-3",
                    "Phases3to1": "maybe", "ProfileStackLevel": "0"})
    assert caps.rate_units == ("A", "W") and caps.max_periods == 24
    assert caps.max_profiles_installed == 1 and not caps.phase_switching
    assert not caps.neutral().idle_layer          # stack level 0 only: no layer above
    assert C.parse({}) == C.Capabilities201()
