"""An OpenADR 3.0.1 event (JSON, as `GET /events` returns it) into an `AdrEvent` (pure).

Timing (3.0.1 `intervalPeriod`): an interval with its own `intervalPeriod` has that start and
duration; one without follows the previous interval, starting at the event's start, each as
long as the event's `intervalPeriod.duration`. Units from the event's `payloadDescriptors`:
IMPORT_CAPACITY_LIMIT in KW unless it says W or MW; PRICE per KWH unless per MWH.

The user guide's conventions: a start of "0001-01-01" (with or without a time) means "now" -
the moment the VEN first saw the event, which the caller passes as `now` so that an event
polled again keeps its start; a duration of "P9999Y" means "until further notice", held as
`UNTIL_FURTHER_NOTICE` (the VTN ends it by deleting or updating the event). Years count 365
days and months 30 in durations.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from smartcharge.clock import parse_ocpp_time
from smartcharge.openadr.signals import (CAPACITY_W, LOWEST_PRIORITY, PRICE, SIMPLE, AdrEvent,
                                         Interval, Signal)

_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?"
                       r"(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                       r"(?:(\d+(?:\.\d+)?)S)?)?$")
_POWER = {"W": 1.0, "KW": 1e3, "MW": 1e6}
NOW_START = "0001-01-01"                       # the user guide's "now"
UNTIL_FURTHER_NOTICE = timedelta(days=3650)    # what "P9999Y" (infinity) is held as


def parse_duration(text: str) -> timedelta:
    """ISO 8601 durations as OpenADR 3 uses them (PT1H, PT30M, P1D, P1W, P9999Y); ValueError
    else. Anything of 9999 years or more is `UNTIL_FURTHER_NOTICE`."""
    match = _DURATION.match(text or "")
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    years, months, weeks, days, hours, minutes, seconds = (float(g or 0)
                                                           for g in match.groups())
    if years >= 9999:
        return UNTIL_FURTHER_NOTICE
    return min(timedelta(days=365 * years + 30 * months + 7 * weeks + days, hours=hours,
                         minutes=minutes, seconds=seconds), UNTIL_FURTHER_NOTICE)


def starts_now(event: dict) -> bool:
    """Whether the event, or one of its intervals, starts "now" (the user guide's 0001-01-01)."""
    periods = [event.get("intervalPeriod") or {}] + [
        i.get("intervalPeriod") or {} for i in event.get("intervals") or [] if isinstance(i, dict)]
    return any(str(p.get("start") or "").startswith(NOW_START) for p in periods)


def format_duration(delta: timedelta) -> str:
    return f"PT{int(delta.total_seconds())}S"


def parse_event(program: str, event: dict, now: datetime | None = None) -> AdrEvent:
    """`now`: where a start of "0001-01-01" puts the event (required if it has one)."""
    period = event.get("intervalPeriod") or {}
    start = _time(period.get("start"), now)
    default = parse_duration(period["duration"]) if period.get("duration") else None
    units = {d.get("payloadType"): d for d in event.get("payloadDescriptors") or []
             if isinstance(d, dict)}
    by_kind: dict[str, list[Interval]] = {}
    ignored: set[str] = set()
    cursor = start
    for interval in sorted(event.get("intervals") or [], key=lambda i: i.get("id", 0)):
        own = interval.get("intervalPeriod") or {}
        begin = _time(own.get("start"), now) or cursor
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


def _time(text, now: datetime | None = None) -> datetime | None:
    if not text:
        return None
    if str(text).startswith(NOW_START):
        if now is None:
            raise ValueError("a start of 0001-01-01 (now) needs the moment the event was seen")
        return now
    return parse_ocpp_time(text)
