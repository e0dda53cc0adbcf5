"""How far one station's clock runs from ours, as its messages' timestamps show. One per
connection (the adapter's), reset by a BootNotification (a reboot may set the clock).

A stamp is never later than its message's send, and the send is before we receive it, so
`stamp - received` (station clock minus ours) is at most the station's offset; for a message
sent as it is stamped it is the offset less the latency and the stamp's truncation (whole
seconds). The estimate is the maximum of those values over the samples received within
`window_s` of the newest one: messages queued while the station was offline (stamped long
before they arrive) give smaller values and cannot pull it down while a live one is in the
window; a clock that is corrected forward raises it at once, one corrected back lowers it
once the old samples leave the window. With no newer samples the last estimate stays.

Asymmetric trust: a value above zero proves the station is at least that far ahead - taken
at once. "Behind" is the absence of higher values, and a burst of queued messages after a
reconnect looks exactly like a station behind: a negative estimate is only reported once the
samples span `watch_s` of our clock (live messages keep coming; a flushed queue is a burst).
A station that drips its queue out slowly, one message a minute, still reads as behind for as
long as it does so (1.6 marks nothing as queued; 2.0.1's TransactionEvent `offline: true` is
skipped: `stamps`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from datetime import datetime

from smartcharge.clock import parse_ocpp_time

WINDOW_S = 600.0   # a corrected clock is followed within this (our clock)
WATCH_S = 60.0     # samples spanning this before "behind" is believed
# the largest offset the times a station is sent are moved by: one stamp beyond it (a meter
# whose own clock was never set, 1970 or 2000; a sample stamped years ahead) says more of that
# stamp than of the clock the station applies schedules on - moved by years, every profile's
# validity would lie outside the station's now and none would limit it
MAX_SHIFT_S = 3_600.0

# the actions whose timestamps are read, 1.6 and 2.0.1 alike (camelCase, as on the wire)
_STAMPED = frozenset({"MeterValues", "StatusNotification", "StartTransaction",
                      "StopTransaction", "TransactionEvent"})


def stamps(action: str, payload: dict) -> Iterator[str]:
    """The timestamps (text, as sent) of an inbound call that carries them: its own
    `timestamp` and each meterValue's (1.6 MeterValues, StopTransaction's transactionData;
    2.0.1 MeterValues, TransactionEvent). A 2.0.1 TransactionEvent sent from its queue
    (`offline: true`) gives none: it says itself it is old."""
    if action not in _STAMPED or not isinstance(payload, dict):
        return
    if payload.get("offline") is True:
        return
    stamp = payload.get("timestamp")
    if stamp is not None:
        yield stamp
    for key in ("meterValue", "transactionData"):
        values = payload.get(key)
        if isinstance(values, list):
            for value in values:
                if isinstance(value, dict) and value.get("timestamp") is not None:
                    yield value["timestamp"]


class ClockOffset:
    """The estimate for one connection: `observe` each stamped message, read `offset_s`."""

    def __init__(self, window_s: float = WINDOW_S, watch_s: float = WATCH_S) -> None:
        self.window_s = window_s
        self.watch_s = watch_s
        self.reset()

    def reset(self) -> None:
        # (received, stamp - received in s), the values decreasing from the front: the front
        # is the window's maximum (a sliding-window maximum, bounded memory)
        self._kept: deque[tuple[datetime, float]] = deque()
        self._first: datetime | None = None
        self._newest: datetime | None = None

    def observe(self, stamp: datetime, received: datetime) -> None:
        value_s = (stamp - received).total_seconds()
        if self._first is None:
            self._first = received
        if self._newest is None or received > self._newest:
            self._newest = received
        kept = self._kept
        while kept and kept[-1][1] <= value_s:
            kept.pop()
        kept.append((received, value_s))
        while (self._newest - kept[0][0]).total_seconds() > self.window_s:
            kept.popleft()

    def observe_call(self, action: str, payload: dict, received: datetime) -> None:
        """Every stamp an inbound call carries (`stamps`); one that does not read is skipped
        (the edge refuses malformed times before this)."""
        for text in stamps(action, payload):
            try:
                self.observe(parse_ocpp_time(text), received)
            except ValueError:
                continue

    @property
    def offset_s(self) -> float | None:
        """The station's clock minus ours, at least (s); None while nothing is known - or
        while it says "behind" before `watch_s` of samples."""
        if not self._kept:
            return None
        value_s = self._kept[0][1]
        if value_s < 0 and (self._newest - self._first).total_seconds() < self.watch_s:
            return None
        return value_s


def shift_s(offset_s: float | None, margin_s: float) -> int:
    """How many whole seconds the absolute times a station is sent are moved (and those it
    answers moved back): its offset when that is beyond `margin_s`, else 0 - within the margin
    the schedules are made safe for the disagreement (`site/edges.py`) and nothing changes.
    Floored: never more than the estimate, itself never more than the offset, so a
    startSchedule at our now is never in the station's future. Beyond `MAX_SHIFT_S`, 0 too:
    not believed (a single stamp decides "ahead")."""
    if offset_s is None or abs(offset_s) <= margin_s or abs(offset_s) > MAX_SHIFT_S:
        return 0
    return math.floor(offset_s)


__all__ = ["ClockOffset", "MAX_SHIFT_S", "WATCH_S", "WINDOW_S", "shift_s", "stamps"]
