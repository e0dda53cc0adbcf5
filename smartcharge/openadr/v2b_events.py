"""An OpenADR 2.0b event, as `openleadr` parses an oadrDistributeEvent, into an `AdrEvent`
(pure). Units come from the signal's itemBase: a `powerReal` setpoint in W with an SI scale
(`k` = kW, the usual), a price in currency per kWh (or per MWh)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.openadr.signals import (CAPACITY_PERCENT, CAPACITY_W, LOWEST_PRIORITY, PRICE,
                                         SIMPLE, AdrEvent, Interval, Signal)
from smartcharge.openadr.v3_events import UNTIL_FURTHER_NOTICE

_SCALE = {"none": 1.0, None: 1.0, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}


def parse_event(program: str, event: dict) -> AdrEvent:
    descriptor = event.get("event_descriptor", {})
    period = event.get("active_period", {}) or {}
    signals, ignored = [], []
    raw_signals = event.get("event_signals") or []
    if isinstance(raw_signals, dict):          # openleadr nests them once in some messages
        raw_signals = raw_signals.get("event_signals", [])
    for raw in raw_signals:
        kind, factor = _kind(raw)
        name = f"{raw.get('signal_name')}/{raw.get('signal_type')}"
        if kind is None:
            ignored.append(f"signal {name} is not acted on")
            continue
        intervals = _intervals(raw.get("intervals") or [], period.get("dtstart"), factor)
        signals.append(Signal(kind, intervals))
    priority = descriptor.get("priority") or 0
    tolerance = ((period.get("tolerance") or {}).get("tolerate") or {})
    startafter = tolerance.get("startafter")
    return AdrEvent(
        program=program, event_id=str(descriptor.get("event_id")),
        modification=int(descriptor.get("modification_number") or 0),
        # 2.0b: lower is higher, 0 means "no priority" (the lowest)
        priority=int(priority) if int(priority) > 0 else LOWEST_PRIORITY,
        cancelled=descriptor.get("event_status") == "cancelled",
        randomize_s=startafter.total_seconds() if isinstance(startafter, timedelta) else 0.0,
        signals=tuple(signals), ignored=tuple(ignored),
        resources=tuple(str(r) for r in (event.get("targets_by_type") or {})
                        .get("resource_id", [])))


def _kind(signal: dict) -> tuple[str | None, float]:
    name, kind = signal.get("signal_name"), signal.get("signal_type")
    measurement = signal.get("measurement") or {}
    scale = _SCALE.get(measurement.get("scale"), 1.0)
    if name == "SIMPLE" and kind == "level":
        return SIMPLE, 1.0
    if name == "LOAD_DISPATCH" and kind == "setpoint":
        # powerReal in W with a scale; without an itemBase the programs' usual kW
        return CAPACITY_W, scale if measurement else 1e3
    if name == "LOAD_CONTROL" and kind == "x-loadControlCapacity":
        # the 2.0b signal table: a share of full capacity where 1.0 is 100 % (0 = off)
        return CAPACITY_PERCENT, 100.0
    if name == "ELECTRICITY_PRICE" and kind == "price":
        unit = str(measurement.get("unit") or "")
        per_mwh = "MWh" in unit or measurement.get("name") == "currencyPerMWh"
        return PRICE, 1e-3 if per_mwh else 1.0
    return None, 1.0


def _intervals(raw: list[dict], event_start: datetime | None, factor: float
               ) -> tuple[Interval, ...]:
    """Intervals follow each other from the event's start unless they carry their own."""
    out = []
    cursor = event_start
    for interval in sorted(raw, key=lambda i: int(i.get("uid") or 0)):
        start = interval.get("dtstart") or cursor
        duration = interval.get("duration")
        if start is None or not isinstance(duration, timedelta) or duration <= timedelta(0):
            continue
        start = start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
        # a century is "until further notice", held as OpenADR 3's P9999Y (a schedule's
        # startPeriod must stay within OCPP's 32-bit integers; past 9999 no plan is made)
        duration = min(duration, UNTIL_FURTHER_NOTICE)
        value = interval.get("signal_payload")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(Interval(start, start + duration, float(value) * factor))
        cursor = start + duration
    return tuple(out)
