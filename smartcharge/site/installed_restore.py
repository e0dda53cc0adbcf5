"""After a restart: what a connector whose transaction is older than this process has installed,
as its station says (GetCompositeSchedule), instead of its maximum.

Why: a transaction older than the process may run a TxProfile an earlier process sent - 0 W, a
share, or the whole limit. Counted at the connector's maximum (`installed.unknown_tx`), the new
plan for it is always a "decrease" and goes out ungated with the others; where the plan moves
power from a car the earlier process left high to one it left low, that "decrease" of the low
car is a raise in truth, sent before the high car's decrease lands: the site over its limit
(27.6 kW under 13.8 kW, tests/test_restart_first_round.py).

Why the station and not our audit table (`profiles_sent`): its rows are written after the
station's answer and flushed at the end of a round (dispatch.flush_audit) - a SIGKILL in a
round loses exactly that round's rows, and never knew the requests in flight. Rebuilding from it
would be wrong in the one case that matters (the kill in a DR event's round) unless every
SetChargingProfile waited for a write-ahead commit first, on the DR path. The station's own
composite is exact whatever the earlier process sent, answered or not, and whatever a reboot
made of it (OCPP 1.6 and 2.0.1 leave it to the station whether profiles survive a reboot; a
TxProfile ends with its transaction in both): one GetCompositeSchedule per such connector, at
the set-up of each connection, only while no plan of ours is accepted for that transaction.

What is kept: the composite (min of the station's maximum and the TxProfile - or the default
where none) from the station's start, every raise moved `edge_margin_s` earlier and every drop
as much later (the station's clock may disagree with ours), for the transaction that ran when it
was asked only; after its duration (longer than any plan's lifetime plus its margins: every
schedule an earlier process sent has ended by then) the connector falls to what this process
installed under it. A station that cannot say (refused, unsupported, no answer) keeps the
conservative maximum."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from smartcharge.ocpp.port import FOREVER, Installed
from smartcharge.site import steps
from smartcharge.site.station_control import StationControl
from smartcharge.site.steps import Step
from smartcharge.site.topology import ConnectorRef
from smartcharge.site.watched import WatchedDict

log = logging.getLogger("smartcharge.site.dispatch")


@dataclass(frozen=True)
class Restored:
    asked_at: datetime       # our clock when the station was asked
    installed: Installed     # widened for the clocks' disagreement; transaction 0
    transaction_id: int      # the transaction the connector ran when it was asked


class RestoredLayers:
    """Connector -> what its station said it applies (the newest answer)."""

    def __init__(self, state) -> None:
        # watched: the guard's counts depend on it (guard_counts.py)
        self.by_ref: dict[ConnectorRef, Restored] = WatchedDict()
        # the transactions that may be running when this process started (the store's open
        # ones, and those a station's boot closed that its next message may reopen): a
        # BootNotification closes them until a message shows them running again - its set-up
        # may come in between, and must ask for them all the same
        self.at_start: dict[ConnectorRef, int] = {
            s.ref: s.transaction_id for s in state.reboot_closed.values()}
        self.at_start.update({ref: s.transaction_id for ref, s in state.sessions.items()})

    def for_session(self, ref: ConnectorRef, session) -> Installed | None:
        """What the station said it applies for `session`'s transaction, if the station was
        asked about that transaction (a session reopened since is the same one). By its id,
        not its start stamp: that is the station's clock, and one ahead of ours made an
        older transaction look started after the question - counted at its maximum again."""
        kept = self.by_ref.get(ref)
        if kept is None or session is None or kept.transaction_id != session.transaction_id:
            return None
        return replace(kept.installed, transaction_id=session.transaction_id)


def bounded(told: Step, below: Step, *, upper: bool) -> Step:
    """What a connector may draw after the station said `told` (its answer over what is
    under it), now that this process may have changed what is under it (`below`: an idle
    share or a default sent since): with an old TxProfile the station still applies `told`,
    without one what is under it now - we cannot tell which. The lower of the two where a
    change is judged a raise (dispatch's order, the raises held: a raise is never taken for a
    decrease), the higher where what it may draw is bounded (the guard, a connector planned
    as a fixed load)."""
    pick = max if upper else min
    out: Step = []
    for moment in sorted({m for m, _ in told} | {m for m, _ in below}):
        value = pick(steps.value_at(told, moment), steps.value_at(below, moment))
        if not out or out[-1][1] != value:
            out.append((moment, value))
    return out


def widened(installed: Installed, margin_s: float) -> Installed:
    """Every raise `margin_s` earlier, every drop as much later (the highest value within
    `margin_s` of each moment), from `margin_s` before the start."""
    m = max(int(math.ceil(margin_s)), 0)
    starts, limits = list(installed.starts_s), list(installed.limits)
    if m == 0:
        return installed

    def value(offset_s: float) -> float:
        rate = limits[0]
        for s, v in zip(starts, limits):
            if s <= offset_s:
                rate = v
        return rate

    def window_max(lo: float, hi: float) -> float:
        inside = [v for s, v in zip(starts, limits) if lo < s < hi]
        return max([value(lo), *inside])

    # offsets from the new start, m before the old one: the window maximum only changes
    # where an old edge is m away (old offset s +- m, new s and s + 2m)
    cuts = sorted({0} | set(starts) | {s + 2 * m for s in starts})
    new_starts, new_limits = [], []
    for i, cut in enumerate(cuts):
        nxt = cuts[i + 1] if i + 1 < len(cuts) else cut + 1
        old = (cut + nxt) / 2 - m    # a moment inside [cut, nxt), in the old offsets
        v = window_max(old - m, old + m)
        if not new_limits or new_limits[-1] != v:
            new_starts.append(cut)
            new_limits.append(v)
    return replace(installed, start=installed.start - timedelta(seconds=m),
                   starts_s=new_starts, limits=new_limits)


def fitted(answer: Installed, asked_at: datetime, duration_s: int, max_rate: float
           ) -> Installed | None:
    """The station's answer over what we asked: None when it is not in a unit we know; a
    schedule that ends before the duration asked (a station may return less) is followed by
    the connector's maximum (`max_rate`, in its unit) until then - what it applies there is
    not said."""
    if answer.unit not in ("A", "W"):
        return None
    end = asked_at + timedelta(seconds=duration_s)
    if answer.expires >= end - timedelta(seconds=1):
        return replace(answer, expires=min(answer.expires, end))
    short_s = int((answer.expires - answer.start).total_seconds())
    starts = [s for s in answer.starts_s if s < short_s]
    limits = answer.limits[:len(starts)]
    return replace(answer, expires=end, starts_s=starts + [max(short_s, 0)],
                   limits=limits + [max_rate])


def on_our_clock(answer: Installed, asked_at: datetime) -> Installed:
    """The composite as of when we asked, when the station's clock is ahead: it computes it
    from its own now (its scheduleStart), and one 10 min ahead put what it applies now 10 min
    into our future (the connector counted at what lies under it until then). A start at or
    before our question is taken as it is: a composite never begins after its station's now,
    but one may begin before it (and a clock behind is what `widened` and the held raises
    are for). (The answer's few ms of latency are inside the edge margin `widened` adds.)"""
    skew = answer.start - asked_at
    if skew <= timedelta(0):
        return answer
    return replace(answer, start=asked_at,
                   expires=answer.expires if answer.expires == FOREVER
                   else answer.expires - skew)


def connectors_to_ask(dispatcher, control: StationControl) -> dict[ConnectorRef, int]:
    """The station's connectors with a transaction older than this process for which no plan
    of ours is accepted (what it runs is not ours to know), each with that transaction."""
    installed = dispatcher.installed
    out = {}
    for connector in dispatcher.topology.station(control.station_id).connectors:
        ref = ConnectorRef(control.station_id, connector.connector_id)
        session = dispatcher.view.state.sessions.get(ref)
        if session is not None:
            if not installed.unknown_tx(ref, session.transaction_id):
                continue
            transaction_id = session.transaction_id
        else:   # closed by a BootNotification, perhaps to be seen running again
            transaction_id = installed.restored.at_start.get(ref)
            if transaction_id is None:
                continue
        sent = control.sent.get(ref.connector_id)
        if sent is not None and sent.transaction_id == transaction_id:
            continue
        out[ref] = transaction_id
    return out


def duration_s(settings) -> int:
    """Longer than any schedule an earlier process sent lasts: a plan's lifetime, its early
    start and its raises' delays."""
    return int(math.ceil(settings.profile_lifetime_s + 2 * settings.edge_margin_s
                         + settings.settle_s)) + 60


async def ask_installed(dispatcher, control: StationControl) -> None:
    """At a station's set-up (its lock held, after its defaults): ask what each connector with
    an unknown transaction applies. StationOffline goes to the caller (set-up postponed)."""
    refs = connectors_to_ask(dispatcher, control)
    layers: RestoredLayers = dispatcher.installed.restored
    if refs and control.port is not None:
        await _ask(dispatcher, control, refs, layers)
    # the store's open transactions at the start are for the first set-up after it: later
    # ones ask only for the sessions seen running (a connector whose session really ended
    # is not asked at every reconnect)
    for connector in dispatcher.topology.station(control.station_id).connectors:
        layers.at_start.pop(ConnectorRef(control.station_id, connector.connector_id), None)


async def _ask(dispatcher, control: StationControl, refs: dict[ConnectorRef, int],
               layers: RestoredLayers) -> None:
    for ref in refs:   # what an earlier connection said is no longer known
        layers.by_ref.pop(ref, None)
    for ref, transaction_id in refs.items():
        asked_at = dispatcher.clock.now()
        answer = await control.port.composite(ref.connector_id, duration_s(dispatcher.settings))
        connector = dispatcher.topology.connector(ref)
        if answer is not None:
            answer = on_our_clock(answer, asked_at)
            max_rate = (dispatcher.topology.max_power_w(ref) if answer.unit == "W"
                        else connector.max_current_a)
            answer = fitted(answer, asked_at, duration_s(dispatcher.settings), max_rate)
        if answer is None:
            log.info("station %s connector %d: no composite schedule after the restart: "
                     "counted at its maximum", ref.station_id, ref.connector_id)
            break   # a station that cannot say for one will not for the others
        layers.by_ref[ref] = Restored(asked_at, widened(answer, dispatcher.settings.edge_margin_s),
                                      transaction_id)
        log.info("station %s connector %d: applies %s %s from %s (after the restart)",
                 ref.station_id, ref.connector_id, answer.limits, answer.unit, answer.start)


__all__ = ["Restored", "RestoredLayers", "ask_installed", "bounded", "fitted", "widened"]
