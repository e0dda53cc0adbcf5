"""Every limit on the grid connection, with where it comes from and when it holds.

Pure and clock-driven: the caller passes times in, nothing here reads a clock or does I/O.
The rule is "most restrictive wins": the effective root limit of a slot is the minimum of every
limit in force at any moment of the slot (a slot only partly covered by a window or a
demand-response event takes that limit for the whole slot, which is the conservative choice).

One exception, as the OpenADR specifications say: within one OpenADR program (the DR events
"openadr:<program>/...", on one circuit), where events overlap, only those of the highest
priority (the lowest number) are in force - a higher-priority event holds alone for its window
even where it allows more. That is resolved from the stored events each time they change
(`in_force`), so a restart, a modification or a cancellation always sees the same resolved set.
Between programs, and against REST events and caps, the minimum holds as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from smartcharge.model import Site
from smartcharge.site.dr_priority import priority_group, resolve_priority

SOURCE_SITE = "site"          # the site file (grid connection, its cap schedule)
SOURCE_OPERATOR = "operator"  # the operator through the API
SOURCE_UTILITY = "utility"    # a demand-response event
SOURCE_CIRCUIT = "circuit"    # a breaker or feeder of the circuit tree
SOURCE_STATION = "station"    # a station's own maximum
SOURCE_CONNECTOR = "connector"  # a connector's (or its car's) maximum
SOURCE_ENERGY = "energy"      # the session needs no more energy than it gets
SOURCE_FALLBACK = "fallback"  # uncontrollable: planned at its maximum / last draw


@dataclass(frozen=True)
class LimitSource:
    """Why a limit exists: `source` is one of the SOURCE_* kinds, `id` names the instance."""

    source: str
    id: str
    detail: str = ""

    def as_json(self) -> dict:
        return {"source": self.source, "id": self.id, "detail": self.detail}


@dataclass(frozen=True)
class Limit:
    """A power limit on the grid connection [W], valid in [start, end); None = open-ended."""

    limit_w: float
    source: LimitSource
    start: datetime | None = None
    end: datetime | None = None

    def overlaps(self, slot_start: datetime, slot_end: datetime) -> bool:
        return (self.start is None or self.start < slot_end) and (
            self.end is None or self.end > slot_start)


@dataclass(frozen=True)
class DemandResponseEvent:
    """A utility's request: from start to end, a limit in W or a reduction in W from the cap.

    `priority`: 0 is the highest. Between OpenADR events of one program it decides which
    holds where they overlap (`resolve_priority`); elsewhere it only breaks ties between
    equally restrictive limits (the minimum of everything in force wins).
    `circuit_id`: None for the grid connection, else the circuit it limits (an OpenADR program
    on a feeder; a limit only).
    """

    event_id: str
    start: datetime
    end: datetime
    limit_w: float | None = None
    reduction_w: float | None = None
    priority: int = 0
    cancelled: bool = False
    circuit_id: str | None = None

    def __post_init__(self) -> None:
        if not self.event_id or not isinstance(self.event_id, str):
            raise ValueError("id: must be a non-empty string")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"{name}: must be a timezone-aware date-time")
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        if (self.limit_w is None) == (self.reduction_w is None):
            raise ValueError("give exactly one of limit_w and reduction_w")
        for name in ("limit_w", "reduction_w"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value >= 0
                                          and np.isfinite(value)):
                raise ValueError(f"{name}: must be a finite number >= 0 [W]")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise ValueError("priority: must be an integer")
        if self.circuit_id is not None and self.limit_w is None:
            raise ValueError("circuit_id: an event on a circuit gives limit_w")

    def state(self, now: datetime) -> str:
        if self.cancelled:
            return "cancelled"
        if now < self.start:
            return "scheduled"
        return "active" if now < self.end else "completed"

    def as_json(self, now: datetime) -> dict:
        from smartcharge.clock import format_ocpp_time
        out = {"id": self.event_id, "start": format_ocpp_time(self.start),
               "end": format_ocpp_time(self.end), "limit_w": self.limit_w,
               "reduction_w": self.reduction_w, "priority": self.priority,
               "state": self.state(now)}
        if self.circuit_id is not None:
            out["circuit_id"] = self.circuit_id
        return out


class SiteLimits:
    """The grid connection's limits: site file, operator (now and scheduled), utility events.

    `uncapped_w` is what a reduction is taken from when no other cap is in force (the most the
    site can draw: the sum of its connectors' maxima).
    """

    def __init__(self, site: Site, uncapped_w: float = np.inf) -> None:
        self._static: list[Limit] = []
        if site.root.limit_w is not None:
            self._static.append(Limit(float(site.root.limit_w), LimitSource(
                SOURCE_SITE, site.root.circuit_id, "grid connection cap (site file)")))
        for i, window in enumerate(site.cap_schedule):
            self._static.append(Limit(float(window.limit_w), LimitSource(
                SOURCE_SITE, f"cap_schedule[{i}]", "scheduled cap (site file)"),
                window.start, window.end))
        self.uncapped_w = float(uncapped_w)
        self._operator_now: Limit | None = None
        self._operator_schedule: list[Limit] = []
        self._events: dict[str, DemandResponseEvent] = {}
        self.version = 0  # bumped on every change, so watchers can tell something moved
        self._in_force: tuple[int, list[DemandResponseEvent]] | None = None

    # --- operator ---------------------------------------------------------------------------
    def set_operator_cap(self, limit_w: float | None, since: datetime | None = None) -> None:
        """The operator's cap from `since` on (None: until cleared); limit_w None clears it."""
        if limit_w is None:
            self._operator_now = None
        else:
            _check_power("limit_w", limit_w)
            self._operator_now = Limit(float(limit_w), LimitSource(
                SOURCE_OPERATOR, "operator-cap", "operator's site cap"), since, None)
        self.version += 1

    @property
    def operator_cap(self) -> Limit | None:
        return self._operator_now

    def set_cap_schedule(self, windows: list[tuple[datetime, datetime, float]]) -> None:
        """Replace the operator's cap schedule: (start, end, limit_w) windows."""
        self._operator_schedule = cap_schedule_limits(windows)
        self.version += 1

    @property
    def cap_schedule(self) -> list[Limit]:
        return list(self._operator_schedule)

    # --- utility ----------------------------------------------------------------------------
    def add_event(self, event: DemandResponseEvent) -> None:
        existing = self._events.get(event.event_id)
        if existing is not None and not existing.cancelled:
            raise KeyError(f"demand-response event {event.event_id!r} already exists")
        self._events[event.event_id] = event
        self.version += 1

    def update_event(self, event: DemandResponseEvent) -> None:
        if event.event_id not in self._events:
            raise KeyError(f"no demand-response event {event.event_id!r}")
        self._events[event.event_id] = event
        self.version += 1

    def cancel_event(self, event_id: str) -> DemandResponseEvent:
        event = self._events.get(event_id)
        if event is None:
            raise KeyError(f"no demand-response event {event_id!r}")
        cancelled = replace(event, cancelled=True)
        self._events[event_id] = cancelled
        self.version += 1
        return cancelled

    def event(self, event_id: str) -> DemandResponseEvent | None:
        return self._events.get(event_id)

    def events(self) -> list[DemandResponseEvent]:
        return sorted(self._events.values(), key=lambda e: (e.start, e.priority, e.event_id))

    def in_force(self) -> list[DemandResponseEvent]:
        """The DR events as they hold: not cancelled, each cut to where its program's priority
        leaves it in force (an event may come back in several pieces with its id)."""
        if self._in_force is None or self._in_force[0] != self.version:
            self._in_force = (self.version, resolve_priority(
                [e for e in self._events.values() if not e.cancelled]))
        return self._in_force[1]

    def held_back_by(self, event_id: str, now: datetime) -> str | None:
        """The higher-priority event of its program that holds instead of `event_id` at `now`
        (None: it holds, or it is not running)."""
        event = self._events.get(event_id)
        if event is None or event.cancelled or not event.start <= now < event.end:
            return None
        pieces = [e for e in self.in_force() if e.start <= now < e.end]
        if any(e.event_id == event_id for e in pieces):
            return None
        group = priority_group(event)
        return next((e.event_id for e in sorted(pieces, key=lambda e: e.priority)
                     if priority_group(e) == group), None)

    def events_json(self, now: datetime) -> list[dict]:
        """Every DR event for the API and the dashboard; a running event its program's
        higher-priority event holds back names that one (`held_back_by`)."""
        out = []
        for event in self.events():
            shown = event.as_json(now)
            by = self.held_back_by(event.event_id, now)
            if by is not None:
                shown["held_back_by"] = by
            out.append(shown)
        return out

    # --- the rule ---------------------------------------------------------------------------
    def caps(self) -> list[Limit]:
        caps = list(self._static) + list(self._operator_schedule)
        if self._operator_now is not None:
            caps.append(self._operator_now)
        return caps

    def _event_limits(self) -> list[tuple[DemandResponseEvent, Limit | None]]:
        out = []
        for event in self.in_force():
            if event.circuit_id is not None:
                continue
            source = LimitSource(SOURCE_UTILITY, event.event_id, "demand-response event")
            if event.limit_w is not None:
                out.append((event, Limit(float(event.limit_w), source, event.start, event.end)))
            else:
                out.append((event, None))
        return out

    def limits_in_force(self, start: datetime, end: datetime) -> list[Limit]:
        """Every limit that holds at some moment of [start, end), reductions resolved."""
        caps = [c for c in self.caps() if c.overlaps(start, end)]
        base_w = min((c.limit_w for c in caps), default=self.uncapped_w)
        out = list(caps)
        for event, limit in self._event_limits():
            if limit is None:
                limit = Limit(max(base_w - float(event.reduction_w), 0.0), LimitSource(
                    SOURCE_UTILITY, event.event_id,
                    f"demand-response event: {event.reduction_w:g} W below the cap"),
                    event.start, event.end)
            if limit.overlaps(start, end):
                out.append(limit)
        return out

    def effective_root_limit_w(self, slot_starts, slot_ends
                               ) -> tuple[np.ndarray, list[LimitSource | None]]:
        """Per slot: the minimum of every limit in force over the slot, and the limit that bound.

        Returns (values (T,) [W], +inf where nothing limits; sources, None where nothing limits).
        Ties go to the higher priority event, then to the earlier-listed source.
        """
        values = np.full(len(slot_starts), np.inf)
        sources: list[LimitSource | None] = [None] * len(slot_starts)
        priority = {e.event_id: e.priority for e in self._events.values()}
        for t, (start, end) in enumerate(zip(slot_starts, slot_ends)):
            best: tuple | None = None
            for limit in self.limits_in_force(start, end):
                key = (limit.limit_w, priority.get(limit.source.id, 0)
                       if limit.source.source == SOURCE_UTILITY else 0)
                if best is None or key < best[0]:
                    best = (key, limit)
            if best is not None:
                values[t] = best[1].limit_w
                sources[t] = best[1].source
        return values, sources

    def change_times(self, after: datetime) -> list[datetime]:
        """Every moment after `after` at which a limit begins or ends (re-plan triggers)."""
        moments = set()
        for limit in self.caps():
            moments.update(m for m in (limit.start, limit.end) if m is not None)
        for event in self._events.values():
            if not event.cancelled:
                moments.update((event.start, event.end))
        return sorted(m for m in moments if m > after)

    def circuits_limited(self) -> set[str]:
        """The circuits (not the grid connection) some event limits."""
        return {e.circuit_id for e in self._events.values()
                if e.circuit_id is not None and not e.cancelled}

    def circuit_limit_w(self, circuit_id: str, slot_starts, slot_ends
                        ) -> tuple[np.ndarray, list[LimitSource | None]]:
        """Per slot: the lowest event limit on `circuit_id` in force over the slot (+inf, None
        where none), and its source."""
        values = np.full(len(slot_starts), np.inf)
        sources: list[LimitSource | None] = [None] * len(slot_starts)
        events = [e for e in self.in_force() if e.circuit_id == circuit_id]
        for t, (start, end) in enumerate(zip(slot_starts, slot_ends)):
            for event in events:
                if event.start < end and event.end > start and event.limit_w < values[t]:
                    values[t] = event.limit_w
                    sources[t] = LimitSource(SOURCE_UTILITY, event.event_id,
                                             f"demand-response event on {circuit_id}")
        return values, sources


def cap_schedule_limits(windows: list[tuple[datetime, datetime, float]]) -> list[Limit]:
    """The operator's cap schedule as limits; ValueError naming the first bad window (the API
    checks with this before it stores the schedule)."""
    limits = []
    for i, (start, end, limit_w) in enumerate(windows):
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError(f"windows[{i}]: start and end must be timezone-aware")
        if end <= start:
            raise ValueError(f"windows[{i}].end: must be after start")
        _check_power(f"windows[{i}].limit_w", limit_w)
        limits.append(Limit(float(limit_w), LimitSource(
            SOURCE_OPERATOR, f"cap-schedule[{i}]", "operator's scheduled cap"), start, end))
    return limits


def _check_power(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0 [W], got {value!r}")
