"""Payloads a strict station could send, made from the `ocpp` library's own JSON schemas: the
fewest fields (required only) or every field (every optional one too, `customData` included),
each a valid instance of its schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ocpp.messages import MessageType, get_validator

# what a station may send, by version (1.6: core + the security whitepaper's messages)
STATION_ACTIONS = {
    "1.6": ("Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
            "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction",
            "StatusNotification", "StopTransaction", "SecurityEventNotification",
            "SignCertificate", "LogStatusNotification", "SignedFirmwareStatusNotification"),
    "2.0.1": ("Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer",
              "FirmwareStatusNotification", "Get15118EVCertificate", "GetCertificateStatus",
              "Heartbeat", "LogStatusNotification", "MeterValues", "NotifyChargingLimit",
              "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
              "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport",
              "NotifyReport", "PublishFirmwareStatusNotification", "ReportChargingProfiles",
              "ReservationStatusUpdate", "SecurityEventNotification", "SignCertificate",
              "StatusNotification", "TransactionEvent"),
}


def request_schema(action: str, version: str) -> dict:
    return get_validator(MessageType.Call, action, version).schema


def answer_problems(action: str, version: str, payload: dict) -> list[str]:
    validator = get_validator(MessageType.CallResult, action, version)
    return [error.message for error in validator.iter_errors(payload)]


# ids the spec numbers from 1 where a station names a connector or an EVSE (0 is the station
# or its main meter only in some messages): the low edge keeps them at 1
NUMBERED_FROM_1 = {"connectorId", "evseId", "id"}


def instance(schema: dict, *, full: bool, root: dict | None = None, depth: int = 0,
             edge: str | None = None, name: str = "") -> Any:
    """A valid value of `schema`: required properties only, or (full) every property. `edge`:
    every value at an end of what the schema allows - "high" (the last enum value, strings at
    their maxLength, integers at OCPP's 32-bit maximum or the schema's, big numbers, arrays at
    maxItems (at most 3), a date-time at +14:00 with microseconds) or "low" (the first enum
    value, the shortest strings the schema allows ("" where no minLength), 0 or the schema's
    minimum (1 for a connector's or an EVSE's id), negative numbers where allowed, a
    date-time at -12:00)."""
    root = schema if root is None else root
    again = dict(full=full, root=root, depth=depth + 1, edge=edge)
    if "$ref" in schema:
        return instance(root["definitions"][schema["$ref"].split("/")[-1]], full=full,
                        root=root, depth=depth, edge=edge, name=name)
    if "enum" in schema:
        return schema["enum"][-1 if edge == "high" else 0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", ()))
        return {key: instance(sub, **again, name=key)
                for key, sub in schema.get("properties", {}).items()
                if key in required or (full and depth < 6)}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        if edge == "high":
            count = max(count, min(3, schema.get("maxItems", 3)))
        return [instance(schema.get("items", {}), **again) for _ in range(count)]
    if kind == "string":
        if schema.get("format") == "date-time":
            now = datetime.now(UTC)
            if edge == "high":
                return now.astimezone(timezone(timedelta(hours=14))).isoformat()
            if edge == "low":
                return now.astimezone(timezone(timedelta(hours=-12))).strftime(
                    "%Y-%m-%dT%H:%M:%S-12:00")
            return now.strftime("%Y-%m-%dT%H:%M:%SZ")
        if edge == "high":
            return "Z" * schema.get("maxLength", 500)
        if edge == "low":
            return "a" * schema.get("minLength", 0)
        return "ABCDEFGH"[:max(1, min(8, schema.get("maxLength", 8)))]
    if kind == "integer":
        if edge == "high":
            return int(schema.get("maximum", 2 ** 31 - 1))
        if edge == "low":
            return int(schema.get("minimum", 1 if name in NUMBERED_FROM_1 else 0))
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        if edge == "high":
            return float(schema.get("maximum", 1e12))
        if edge == "low":
            return float(schema.get("minimum", -1e12))
        return float(max(1, schema.get("minimum", 1)))
    if kind == "boolean":
        return edge != "low"
    return {}
