"""A schedule's edges made safe for stations whose clocks disagree. Pure.

A plan steps every connector at the same slot edges, in absolute times that each station reads
on its own clock. Between two requests dispatch orders things itself (decreases acknowledged,
then the settle time, then the raises: `dispatch_round.py`); inside a schedule nothing orders
one station's step against another's, and a station whose clock runs a few seconds ahead of
another's took its raise at an edge before the other took the decrease the raise relied on:
the site drew above its cap for those seconds (the demo's guard logged it at slot edges).

So every schedule any connector is sent - a plan, an idle share, a fail-safe default - goes
through `edge_safe`, which:

- starts every raise inside it `raise_delay_s` after its edge (dispatch gives the settle time
  plus `edge_margin_s`: the cars' time to follow the decreases, as between two requests, and the
  stations' clocks' disagreement). Every raise, not only those that rely on another connector's
  decrease at that edge: which ones do is a question about the whole site at every edge, and a
  few seconds of a raise per slot edge cost next to nothing;
- ends a schedule `raise_delay_s` later when what the connector falls to after it is higher
  (its end is a raise too; its end is a decrease otherwise and stays);
- begins it `backdate_s` before now: a station whose clock is behind ours would find a schedule
  starting "now" in its future and run what lies below it until then (a higher default, maybe).

A raise at a schedule's start is a raise too: the controller re-plans ~50 ms after every slot
edge, and the new plan's first slot starts after the edge, so the raise at that edge is its
first period. So `held` keeps a schedule no higher than what is installed until the raise
delay after its sending: a re-plan inside that time finds nothing new to send, and a raise
sent at any moment comes into force no sooner than one sent with its edge - unless it relies on
no decrease at all, none sent, acknowledged or stepping down under its nodes within that delay
(`settling.py`: then the caller does not ask for `held`).

Decreases are never moved: with station clocks apart by at most `edge_margin_s`, every raise
lands after every decrease of the same edge, in real time. What a schedule installs is read back
from the request sent (`ocpp/port_base.installed_from_profile`), so the installed view and the
guard see the shifted raises as the stations run them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from smartcharge.site import steps


def edge_safe(start: datetime, offsets_s: list[float], powers_w: list[float],
              duration_s: float | None, *, raise_delay_s: float, backdate_s: float = 0.0,
              then_w: float | None = None
              ) -> tuple[datetime, list[float], list[float], float | None]:
    """(start, offsets [s from start], powers [W], duration [s] or None) of a schedule whose
    raises come `raise_delay_s` after their edges, begun `backdate_s` earlier. `then_w`: what
    the connector falls to when the schedule ends (None: not known, the end stays)."""
    if raise_delay_s < 0 or backdate_s < 0:
        raise ValueError("raise_delay_s and backdate_s: must be zero or positive")
    out: list[tuple[float, float]] = [(0.0, powers_w[0])]
    wanted = [(o, p) for i, (o, p) in enumerate(zip(offsets_s, powers_w))
              if i > 0 and p != powers_w[i - 1]]
    for offset, power in wanted:
        # a raise moved past this edge never came into force: what was before it holds on
        while len(out) > 1 and out[-1][0] >= offset:
            out.pop()
        if power == out[-1][1]:
            continue
        if power > out[-1][1]:
            offset += raise_delay_s
        if duration_s is not None and offset >= duration_s:
            continue
        out.append((offset, power))
    if duration_s is not None and then_w is not None:
        duration_s += end_delay_s(out[-1][1], then_w, raise_delay_s)
    shifted = [0.0] + [offset + backdate_s for offset, _ in out[1:]]
    return (start - timedelta(seconds=backdate_s), shifted, [p for _, p in out],
            None if duration_s is None else duration_s + backdate_s)


def end_delay_s(last_w: float, then_w: float, raise_delay_s: float) -> float:
    """How much later a schedule ends whose last value is `last_w` and that falls to `then_w`:
    its end is a raise, or not."""
    return raise_delay_s if then_w > last_w else 0.0


def end_kept(sent: steps.Step, default: steps.Step, end: datetime, installed_end: datetime,
             raise_delay_s: float) -> bool:
    """Whether a connector may keep the end its plan was installed with (`installed_end`)
    where the same plan sent now (`sent`, its steps) would end at `end`: the installed end
    delayed by at most `raise_delay_s` (`end_delay_s`: what the plan fell to when it was sent
    was higher), at the plan's last value, no higher than the connector's fail-safe `default`
    in between - within the limits whatever else is in force then. What a connector falls to
    at the common end changes once the 0 W under its car is in place (idle.py), and the end
    of the same plan with it: re-sent for those seconds, every such plan went out twice
    (issue 10: ~5 000 TxProfiles at 5 000 stations)."""
    if not end < installed_end <= end + timedelta(seconds=raise_delay_s):
        return False
    last_w = steps.value_at(sent, end - timedelta(microseconds=1))
    return all(last_w <= steps.value_at(default, moment) + 1.0
               for moment in steps.moments(default, since=end) if moment < installed_end)


def raise_delay_s(settle_s: float, edge_margin_s: float) -> int:
    """A raise's delay after its edge: the cars' settle time and the clocks' margin, in whole
    seconds (a schedule's periods count whole seconds)."""
    return math.ceil(settle_s + edge_margin_s)


def held(start: datetime, offsets_s: list[float], powers_w: list[float],
         installed: steps.Step, until: datetime
         ) -> tuple[list[float], list[float]]:
    """(offsets, powers) of a schedule from `start` no higher than `installed` (moments, values)
    before `until`. Moments fall on whole seconds of the schedule as it is sent - counted from
    `start` truncated to the second (`schedules.schedule_rates`): where the schedule rises, at
    or after the moment; where it falls, at or before it. (Floored from a start with a
    fraction, a fall on a whole second - every slot edge - went out a second early, and the
    next round, built without this, read that as a decrease: tests/test_edges_held_whole_seconds.py.)"""
    schedule = [(start + timedelta(seconds=o), p) for o, p in zip(offsets_s, powers_w)]
    if not installed or until <= start:
        return list(offsets_s), list(powers_w)
    moments = sorted({start, until} | {m for m, _ in schedule if start < m}
                     | {m for m, _ in installed if start < m < until})
    # the sent schedule's whole seconds count from here; the offsets returned from `start`
    fraction_s = start.microsecond / 1e6
    out: list[tuple[float, float]] = []
    for moment in moments:
        value = steps.value_at(schedule, moment)
        if moment < until:
            value = min(value, steps.value_at(installed, moment))
        if not out:
            out.append((0.0, value))
            continue
        if value == out[-1][1]:
            continue
        offset = (moment - start).total_seconds() + fraction_s
        if value > out[-1][1]:      # a raise: never sooner (a second later if two meet)
            out.append((max(float(math.ceil(offset)), out[-1][0] + 1.0), value))
        elif math.floor(offset) > out[-1][0]:
            out.append((float(math.floor(offset)), value))
        else:                       # a fall onto the moment before: the lower value from it
            out[-1] = (out[-1][0], value)
            if len(out) > 1 and out[-2][1] == value:
                out.pop()
    return [0.0] + [o - fraction_s for o, _ in out[1:]], [v for _, v in out]


__all__ = ["edge_safe", "end_kept", "end_delay_s", "held", "raise_delay_s"]
