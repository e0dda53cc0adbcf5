"""The reports a station makes about the car and about limits set outside us
(`ChargingNeedsReported`, `ExternalLimitReported`, `ExternalLimitCleared`) as plain JSON and
back, version-neutral: the adapter stores the event it publishes beside the message as sent, so
the site can rebuild what it took from them after a restart without reading any protocol's
payloads (site/restore.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from smartcharge import events as ev

KINDS: dict[str, type] = {cls.__name__: cls for cls in (
    ev.ChargingNeedsReported, ev.ExternalLimitReported, ev.ExternalLimitCleared)}
_TIMES = ("at", "departure", "start")


def to_json(event) -> dict[str, Any]:
    """{"event": class name, **fields}; times as ISO 8601 strings."""
    if type(event).__name__ not in KINDS:
        raise TypeError(f"not a stored report event: {type(event).__name__}")
    out = {"event": type(event).__name__, **dataclasses.asdict(event)}
    return _times(out, lambda value: value.isoformat())


def from_json(data: dict[str, Any]):
    """The event `to_json` made."""
    data = dict(data)
    cls = KINDS[data.pop("event")]
    data = _times(data, datetime.fromisoformat)
    if cls is ev.ExternalLimitReported:
        data["schedules"] = tuple(ev.ReportedSchedule(**{
            **s, "offsets_s": tuple(s["offsets_s"]), "limits": tuple(s["limits"]),
            "phases": tuple(s["phases"])}) for s in data["schedules"])
    return cls(**data)


def _times(data: dict, convert) -> dict:
    out = {}
    for key, value in data.items():
        if key in _TIMES and value is not None:
            value = convert(value)
        elif key == "schedules":
            value = [_times(dict(s), convert) for s in value]
        out[key] = value
    return out
