"""What a 2.0.1 station's smart charging takes: one GetVariables on `SmartChargingCtrlr`
(Part 2 appendix, the controller's variables) -> `port.Capabilities`. Anything refused,
unknown or unreadable keeps the conservative default (as the 1.6 GetConfiguration probe does).

| variable (instance)             | -> what it sets                                     |
|---------------------------------|-----------------------------------------------------|
| Enabled                         | `enabled` (False: it ignores profiles; none is sent |
|                                 | and it counts as refusing all, `station_port._send`)|
| Entries (ChargingProfiles)      | `max_profiles_installed`                            |
| PeriodsPerSchedule              | `max_periods`                                       |
| ProfileStackLevel               | `max_stack_level` (>= 1: an idle layer fits above)  |
| RateUnit ("A,W")                | `rate_units`                                        |
| LimitChangeSignificance         | `limit_change_significance` (a fraction)            |
| Phases3to1                      | `phase_switching`                                   |
| ExternalControlSignalsEnabled   | `external_signals` (NotifyChargingLimit may come)   |
"""

from __future__ import annotations

from dataclasses import dataclass

from ocpp.v201 import call
from ocpp.v201.datatypes import ComponentType, GetVariableDataType, VariableType

from smartcharge.ocpp.port import Capabilities

COMPONENT = "SmartChargingCtrlr"
# (variable, instance)
VARIABLES: list[tuple[str, str | None]] = [
    ("Enabled", None), ("Entries", "ChargingProfiles"), ("PeriodsPerSchedule", None),
    ("ProfileStackLevel", None), ("RateUnit", None), ("LimitChangeSignificance", None),
    ("Phases3to1", None), ("ExternalControlSignalsEnabled", None)]


@dataclass(frozen=True)
class Capabilities201:
    enabled: bool = True
    max_profiles_installed: int | None = None
    max_periods: int = 24
    max_stack_level: int = 1          # the least that fits our two layers is assumed
    rate_units: tuple[str, ...] = ("A", "W")
    limit_change_significance: float | None = None
    phase_switching: bool = False
    external_signals: bool = False

    def neutral(self) -> Capabilities:
        return Capabilities(rate_units=self.rate_units, max_periods=self.max_periods,
                            idle_layer=self.max_stack_level >= 1,
                            max_profiles_installed=self.max_profiles_installed,
                            connectors=None, phase_switching=self.phase_switching)


def request(variables: list[tuple[str, str | None]] = VARIABLES) -> call.GetVariables:
    return call.GetVariables(get_variable_data=[
        GetVariableDataType(component=ComponentType(name=COMPONENT),
                            variable=VariableType(name=name, instance=instance))
        for name, instance in variables])


def values_from_results(results) -> dict[str, str]:
    """GetVariablesResponse.getVariableResult -> {variable name: value} of the Accepted ones."""
    out = {}
    for item in results or []:
        item = item if isinstance(item, dict) else vars(item)
        status = item.get("attribute_status", item.get("attributeStatus"))
        value = item.get("attribute_value", item.get("attributeValue"))
        variable = item.get("variable") or {}
        name = variable.get("name") if isinstance(variable, dict) else variable.name
        if str(getattr(status, "value", status)) == "Accepted" and value is not None:
            out[name] = str(value)
    return out


def parse(values: dict[str, str]) -> Capabilities201:
    base = Capabilities201()

    def as_int(name: str, default, least: int):
        try:
            return max(int(values[name].strip()), least)
        except (KeyError, ValueError):
            return default

    def as_bool(name: str, default: bool) -> bool:
        text = values.get(name, "").strip().lower()
        return {"true": True, "false": False}.get(text, default)

    units = tuple(u for u in ("A", "W")
                  if u in [v.strip() for v in values.get("RateUnit", "").split(",")])
    try:
        significance = float(values["LimitChangeSignificance"])
    except (KeyError, ValueError):
        significance = None
    return Capabilities201(
        enabled=as_bool("Enabled", base.enabled),
        max_profiles_installed=as_int("Entries", None, 1),
        max_periods=as_int("PeriodsPerSchedule", base.max_periods, 1),
        max_stack_level=as_int("ProfileStackLevel", base.max_stack_level, 0),
        rate_units=units or base.rate_units,
        limit_change_significance=significance,
        phase_switching=as_bool("Phases3to1", base.phase_switching),
        external_signals=as_bool("ExternalControlSignalsEnabled", base.external_signals))


__all__ = ["COMPONENT", "Capabilities201", "VARIABLES", "parse", "request",
           "values_from_results"]
