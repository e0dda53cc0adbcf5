"""What an OpenADR event asks of the site, version-neutral and pure: signals in, the site's own
demand-response limits and prices out. The 2.0b and 3 parsers (`v2b_events.py`,
`v3_events.py`) turn their payloads into `AdrEvent`; `map_event` does the rest.

Rules (docs/openadr.md):
- capacity signals (2.0b LOAD_DISPATCH setpoint, LOAD_CONTROL x-loadControlCapacity; 3
  IMPORT_CAPACITY_LIMIT) and SIMPLE levels are limits in W for exactly their intervals; where
  several limit signals of one event overlap, the lowest holds (most restrictive wins, as
  everywhere in the site);
- a SIMPLE level is a limit from the program (`simple_levels_w`, or fractions of the cap of
  its circuit); level 0 is "normal operation": a limit at the circuit's cap, which asks for
  nothing more than the site's own caps but, within a program, replaces a lower-priority
  event where they overlap (site/dr_priority.py); level 3 by default is 0 W of
  controllable charging: only what the site cannot control (connectors that ignore profiles,
  planned at what they may draw) is left;
- prices (2.0b ELECTRICITY_PRICE price; 3 PRICE per kWh) become price intervals;
- a randomised start (2.0b `startafter`, 3 `randomizeStart`) shifts the whole event by an
  offset in [0, window) that is the same every time for the same event, modified or not
  (neither a restart nor a modification may move an accepted event);
- a cancelled event, or a program the operator opted out of, asks for nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smartcharge.clock import TIMES_FROM, TIMES_UNTIL
from smartcharge.site.limits import DemandResponseEvent

CAPACITY_W = "capacity_w"                # a limit [W]
CAPACITY_PERCENT = "capacity_percent"    # a share of the circuit's cap [%, 0..100]
SIMPLE = "simple"                        # level 0..3
PRICE = "price"                          # [currency/kWh]
LOWEST_PRIORITY = 1_000_000              # "no priority" in both specifications
SOURCE_PREFIX = "openadr:"


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime
    value: float


@dataclass(frozen=True)
class Signal:
    kind: str                            # one of the kinds above
    intervals: tuple[Interval, ...]


@dataclass(frozen=True)
class AdrEvent:
    """One event as the VTN sent it, in the site's units (W, UTC), any version."""

    program: str
    event_id: str
    modification: int = 0
    priority: int = LOWEST_PRIORITY      # 0 is the highest
    cancelled: bool = False
    randomize_s: float = 0.0             # start may be shifted by up to this much
    signals: tuple[Signal, ...] = ()
    ignored: tuple[str, ...] = ()        # signals we do not act on, named for the log
    resources: tuple[str, ...] = ()      # resources the event targets (may name a circuit)


@dataclass(frozen=True)
class PriceInterval:
    start: datetime
    end: datetime
    price_per_kwh: float


@dataclass(frozen=True)
class Mapping:
    limits: tuple[DemandResponseEvent, ...] = ()
    prices: tuple[PriceInterval, ...] = ()
    notes: tuple[str, ...] = field(default=())


def source_id(program: str, event_id: str) -> str:
    return f"{SOURCE_PREFIX}{program}/{event_id}"


def owns(prefix: str, dr_event_id: str) -> bool:
    """Whether a site DR event came from the OpenADR event named by `prefix`."""
    return dr_event_id == prefix or dr_event_id.startswith(prefix + "#")


def simple_levels_w(levels_w: tuple | None, fractions: tuple, cap_w: float) -> dict[int, float]:
    """The limit of SIMPLE levels 1..3 [W]: explicit watts, else fractions of the cap."""
    if levels_w is not None:
        return {i + 1: float(w) for i, w in enumerate(levels_w)}
    return {i + 1: float(f) * cap_w for i, f in enumerate(fractions)}


def random_offset_s(event: AdrEvent, ven: str, window_s: float) -> float:
    """A stable offset in [0, window_s): the same VEN and event always get the same share of
    the window - also after a modification, which must not move an event that runs (a new
    draw could put its start back in the future and lift its limit meanwhile)."""
    if window_s <= 0:
        return 0.0
    digest = hashlib.sha256(f"{ven}|{event.program}|{event.event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * window_s


def map_event(event: AdrEvent, *, cap_w: float, levels_w: dict[int, float], ven: str = "",
              opt_in: bool = True, randomize: bool = True) -> Mapping:
    """The site's DR events (ids "openadr:<program>/<event>", then "#1", "#2"... for later
    pieces with another limit) and price intervals for one OpenADR event."""
    if event.cancelled or not opt_in:
        return Mapping(notes=("cancelled" if event.cancelled else "opted out",))
    shift = timedelta(seconds=random_offset_s(event, ven, event.randomize_s)
                      if randomize else 0.0)
    pieces: list[tuple[datetime, datetime, float]] = []
    prices: list[PriceInterval] = []
    notes = list(event.ignored)
    for signal in event.signals:
        for iv in signal.intervals:
            if iv.start >= TIMES_UNTIL - shift - timedelta(seconds=1) \
                    or iv.end <= TIMES_FROM - shift:
                # past what a station's schedule can carry (a startPeriod in 32 bits): a
                # 9999-12-31 event made every dispatch fail, one in 2999 reached the stations
                notes.append(f"an interval from {iv.start.isoformat()} is outside "
                             f"{TIMES_FROM.year}-{TIMES_UNTIL.year - 1}: ignored")
                continue
            # until 2090: "until further notice", as a century's interval is
            start = max(iv.start + shift, TIMES_FROM)
            end = min(iv.end, TIMES_UNTIL - shift) + shift
            if signal.kind == CAPACITY_W:
                pieces.append((start, end, max(iv.value, 0.0)))
            elif signal.kind == CAPACITY_PERCENT:
                pieces.append((start, end, max(min(iv.value, 100.0), 0.0) / 100.0 * cap_w))
            elif signal.kind == SIMPLE:
                level = int(round(iv.value))
                if level == 0:      # normal operation: nothing below the cap (it still
                    pieces.append((start, end, cap_w))   # replaces lower-priority events)
                elif level in levels_w:
                    pieces.append((start, end, levels_w[level]))
                else:
                    notes.append(f"SIMPLE level {iv.value!r} is not 0..3: ignored")
            elif signal.kind == PRICE:
                prices.append(PriceInterval(start, end, float(iv.value)))
    return Mapping(tuple(_limit_events(event, pieces)), tuple(prices), tuple(notes))


def _limit_events(event: AdrEvent, pieces) -> list[DemandResponseEvent]:
    """Overlapping pieces -> the lowest at each moment; equal neighbours merged."""
    edges = sorted({m for start, end, _ in pieces for m in (start, end)})
    segments: list[list] = []
    for start, end in zip(edges, edges[1:]):
        covering = [w for s, e, w in pieces if s < end and e > start]
        if not covering:
            continue
        limit_w = min(covering)
        if segments and segments[-1][1] == start and segments[-1][2] == limit_w:
            segments[-1][1] = end
        else:
            segments.append([start, end, limit_w])
    base = source_id(event.program, event.event_id)
    return [DemandResponseEvent(event_id=base if k == 0 else f"{base}#{k}", start=start,
                                end=end, limit_w=limit_w, priority=event.priority)
            for k, (start, end, limit_w) in enumerate(segments)]
