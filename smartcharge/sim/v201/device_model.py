"""The station's device model, as GetVariables/SetVariables see it (OCPP 2.0.1 Part 2, B06/B05):
variables of components, each with an Actual value (a string on the wire), some read-only.

Only the controllers a central system reads for smart charging and messaging are modelled:
`SmartChargingCtrlr` (Enabled, Entries, PeriodsPerSchedule, RateUnit, LimitChangeSignificance,
Phases3to1, ProfileStackLevel), `OCPPCommCtrlr`, `SampledDataCtrlr`, `TxCtrlr`, `AuthCtrlr`,
`DeviceDataCtrlr`.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOOL = ("true", "false")


@dataclass
class Variable:
    value: str
    readonly: bool
    kind: str = "int"                 # int | bool | str | csl | decimal


Key = tuple[str, str, str | None]     # (component, variable, variable instance)


def default_variables(*, heartbeat_interval_s: int, meter_interval_s: int, max_stack_level: int,
                      max_periods: int, rate_units: tuple[str, ...], max_installed: int,
                      tx_start_point: str) -> dict[Key, Variable]:
    return {
        ("OCPPCommCtrlr", "HeartbeatInterval", None): Variable(str(heartbeat_interval_s), False),
        ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"): Variable("3", False),
        ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"): Variable("30", False),
        ("OCPPCommCtrlr", "MessageTimeout", "Default"): Variable("30", True),
        ("OCPPCommCtrlr", "OfflineThreshold", None): Variable("60", False),
        ("OCPPCommCtrlr", "ResetRetries", None): Variable("1", False),
        ("OCPPCommCtrlr", "WebSocketPingInterval", None): Variable("0", False),
        ("SampledDataCtrlr", "Enabled", None): Variable("true", False, "bool"),
        ("SampledDataCtrlr", "TxUpdatedInterval", None): Variable(str(meter_interval_s), False),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", None): Variable(
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC", False, "csl"),
        ("SampledDataCtrlr", "TxStartedMeasurands", None): Variable(
            "Energy.Active.Import.Register", False, "csl"),
        ("SampledDataCtrlr", "TxEndedMeasurands", None): Variable(
            "Energy.Active.Import.Register", False, "csl"),
        ("SampledDataCtrlr", "TxEndedInterval", None): Variable("0", False),
        ("AlignedDataCtrlr", "Interval", None): Variable("0", False),
        ("TxCtrlr", "TxStartPoint", None): Variable(tx_start_point, True, "csl"),
        ("TxCtrlr", "TxStopPoint", None): Variable("EVConnected,Authorized", True, "csl"),
        ("TxCtrlr", "EVConnectionTimeOut", None): Variable("120", False),
        ("TxCtrlr", "StopTxOnInvalidId", None): Variable("true", False, "bool"),
        ("TxCtrlr", "StopTxOnEVSideDisconnect", None): Variable("true", True, "bool"),
        ("AuthCtrlr", "Enabled", None): Variable("true", False, "bool"),
        ("AuthCtrlr", "AuthorizeRemoteStart", None): Variable("false", False, "bool"),
        ("AuthCtrlr", "LocalAuthorizeOffline", None): Variable("true", False, "bool"),
        ("AuthCtrlr", "LocalPreAuthorize", None): Variable("false", False, "bool"),
        ("SmartChargingCtrlr", "Enabled", None): Variable("true", False, "bool"),
        ("SmartChargingCtrlr", "Entries", "ChargingProfiles"): Variable(str(max_installed), True),
        ("SmartChargingCtrlr", "PeriodsPerSchedule", None): Variable(str(max_periods), True),
        ("SmartChargingCtrlr", "ProfileStackLevel", None): Variable(str(max_stack_level), True),
        ("SmartChargingCtrlr", "RateUnit", None): Variable(",".join(rate_units), True, "csl"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", None): Variable("1.0", False, "decimal"),
        ("SmartChargingCtrlr", "Phases3to1", None): Variable("false", True, "bool"),
        ("SmartChargingCtrlr", "ExternalControlSignalsEnabled", None): Variable(
            "false", False, "bool"),
        ("SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", None): Variable(
            "false", False, "bool"),
        ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"): Variable("50", True),
        ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables"): Variable("50", True),
    }


def _names(item: dict) -> tuple[str, str, str | None]:
    component = item.get("component") or {}
    variable = item.get("variable") or {}
    return component.get("name", ""), variable.get("name", ""), variable.get("instance")


def find(variables: dict[Key, Variable], component: str, name: str,
         instance: str | None) -> tuple[Key | None, str]:
    """(the key, "Accepted") or (None, the status the spec names). A request without an
    instance finds a variable that has one when it is the only one of that name."""
    if not any(key[0] == component for key in variables):
        return None, "UnknownComponent"
    if (component, name, instance) in variables:
        return (component, name, instance), "Accepted"
    if instance is None:
        named = [key for key in variables if key[0] == component and key[1] == name]
        if len(named) == 1:
            return named[0], "Accepted"
    return None, "UnknownVariable"


def get_results(variables: dict[Key, Variable], requested: list[dict]) -> list[dict]:
    """GetVariablesResponse.getVariableResult for each requested variable (B06)."""
    results = []
    for item in requested:
        component, name, instance = _names(item)
        attribute = item.get("attribute_type") or item.get("attributeType") or "Actual"
        result = {"component": item["component"], "variable": item["variable"],
                  "attribute_type": attribute}
        key, status = find(variables, component, name, instance)
        if key is not None and attribute != "Actual":
            status = "NotSupportedAttributeType"
        result["attribute_status"] = status
        if status == "Accepted":
            result["attribute_value"] = variables[key].value
        results.append(result)
    return results


def set_results(variables: dict[Key, Variable], requested: list[dict]) -> tuple[list[dict],
                                                                                   list[Key]]:
    """(SetVariablesResponse.setVariableResult, the keys changed) (B05)."""
    results, changed = [], []
    for item in requested:
        component, name, instance = _names(item)
        attribute = item.get("attribute_type") or item.get("attributeType") or "Actual"
        key, status = find(variables, component, name, instance)
        if key is not None and attribute != "Actual":
            status = "NotSupportedAttributeType"
        if status == "Accepted":
            value = item.get("attribute_value", item.get("attributeValue", ""))
            status = _assign(variables[key], value)
            if status == "Accepted":
                changed.append(key)
        results.append({"component": item["component"], "variable": item["variable"],
                        "attribute_type": attribute, "attribute_status": status})
    return results, changed


def _assign(variable: Variable, value: str) -> str:
    if variable.readonly:
        return "Rejected"
    try:
        if variable.kind == "int" and int(value) < 0:
            return "Rejected"
        if variable.kind == "decimal" and float(value) < 0:
            return "Rejected"
    except ValueError:
        return "Rejected"
    if variable.kind == "bool":
        if value.lower() not in _BOOL:
            return "Rejected"
        value = value.lower()
    variable.value = value
    return "Accepted"


def as_int(variables: dict[Key, Variable], component: str, name: str,
           instance: str | None = None) -> int:
    return int(variables[(component, name, instance)].value)


def as_bool(variables: dict[Key, Variable], component: str, name: str) -> bool:
    return variables[(component, name, None)].value == "true"
