"""Payloads a strict station could send, made from the `ocpp` library's own JSON schemas: the
fewest fields (required only) or every field (every optional one too, `customData` included),
each a valid instance of its schema."""

from __future__ import annotations

from datetime import UTC, datetime
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


def instance(schema: dict, *, full: bool, root: dict | None = None, depth: int = 0) -> Any:
    """A valid value of `schema`: required properties only, or (full) every property."""
    root = schema if root is None else root
    if "$ref" in schema:
        return instance(root["definitions"][schema["$ref"].split("/")[-1]], full=full,
                        root=root, depth=depth)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", ()))
        return {name: instance(sub, full=full, root=root, depth=depth + 1)
                for name, sub in schema.get("properties", {}).items()
                if name in required or (full and depth < 6)}
    if kind == "array":
        return [instance(schema.get("items", {}), full=full, root=root, depth=depth + 1)
                for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "string":
        if schema.get("format") == "date-time":
            return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return "ABCDEFGH"[:max(1, min(8, schema.get("maxLength", 8)))]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return float(max(1, schema.get("minimum", 1)))
    if kind == "boolean":
        return True
    return {}
