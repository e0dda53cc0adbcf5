"""Where a decrease may still be settling: the nodes a raise must not be in force at once under.

Every raise is held the settle time and the clocks' margin after it is sent (`edges.held`): the
cars under the decreases it relies on need that time to follow them, and a station whose clock
is behind takes its scheduled decreases late. A raise that relies on no decrease needs no such
wait, and the wait was a car held at 0 W for 10-20 s on a site with room for it (session 25:
the next car on a connector, whose TxProfile was held though nothing had to be lowered). So a
station's raises are in force at once when (`DispatchRound._increase`):

- none of the round's decreases is under any limited node above it (its gate waited for none),
- and no decrease under those nodes may still be settling: none acknowledged by a station under
  them, and no installed schedule under them stepping down, within the hold before now.

Anything else keeps the hold. Pure but for what it reads; once per round, when a raise asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from smartcharge.site import steps


def dropped_within(step: steps.Step | None, since: datetime, now: datetime) -> bool:
    """Does a connector's installed step (moments, values) fall at a moment in (since, now]?"""
    if not step:
        return False
    return any(value < before and since < moment <= now
               for (_, before), (moment, value) in zip(step, step[1:]))


def unsettled_nodes(topology, refs: Iterable, step_of, decreased_at: Mapping[str, datetime],
                    now: datetime, hold_s: float) -> set[int]:
    """The nodes above every station that acknowledged a decrease, and above every connector
    whose installed schedule stepped down, within `hold_s` before `now` (`step_of(ref)`: its
    installed steps, `InstalledLimits.step_of`)."""
    since = now - timedelta(seconds=hold_s)
    stations = {sid for sid, at in decreased_at.items() if at > since}
    stations.update(ref.station_id for ref in refs
                    if ref.station_id not in stations and dropped_within(step_of(ref), since,
                                                                         now))
    out: set[int] = set()
    for sid in stations:
        node = topology.station_node.get(sid)
        if node is not None:
            out.update(topology.ancestors(node))
    return out


def forget_before(decreased_at: dict[str, datetime], now: datetime, hold_s: float) -> None:
    """Drop what no raise can be held for any more (the dict stays the size of a hold's
    decreases)."""
    since = now - timedelta(seconds=hold_s)
    for sid in [sid for sid, at in decreased_at.items() if at <= since]:
        del decreased_at[sid]
