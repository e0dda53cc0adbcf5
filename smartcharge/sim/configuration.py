"""The station's configuration keys (OCPP 1.6 chapter 9), as GetConfiguration/ChangeConfiguration
see them: every value is a string on the wire, some keys are read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOOL = ("true", "false")


@dataclass
class Key:
    value: str
    readonly: bool
    kind: str = "int"                 # int | bool | str | csl (comma-separated list)


def default_keys(*, connectors: int, heartbeat_interval_s: int, meter_interval_s: int,
                 max_stack_level: int, max_periods: int, rate_units: tuple[str, ...],
                 max_installed: int) -> dict[str, Key]:
    return {
        "HeartbeatInterval": Key(str(heartbeat_interval_s), False),
        "MeterValueSampleInterval": Key(str(meter_interval_s), False),
        "MeterValuesSampledData": Key(
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC", False, "csl"),
        "StopTxnSampledData": Key("Energy.Active.Import.Register", False, "csl"),
        "ClockAlignedDataInterval": Key("0", False),
        "ConnectionTimeOut": Key("120", False),
        "NumberOfConnectors": Key(str(connectors), True),
        "AuthorizeRemoteTxRequests": Key("false", False, "bool"),
        "LocalAuthorizeOffline": Key("true", False, "bool"),
        "LocalPreAuthorize": Key("false", False, "bool"),
        "AllowOfflineTxForUnknownId": Key("true", False, "bool"),
        "StopTransactionOnInvalidId": Key("true", False, "bool"),
        "StopTransactionOnEVSideDisconnect": Key("true", True, "bool"),
        "TransactionMessageAttempts": Key("3", False),
        "TransactionMessageRetryInterval": Key("30", False),
        "ResetRetries": Key("1", False),
        "UnlockConnectorOnEVSideDisconnect": Key("true", False, "bool"),
        "GetConfigurationMaxKeys": Key("50", True),
        "SupportedFeatureProfiles": Key(
            "Core,SmartCharging,RemoteTrigger", True, "csl"),
        "ChargeProfileMaxStackLevel": Key(str(max_stack_level), True),
        "ChargingScheduleAllowedChargingRateUnit": Key(",".join(rate_units), True, "csl"),
        "ChargingScheduleMaxPeriods": Key(str(max_periods), True),
        "MaxChargingProfilesInstalled": Key(str(max_installed), True),
        "WebSocketPingInterval": Key("0", False),
    }


def change(keys: dict[str, Key], name: str, value: str) -> str:
    """Apply ChangeConfiguration; return the status the spec names."""
    key = keys.get(name)
    if key is None:
        return "NotSupported"
    if key.readonly:
        return "Rejected"
    if key.kind == "int":
        try:
            if int(value) < 0:
                return "Rejected"
        except ValueError:
            return "Rejected"
    elif key.kind == "bool" and value.lower() not in _BOOL:
        return "Rejected"
    key.value = value.lower() if key.kind == "bool" else value
    return "Accepted"


def as_int(keys: dict[str, Key], name: str) -> int:
    return int(keys[name].value)


def as_bool(keys: dict[str, Key], name: str) -> bool:
    return keys[name].value == "true"
