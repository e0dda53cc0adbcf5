"""An OpenADR 3.0.1 event (JSON, as `GET /events` returns it) into an `AdrEvent` (pure).

Timing (3.0.1 `intervalPeriod`): an interval with its own `intervalPeriod` has that start and
duration; one without follows the previous interval, starting at the event's start, each as
long as the event's `intervalPeriod.duration`. Units from the event's `payloadDescriptors`:
IMPORT_CAPACITY_LIMIT in KW unless it says W or MW; PRICE per KWH unless per MWH.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from smartcharge.clock import parse_ocpp_time
from smartcharge.openadr.signals import (CAPACITY_W, LOWEST_PRIORITY, PRICE, SIMPLE, AdrEvent,
                                         Interval, Signal)

_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?"
                       r"(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_POWER = {"W": 1.0, "KW": 1e3, "MW": 1e6}


def parse_duration(text: str) -> timedelta:
    """ISO 8601 durations as OpenADR 3 uses them (PT1H, PT30M, P1D, P1W); ValueError else."""
    match = _DURATION.match(text or "")
    if not match or text in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    weeks, days, hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_duration(delta: timedelta) -> str:
    return f"PT{int(delta.total_seconds())}S"


def parse_event(program: str, event: dict) -> AdrEvent:
    period = event.get("intervalPeriod") or {}
    start = _time(period.get("start"))
    default = parse_duration(period["duration"]) if period.get("duration") else None
    units = {d.get("payloadType"): d for d in event.get("payloadDescriptors") or []
             if isinstance(d, dict)}
    by_kind: dict[str, list[Interval]] = {}
    ignored: set[str] = set()
    cursor = start
    for interval in sorted(event.get("intervals") or [], key=lambda i: i.get("id", 0)):
        own = interval.get("intervalPeriod") or {}
        begin = _time(own.get("start")) or cursor
        length = parse_duration(own["duration"]) if own.get("duration") else default
        if begin is None or length is None or length <= timedelta(0):
            continue
        cursor = begin + length
        for payload in interval.get("payloads") or []:
            kind, factor = _kind(payload.get("type"), units.get(payload.get("type"), {}))
            values = payload.get("values") or []
            if kind is None:
                ignored.add(f"payload {payload.get('type')} is not acted on")
                continue
            if values and isinstance(values[0], (int, float)) and not isinstance(values[0],
                                                                                 bool):
                by_kind.setdefault(kind, []).append(
                    Interval(begin, begin + length, float(values[0]) * factor))
    priority = event.get("priority")
    randomize = period.get("randomizeStart")
    modified = _time(event.get("modificationDateTime"))
    return AdrEvent(
        program=program, event_id=str(event.get("id")),
        modification=int(modified.timestamp()) if modified else 0,
        priority=int(priority) if isinstance(priority, int) and priority >= 0
        else LOWEST_PRIORITY,
        randomize_s=parse_duration(randomize).total_seconds() if randomize else 0.0,
        signals=tuple(Signal(kind, tuple(ivs)) for kind, ivs in by_kind.items()),
        ignored=tuple(sorted(ignored)),
        resources=tuple(str(v) for t in event.get("targets") or [] if isinstance(t, dict)
                        and t.get("type") == "RESOURCE_NAME" for v in t.get("values") or []))


def _kind(payload_type, descriptor: dict) -> tuple[str | None, float]:
    units = str(descriptor.get("units") or "").upper()
    if payload_type == "IMPORT_CAPACITY_LIMIT":
        return CAPACITY_W, _POWER.get(units, 1e3)
    if payload_type == "SIMPLE":
        return SIMPLE, 1.0
    if payload_type == "PRICE":
        return PRICE, 1e-3 if units == "MWH" else 1.0
    return None, 1.0


def _time(text) -> datetime | None:
    if not text:
        return None
    return parse_ocpp_time(text)
