"""How far one station's clock runs from ours, as its messages' timestamps show. One per
connection (the adapter's), reset by a BootNotification (a reboot may set the clock).

A stamp is never later than its message's send, and the send is before we receive it, so
`stamp - received` (station clock minus ours) is at most the station's offset; for a message
sent as it is stamped it is the offset less the latency and the stamp's truncation (whole
seconds). Each message gives one such value (its latest stamp's).

Which stamps (the OCPP specs): a message's own stamp is the station's clock at an event it
reports as it happens - 1.6 StatusNotification ("the time for which the status is reported"),
Start/StopTransaction; 2.0.1 TransactionEvent, StatusNotification, and NotifyEvent's and
NotifyReport's `generatedAt` ("the moment this message was generated"). A meterValue's stamp is
when its sample was measured ("timestamp for measured value(s)"): sent later (clock-aligned
values, samples batched), and on stations with a calibration-law meter often the meter's own
clock, which is not the one the station reads its schedules by. So the two are kept apart:
the samples speak alone only while the station has stamped nothing of its own, and beside its
own stamps (believed or not, one or more) only when they agree with them (a station whose
meter's clock is off is in step; one own stamp and one sample agreeing are two messages).

The estimate of each kind is the second-highest value over the messages received within
`window_s` of its newest (at least two are kept, however old) - the highest when the second
agrees with it within `agree_s` (the least latency): two messages must agree, so one
bogus stamp (a glitch, a sample stamped with the wrong time) moves nothing - except the
connection's very first stamped message, taken alone (ahead only) until a second comes: a
set-up and a first round go out within moments of a (re)connection, before a second stamp, and
a station truly off is likelier than a first stamp that lies. Messages queued while the
station was offline (stamped long before they arrive) give smaller values and cannot pull it
down while live ones are in the window; a clock corrected forward is followed from its second
message, one corrected back once the old values leave the window - except one set to ours (two
messages in a row agreeing with our clock, after stamps ahead: `_set_to_ours`), followed at
once.

Asymmetric trust: a value above zero proves the station is at least that far ahead (if its
stamps are honest: two must say so). "Behind" is the absence of higher values, and a queue
sent after a reconnect looks like a station behind: a negative estimate is believed only when
messages whose values agree with it (within `agree_s`) span `watch_s` of our clock - a clock
behind keeps the same distance from ours - in most of the messages of that span, not two of
them: messages that wait on a loaded server's answers are "behind" by a wait that wanders as
the backlog grows and drains, and its least-waiting moments agree now and then - while a
queue flushed in a burst spans no time and one dripped out slowly (a message a minute, 1.6
marks nothing as queued) falls further behind with every message. Nor by less than a message's
transit (`TRANSIT_REAL_S` of real time: a station in step whose frames we read late is that far
"behind"; on a sped-up clock, as the demo's, that many site seconds more). A queue dripped out
exactly as fast as it was filled cannot be told from a clock behind by stamps. 2.0.1's
TransactionEvent `offline: true` says it is old: skipped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from smartcharge.clock import parse_ocpp_time

WINDOW_S = 600.0   # a corrected clock is followed within this (our clock)
WATCH_S = 60.0     # agreeing values spanning this before "behind" is believed
AGREE_S = 5.0      # two values this close are the same clock (latency, whole-second stamps);
                   # two messages, on a sped-up clock, within a message's transit if more
MAX_KEPT = 1024    # messages kept per kind: a station flooding us keeps its newest
# what a message may take, real time, from its stamp to our reading it (a loaded server reads
# its frames a second or more late): a station in step reads as behind by that much, so
# "behind" is believed only beyond it - on a sped-up clock (the demo's 240x, the tests') it
# is that many site seconds more (`transit_s`)
TRANSIT_REAL_S = 2.0
# the largest offset the times a station is sent are moved by: two stamps beyond it (a meter
# whose own clock was never set, 1970 or 2000; samples stamped years ahead) say more of those
# stamps than of the clock the station applies schedules on - moved by years, every profile's
# validity would lie outside the station's now and none would limit it
MAX_SHIFT_S = 3_600.0

# action -> the field of its own stamp (camelCase, as on the wire), 1.6 and 2.0.1 alike
_OWN_STAMP = {"StatusNotification": "timestamp", "StartTransaction": "timestamp",
              "StopTransaction": "timestamp", "TransactionEvent": "timestamp",
              "NotifyEvent": "generatedAt", "NotifyReport": "generatedAt"}
_SAMPLED = frozenset({"MeterValues"})   # stamps only on its samples (1.6 and 2.0.1)


def stamps(action: str, payload: dict) -> tuple[bool, list[str]]:
    """(whether they are samples' stamps, the stamps as sent) of an inbound call: the message's
    own stamp when it has one (its samples' are then not read), else - MeterValues - each
    meterValue's. None read from a 2.0.1 TransactionEvent sent from its queue
    (`offline: true`: it says itself it is old), nor from a 1.6 StatusNotification without
    its optional timestamp."""
    if not isinstance(payload, dict) or payload.get("offline") is True:
        return False, []
    field = _OWN_STAMP.get(action)
    if field is not None:
        stamp = payload.get(field)
        return False, [] if stamp is None else [stamp]
    if action not in _SAMPLED or not isinstance(payload.get("meterValue"), list):
        return True, []
    return True, [value["timestamp"] for value in payload["meterValue"]
                  if isinstance(value, dict) and value.get("timestamp") is not None]


class _Values:
    """One kind's values: (received as POSIX s, stamp - received in s) per message, newest
    last; its estimate kept until the next message."""

    def __init__(self) -> None:
        self.kept: deque[tuple[float, float]] = deque()
        self.newest_s = -math.inf

    def add(self, received: datetime, value_s: float, window_s: float) -> None:
        received_s = received.timestamp()
        self.newest_s = max(self.newest_s, received_s)
        kept = self.kept
        kept.append((received_s, value_s))
        oldest_s = self.newest_s - window_s
        while len(kept) > MAX_KEPT or (len(kept) > 2 and kept[0][0] < oldest_s):
            kept.popleft()

    def estimate(self, watch_s: float, agree_s: float, transit_s: float = 0.0,
                 keep_s: float | None = None) -> tuple[float | None, bool]:
        """(the estimate or None with fewer than two, whether it is believed). The estimate:
        the highest value when the second-highest agrees with it (within `agree_s`: the one
        that came with the least latency, at most `agree_s` more than two messages prove),
        else the second-highest (both messages say at least that). "Behind" is believed from
        values that keep their distance from it within `keep_s` (default `agree_s`) over
        `watch_s`, at least half of the messages of their span: a queue dripped out falls
        further behind with every message, a backlog's wait wanders."""
        if len(self.kept) < 2:
            return None, False
        first = second = -math.inf
        for _, v in self.kept:
            if v > second:
                first, second = (v, first) if v > first else (first, v)
        value_s = first if first - second <= agree_s else second
        if value_s >= 0:
            return value_s, True
        if value_s >= -transit_s:       # as late as a message may be read: not behind
            return value_s, False
        keep_s = agree_s if keep_s is None else keep_s
        near = [r for r, v in self.kept if abs(v - value_s) <= keep_s]
        first_s, last_s = min(near), max(near)
        # and in most messages of that span: a station in step whose messages wait on a
        # loaded server's answers is "behind" by each one's wait, which wanders as the
        # backlog grows and drains - two of its least-waiting moments agreed across 13
        # messages (tests/test_clock_offset.py, seen in the mixed-fleet DR test at load 20)
        spanned = sum(1 for r, _ in self.kept if first_s <= r <= last_s)
        return value_s, last_s - first_s >= watch_s and 2 * len(near) >= spanned

class ClockOffset:
    """The estimate for one connection: `observe_call` each inbound call, read `offset_s`."""

    def __init__(self, window_s: float = WINDOW_S, watch_s: float = WATCH_S,
                 agree_s: float = AGREE_S,
                 transit_s: float | Callable[[], float] = 0.0) -> None:
        self.window_s = window_s
        self.watch_s = watch_s
        self.agree_s = agree_s
        # "behind" by no more than this is a message's transit; a callable is read at each
        # estimate (a clock's speed changes: the demo sets up at 1x, then runs at 240x)
        self._transit_s = transit_s
        self.reset()

    def reset(self) -> None:
        self._own = _Values()       # the messages' own stamps: the station's clock
        self._samples = _Values()   # meter samples' stamps (perhaps the meter's clock)
        self._offset_s: float | None = None
        self._stale = False
        self.sets = 0               # how often its clock was seen set to ours (`_set_to_ours`)

    def observe(self, stamp: datetime, received: datetime, *, sample: bool = False) -> None:
        """One message with one stamp (`observe_message`)."""
        self.observe_message((stamp,), received, sample=sample)

    def observe_message(self, stamps_: Sequence[datetime], received: datetime, *,
                        sample: bool = False) -> None:
        """One message's stamps (its own, or - `sample` - its samples'): its latest counts."""
        if not stamps_:
            return
        value_s = (max(stamps_) - received).total_seconds()
        (self._samples if sample else self._own).add(received, value_s, self.window_s)
        self._stale = True
        if not sample:
            self._set_to_ours()

    def _set_to_ours(self) -> None:
        """A station off our clock whose two newest messages' own stamps agree with ours (within
        a message's transit) has set its clock to ours - from our Heartbeat's or
        BootNotification's currentTime, or to true time, as ours is - without a reboot: what it
        said before is another clock, forgotten as at a boot (`reset`), its two in-step values
        kept. Left in the window, the old values held the estimate for up to `window_s`: a
        station set back from 50 min ahead was sent every schedule 50 min in its future,
        nothing of it in force (tests/test_outside_s31.py). A queue cannot fake it: its
        messages agree with our clock only if their age equals the station's offset."""
        kept = self._own.kept
        if len(kept) < 3:
            return
        in_step_s = max(self.agree_s, self.transit_s)
        newest = [kept[-2], kept[-1]]    # (a deque's ends are read in O(1); no copy)
        # ahead before (a clock behind set forward is followed from its second message; a
        # station in step with queued messages behind has nothing to forget)
        if any(abs(v) > in_step_s for _, v in newest) \
                or not any(v > in_step_s for _, v in kept):
            return
        sets = self.sets
        self.reset()
        self.sets = sets + 1
        self._own.kept.extend(newest)
        self._own.newest_s = newest[-1][0]
        self._stale = True

    def observe_call(self, action: str, payload: dict, received: datetime) -> None:
        """An inbound call's stamps (`stamps`); one that does not read is skipped (the edge
        refuses malformed times before this)."""
        sample, texts = stamps(action, payload)
        if not texts:
            return
        read = []
        for text in texts:
            try:
                read.append(parse_ocpp_time(text))
            except ValueError:
                continue
        self.observe_message(read, received, sample=sample)

    @property
    def offset_s(self) -> float | None:
        """The station's clock minus ours, at least (s); None while nothing is believed."""
        if self._stale:
            self._offset_s, self._stale = self._estimate(), False
        return self._offset_s

    @property
    def transit_s(self) -> float:
        transit = self._transit_s
        return float(transit()) if callable(transit) else transit

    def _estimate(self) -> float | None:
        # the highest of a kind's values is taken when the second is within a message's
        # transit too: their latencies differ by up to that much, on a sped-up clock many site
        # seconds (60x: 5 s is 83 ms of real time, and a loaded server read a station's boot
        # statuses, queued behind our answers, 6-10 site s apart: its own estimate was the
        # second-highest, its samples "disagreed" with it and nothing was believed). The
        # highest is the least behind. A clock behind still keeps its distance within
        # `agree_s` (a queue dripped out at 60x falls ~50 site s further behind a message),
        # and a station's own stamps and its samples still agree within `agree_s`: a server
        # reading every frame seconds late under load must not find an in-step station behind
        transit, keep_s = self.transit_s, self.agree_s
        own, samples, agree_s = self._own, self._samples, max(self.agree_s, transit)
        own_s, own_ok = own.estimate(self.watch_s, agree_s, transit, keep_s)
        if own_ok:
            return own_s
        if len(own.kept) + len(samples.kept) == 1:   # the connection's first, alone
            value_s = (own.kept or samples.kept)[0][1]
            return value_s if value_s >= 0 else None
        sampled_s, sampled_ok = samples.estimate(self.watch_s, agree_s, transit, keep_s)
        if not own.kept:           # the station stamps nothing of its own (yet)
            return sampled_s if sampled_ok else None
        # its own stamps say something not believed (one stamp; "behind" for less than a
        # minute): its samples speak only agreeing with them
        own_s = own.kept[0][1] if own_s is None else own_s
        if not sampled_ok and len(samples.kept) == 1 and len(own.kept) == 1:
            sampled_s = samples.kept[0][1]   # one of each: two messages, if they agree...
            sampled_ok = min(own_s, sampled_s) >= 0   # ...that it is ahead
        if not sampled_ok or abs(own_s - sampled_s) > self.agree_s:
            return None
        return max(own_s, sampled_s)


IN_STEP, AHEAD, BEHIND = "in_step", "ahead", "behind"


def stamp_reading(stamp: datetime, received: datetime, in_step_s: float) -> str:
    """How a message's own stamp stood against our clock as it came: IN_STEP within
    `in_step_s` (latency, whole-second stamps), else AHEAD or BEHIND."""
    lead_s = (stamp - received).total_seconds()
    return IN_STEP if abs(lead_s) <= in_step_s else AHEAD if lead_s > 0 else BEHIND


def supersedes(at: datetime, reading: str, held_at: datetime, held_reading: str) -> bool:
    """Whether a connector's status stamped `at` replaces the one held (stamped `held_at`):
    stamped at or after it - one before it is history, a station's queue delivered after its
    current status (session 30) - or stamped in step with our clock where the held one was
    ahead: the station's clock is ours now, set from our Heartbeat's or BootNotification's
    currentTime (or to true time, as ours is) without a reboot, and its fresh statuses are
    stamped before the old clock's (tests/test_outside_s31.py). A status from a queue is in
    step only if its age equals the station's offset, to within the transit. Station stamps
    are compared as they are: an estimate of the offset is none across a reconnect, and the
    first stamp of one may be its queue's."""
    return at >= held_at or (reading == IN_STEP and held_reading == AHEAD)


def transit_s(clock) -> float:
    """`TRANSIT_REAL_S` in the clock's seconds now (site seconds on a sped-up clock)."""
    return TRANSIT_REAL_S * float(getattr(clock, "speed", 1.0))


def shift_s(offset_s: float | None, margin_s: float) -> int:
    """How many whole seconds the absolute times a station is sent are moved (and those it
    answers moved back): its offset when that is beyond `margin_s`, else 0 - within the margin
    the schedules are made safe for the disagreement (`site/edges.py`) and nothing changes.
    Floored: never more than the estimate, itself never more than the offset, so a
    startSchedule at our now is never in the station's future. Beyond `MAX_SHIFT_S`, 0 too:
    not believed."""
    if offset_s is None or abs(offset_s) <= margin_s or abs(offset_s) > MAX_SHIFT_S:
        return 0
    return math.floor(offset_s)


__all__ = ["AGREE_S", "ClockOffset", "MAX_SHIFT_S", "TRANSIT_REAL_S", "WATCH_S", "WINDOW_S",
           "AHEAD", "BEHIND", "IN_STEP", "shift_s", "stamp_reading", "stamps", "supersedes",
           "transit_s"]
