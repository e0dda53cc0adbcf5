"""One dispatch round: a plan's decreases first (each station's as soon as its comparison
finds them, not after every station is compared), each station's increases once the decreases
they depend on are acknowledged (`gates.py`; the settle time after them is in every raise's own
schedule, `edges.held`). A helper of
`Dispatcher` (`dispatch.py`), which owns the stations, the sending slots and the comparison of a
plan with what a station accepted (`_work`).

A station's work (what the plan changes against what it accepted) holds only while nobody
else has its lock: a station busy when the round starts (an older round's request or its
setup in flight) is compared once it is free, and one whose lock another holder had in
between (`CountingLock.holds`) is compared again. A newer round starting ends this one: what
of it has not begun is left to the newer round, and nothing waits for its requests still in
flight - a station that does not answer an older round's decrease used to hold a DR event's
decreases for its call timeouts. Nor do its later defaults not yet sent (they waited for their slot
under the station's lock, and the newer round's decrease of it waited for an obsolete default):
given up, the newer round compares them again.

Bounded per turn of the event loop (issue 10: a round resumed every station's task in one turn,
~110 ms at 5 000 stations, and the stations' messages waited behind it): the comparisons yield
every `TURN_S`; only stations with something to send get a task, started `START_BATCH` per
turn; the increases waiting for their gates are woken a batch per turn
(`pacing.py`), and so are they all when a newer round ends this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

import numpy as np

from smartcharge.site import learned
from smartcharge.site.connector_plans import station_plans
from smartcharge.site.gates import DecreaseGates
from smartcharge.site.pacing import Pacer
from smartcharge.site.plan import Plan
from smartcharge.site.settling import forget_before, unsettled_nodes
from smartcharge.site.slots import LATER
from smartcharge.site.station_control import StationControl
from smartcharge.site.topology import ConnectorRef
from smartcharge.turn_share import BACKGROUND, URGENT, TurnShare

log = logging.getLogger("smartcharge.site.dispatch")

TURN_S = 0.005      # at most this long comparing per turn of the event loop
START_BATCH = 100   # station tasks started per turn of the event loop
NOTHING = ((), (), -1, False)   # a station's work when it has nothing to send (no task)


class DispatchRound:
    def __init__(self, dispatcher, plan: Plan, over: asyncio.Event) -> None:
        self.d = dispatcher
        self.plan = plan
        self.over = over     # set when a newer round starts
        # a limit changed since the plan: its increases are not sent (a re-plan is coming)
        self.limits_version = plan.extra.get("limits_version",
                                             dispatcher.view.limits.version)
        # the stations held at what they may hold when its plan was made (`holds_added`): one
        # held since is shared around by a newer plan's round, which a limit's answer waits
        # for (site/applied.py)
        self.holds_added = min(plan.extra.get("holds_added", dispatcher.holds_added),
                               dispatcher.holds_added)
        # station id -> its connectors' plans, made as each station is compared: a list of
        # every connector's plan held for the round was objects every young collection
        # traversed (issue 10; connector_plans.py)
        self.cplans = station_plans(plan.connectors)
        # station -> (decreases, increases, the lock's holds, resend) compared at the start;
        # None: busy then, compared once free
        self.work: dict[str, tuple | None] = {}
        self.done: dict[str, asyncio.Future] = {}
        self.gates: DecreaseGates | None = None
        # wakes the waiting increases a batch per turn of the loop
        # the background CPU per turn of the loop its tasks share (turn_share.py)
        self.share = getattr(dispatcher, "share", None) or TurnShare()
        # an urgent plan's round (a limit lowered...): its tasks in the share's urgent lane
        self.lane = URGENT if plan.extra.get("urgent", False) else BACKGROUND
        self.pacer = Pacer(share=self.share, lane=self.lane)
        self._waiting: set[asyncio.Future] = set()   # increases waiting for their gates
        # stations compared (not busy) with decreases not yet holding a sending slot; the
        # defaults that may go later wait until there are none (`_queued`)
        self._unqueued: set[str] = set()
        self._compared = False
        self._later: list[asyncio.Future] = []
        # the later defaults' tickets for a sending slot (slots.py), given up when a newer
        # round ends this one
        self._tickets: set[asyncio.Future] = set()
        # what the stations hold once every decrease and lowered default of the round is
        # answered (or timed out): {station: acknowledged?}, every station compared; None: a
        # newer round ended this one first (it compares again). For whoever must know that
        # a limit reached the stations (the API's answer to a cap: site/applied.py)
        self.decreased: asyncio.Future = asyncio.get_running_loop().create_future()
        self._all_done: asyncio.Future | None = None
        # stations that refused a lowered default or idle share: not acknowledged in
        # `decreased`, their raises not held (dispatch._run_items)
        self.refused_lowering: set[str] = set()
        self.limited: dict[str, set[int]] = {}
        self._unsettled: set[int] | None = None   # settling.py, once a raise asks
        self._compared_all = False

    def end(self) -> None:
        """A newer round starts: what has not begun is left to it; the increases waiting for
        their gates give up, and so do the later defaults not yet sent (woken a batch per
        turn): each waited under its station's lock, and the newer round's decrease of that
        station waited for an obsolete default to be sent. The newer round compares them
        again (`default_sent` is unchanged)."""
        self.over.set()
        if not self.decreased.done():
            self.decreased.set_result(None)
        for future in self._waiting:
            self.pacer.wake(future, None)
        for future in self._later:
            self.pacer.wake(future, False)
        self._later.clear()
        for ticket in self._tickets:
            self.pacer.wake(ticket, False)

    async def run(self, controls: list[StationControl]) -> None:
        d, now = self.d, self.d.clock.now()
        loop = asyncio.get_running_loop()
        # station -> its decreases' task, started as soon as its comparison finds them (or it
        # is busy): comparing all 500 stations of a DR event took ~0.5 s before the first
        # decrease went out (issue 10). Increases start only once every station is compared
        # and the gates know every decrease (a busy station may have some).
        early: dict[str, asyncio.Task] = {}
        started: list[asyncio.Task] = []
        try:
            turn_began, started_then = time.perf_counter(), 0
            for control in controls:
                if time.perf_counter() - turn_began > TURN_S or self.share.should_yield() \
                        or len(early) - started_then >= START_BATCH:
                    # comparing with what is installed costs ~1 ms a station (more on a busy
                    # machine: 20 a turn was 20-40 ms): give the stations' answers (and the
                    # decreases started so far) their turn in between (issue 10); and a
                    # cheap comparison (nothing changed but a little) started up to ~260
                    # decreases' tasks whose first steps then ran in one turn (~40 ms)
                    await asyncio.sleep(0)
                    turn_began, started_then = time.perf_counter(), len(early)
                    if self.over.is_set():
                        # a newer round compares for itself: what has begun here finishes
                        self._queued()
                        await asyncio.gather(*early.values())
                        return
                sid = control.station_id
                if control.lock.locked():
                    self.work[sid] = None
                else:
                    resend = control.resend
                    try:
                        downs, ups = d._work(control, self.plan, self.cplans(sid))
                    except Exception:
                        # its own failure: the other stations' decreases still go out, and
                        # the increases it may hold wait as behind a refused decrease
                        self._failed(control, "comparing its plans")
                        continue
                    # nothing to send (most stations of most rounds): one shared entry, not a
                    # tuple and two lists per station held for the whole round (objects every
                    # young collection traverses: 15 000 a round at 5 000 stations, issue 10)
                    self.work[sid] = ((downs, ups, control.lock.holds, resend)
                                      if downs or ups else NOTHING)
                if self.work[sid] is None or self.work[sid][0]:
                    # its task takes its lock and queues for a sending slot now (FIFO): the
                    # decreases ahead of every increase, which start after the comparisons
                    if self.work[sid] is not None:
                        self._unqueued.add(sid)
                    self.done[sid] = loop.create_future()
                    early[sid] = asyncio.ensure_future(self.share.run(self._decrease(control),
                                                                      lane=self.lane))
            self._queued()
            self._report_when_decreased()
            # the comparisons' end, listing what limits each station and making the gates were
            # one step: 12-13 ms of the loop at 5 000 stations (s34-stall)
            await self._give_way()
            if not self.over.is_set():
                root_limited = np.isfinite(self.plan.root_limit_w) or bool(
                    d.view.limits.change_times(now))
                # circuits a DR event limits, once per round (not once per station)
                topo = d.topology
                index = {node_id: i for i, node_id in enumerate(topo.node_ids)}
                dr_nodes = {index[c] for c in d.view.limits.circuits_limited()
                            if c in index and c != topo.node_ids[0]}
                self.limited = limited_by_station(topo, [c.station_id for c in controls],
                                                  root_limited, dr_nodes)
                await self._give_way()
            if not self.over.is_set():   # else: not begun, left to the newer round
                self.gates = DecreaseGates(self.done, self.limited, self.pacer)
            for control in controls if self.gates is not None else ():
                decreasing = early.get(control.station_id)
                if decreasing is None and not self.work[control.station_id][1]:
                    continue   # nothing to send: no task (most stations of most rounds)
                started.append(asyncio.ensure_future(
                    self.share.run(self._station(control, decreasing), lane=self.lane)))
                if len(started) % START_BATCH == 0 or self.share.should_yield():
                    # a batch per turn: every station's first step in one turn was ~50 ms
                    # at 5 000 (issue 10)
                    await asyncio.sleep(0)
                    if self.over.is_set():
                        break   # not begun: left to the newer round
            # every decrease begun finishes (those of stations not started too)
            await asyncio.gather(*started, *early.values())
        finally:
            self._queued()   # (returned early: a newer round) the later defaults go on
            for task in (*early.values(), *started):
                task.cancel()   # only when the round itself is cancelled: done otherwise
            if self.gates is not None:
                self.gates.cancel()
            self.pacer.close()
            # (its decreases all answered: said now, not after the callback's turn)
            self._report()

    async def _give_way(self) -> None:
        """The loop's turn back if the share's is spent (turn_share.py)."""
        if self.share.should_yield():
            await asyncio.sleep(0)

    def _report_when_decreased(self) -> None:
        """Every station compared: `decreased` is set once each one's decreases are done."""
        self._compared_all = True
        self._all_done = asyncio.gather(*self.done.values(), return_exceptions=True)
        self._all_done.add_done_callback(lambda _: self._report())

    def _report(self) -> None:
        if self.decreased.done():
            return
        if self.over.is_set() or not self._compared_all:
            self.decreased.set_result(None)   # superseded (or cancelled): the newer decides
            return
        if not all(done.done() for done in self.done.values()):
            return
        outcome = {sid: True for sid in self.work}
        for sid, done in self.done.items():
            outcome[sid] = not done.cancelled() and bool(done.result()[0]) \
                and sid not in self.refused_lowering
        self.decreased.set_result(outcome)

    def pending(self) -> tuple[list[str], list[str]]:
        """(stations whose decreases are still unanswered, those refused or unanswered)."""
        waiting = sorted(sid for sid, done in self.done.items() if not done.done())
        failed = sorted(sid for sid, done in self.done.items()
                        if done.done() and not done.cancelled()
                        and (not done.result()[0] or sid in self.refused_lowering))
        return waiting, failed

    def _queued(self, sid: str | None = None) -> None:
        """`sid`'s decreases hold a sending slot (or it has none to send); None: every station
        is compared. Once both hold for all, the defaults that may go later queue for their
        slots (a batch per turn)."""
        if sid is None:
            self._compared = True
        else:
            self._unqueued.discard(sid)
        if self._compared and not self._unqueued:
            for future in self._later:
                self.pacer.wake(future, True)
            self._later.clear()

    async def _after_decreases(self) -> bool:
        """Until every compared station's decreases hold a slot or are done (`_queued`);
        False: a newer round ended this one meanwhile (`end`)."""
        if self.over.is_set():
            return False
        if self._compared and not self._unqueued:
            return True
        future = asyncio.get_running_loop().create_future()
        self._later.append(future)
        return await future and not self.over.is_set()

    async def _later_slot(self) -> bool:
        """A sending slot at the LATER level for a station's later defaults, once every
        station's decreases hold one; False (no slot held): a newer round ended this one
        before (`end`), and its own comparison decides what of them still goes out."""
        if not await self._after_decreases():
            return False
        slots = self.d._sending
        ticket = slots.queue(LATER)
        self._tickets.add(ticket)
        try:
            held = await ticket
        except asyncio.CancelledError:
            slots.withdraw(ticket, LATER)
            raise
        finally:
            self._tickets.discard(ticket)
        if held and not self.over.is_set():
            return True
        slots.withdraw(ticket, LATER)   # (handed one in the turn the round ended) passes on
        return False

    def _current(self, control: StationControl) -> tuple[list, list]:
        """Under the station's lock: its work, compared again if it is stale."""
        sid = control.station_id
        first = self.work[sid]
        if first is not None and control.lock.holds == first[2] + 1:
            return first[0], first[1]
        if first is not None:
            control.resend |= first[3]   # the first comparison consumed it
        return self.d._work(control, self.plan, self.cplans(sid))

    def _unsettled_nodes(self) -> set[int]:
        """The nodes a decrease may still be settling under (settling.py), once per round."""
        if self._unsettled is None:
            d = self.d
            now = d.clock.now()
            hold_s = d.raise_delay_s()
            forget_before(d.decreased_at, now, hold_s)
            self._unsettled = unsettled_nodes(d.topology, d.topology.refs,
                                              d.installed.step_of, d.decreased_at, now, hold_s)
        return self._unsettled

    def _superseded(self) -> bool:
        """A newer plan, or a limit changed since this one (an operator's cap lowered at once:
        the re-plan takes a moment; no increase of the old plan goes out meanwhile)."""
        return (self.over.is_set() or self.d._wake.is_set()
                or self.d.view.limits.version != self.limits_version)

    def _failed(self, control: StationControl, what: str) -> None:
        """A defect met in one station's work ends its part of the round only (it ended the
        whole round, and the cleanup cancelled every other station's decreases on their way):
        its decreases count as not acknowledged, holding the increases under its nodes, and
        the next round compares all of it again."""
        sid = control.station_id
        log.exception("station %s: %s failed; its increases and those it holds wait for the "
                      "next round", sid, what)
        control.resend = True
        self.work[sid] = NOTHING
        outcome = self.done.get(sid)
        if outcome is None:
            outcome = self.done[sid] = asyncio.get_running_loop().create_future()
        if not outcome.done():
            outcome.set_result((False, None))
        self._queued(sid)

    async def _station(self, control: StationControl,
                       decreasing: asyncio.Task | None) -> None:
        sid = control.station_id
        if decreasing is not None:
            rest = await decreasing
            if rest is None:
                return
            ups, holds = rest
        else:
            _, ups, holds, _ = self.work[sid]
        if ups:
            try:
                await self._increase(control, ups, holds)
            except Exception:
                self._failed(control, "sending its increases")

    async def _decrease(self, control: StationControl) -> tuple[list, int] | None:
        """Its decreases; (its increases, the lock's holds after), None: superseded."""
        d = self.d
        ok, at, rest = False, None, None
        if control.lock.locked():
            # another holder took it since the comparison (a set-up): the later defaults of
            # the other stations do not wait for it
            self._queued(control.station_id)
        try:
            async with control.lock:
                if self.over.is_set():
                    self._queued(control.station_id)
                    return None   # not begun when a newer round came: that one decides
                try:
                    downs, ups = self._current(control)
                except Exception:
                    self._failed(control, "comparing its plans")
                    return None
                ok = True
                if downs:
                    # what the site draws under first; the defaults under a plan in force
                    # queue for a slot again, behind every station's decreases queued by then
                    # (slots.py) - still under the station's lock and before its outcome,
                    # which the increases wait for
                    later = [item for item in downs if is_later(item)]
                    now_items = [item for item in downs if not is_later(item)]
                    if now_items:
                        async with d._sending:
                            self._queued(control.station_id)
                            ok = False   # until its answers say otherwise (an error: held)
                            ok = await d._run_items(control, now_items, decrease=True,
                                                    refused=self.refused_lowering)
                    self._queued(control.station_id)
                    if later and await self._later_slot():
                        try:
                            ok &= await d._run_items(control, later, decrease=True,
                                                     refused=self.refused_lowering)
                        finally:
                            d._sending.release()
                    at = d.clock.now()
                    d.decreased_at[control.station_id] = at   # settling: no raise at once
                rest = (ups, control.lock.holds)
        finally:
            self._queued(control.station_id)   # (an error) nobody waits for it
            outcome = self.done[control.station_id]
            if not outcome.done():   # cancelled only when the whole round is
                outcome.set_result((ok, at))
        return rest

    async def _released(self, future: asyncio.Future):
        """`future`'s result, or None once a newer round ends this one (`end`)."""
        if self.over.is_set():
            return None
        self._waiting.add(future)
        try:
            return await future
        finally:
            self._waiting.discard(future)

    async def _turn(self, sid: str) -> tuple[bool, datetime | None]:
        """Wait for the decreases this station's increases depend on; (go on, when the last of
        those decreases was acknowledged). Not going on: one was not acknowledged (held,
        re-planning), or a newer plan came meanwhile (its round decides, after its own
        decreases: waiting on here held a DR event's decreases back, issue 10). The settle
        time after them is in the raises' own schedules (edges.held)."""
        d = self.d
        gate = await self._released(self.gates.waiter(sid))
        if gate is None or self._superseded():
            return False, None   # a decrease left to the newer round is not a failure
        failed, latest = gate
        if failed:
            log.warning("station %s: increases held: decreases at %s not acknowledged; "
                        "re-planning", sid, ", ".join(failed[:10])
                        + (f" and {len(failed) - 10} more" if len(failed) > 10 else ""))
            d.publish(learned.ReplanWanted(f"held:{sid}"))
            return False, None
        return not self._superseded(), latest

    async def _increase(self, control: StationControl, items: list, holds: int) -> None:
        d, sid = self.d, control.station_id
        # every raise - a plan's, an idle share's, a default's - comes into force no sooner
        # than the settle time and the clocks' margin after it is sent (edges.held), so after
        # the decreases' settle time when it is sent once they are acknowledged: it goes out
        # then (waiting the settle time first held it back twice)
        go, latest = await self._turn(sid)
        if not go:
            return
        # relying on no decrease (none of the round's under its nodes, none settling there),
        # its raises are in force when installed: held, a car waited 10-20 s at 0 W for
        # nothing (settling.py)
        at_once = latest is None and not (self.limited.get(sid, set())
                                          & self._unsettled_nodes())
        async with control.lock:
            if control.lock.holds != holds + 1:
                # another holder changed what it accepted: compared again, its own
                # decreases first
                downs, items = d._work(control, self.plan, self.cplans(sid))
                if downs:
                    async with d._sending:
                        ok = await d._run_items(control, downs, decrease=True)
                        d.decreased_at[sid] = d.clock.now()   # settling: no raise at once
                        if not ok:
                            d.publish(learned.ReplanWanted(f"held:{sid}"))
                            return
            if d._latest is not self.plan and d._latest is not None:
                # a newer plan came while we waited: only what it still allows goes out
                # now, the rest with its own round (after its own decreases)
                items = [item for item in items if still_wanted(item, sid, d._latest)]
            async with d._sending:
                # a newer plan or a limit moved while this queued, or while one of these was
                # answered: the rest is left to the newer round (checked before every item)
                # (not when its own decrease came in between: compared again above)
                if not at_once or sid in d.decreased_at:
                    await d._run_items(control, items, decrease=False,
                                       superseded=self._superseded)
                    return
                d.raising_at_once.add(sid)
                try:
                    await d._run_items(control, items, decrease=False,
                                       superseded=self._superseded)
                finally:
                    d.raising_at_once.discard(sid)


def is_later(item: tuple) -> bool:
    """A station's lowered defaults that may go after every station's decreases (`_work`)."""
    return item[0] == "defaults" and len(item) > 2 and item[2] == LATER


def still_wanted(item: tuple, station_id: str, latest: Plan) -> bool:
    """An increase from an older plan that the latest plan allows in every interval."""
    if item[0] == "idle":
        value = latest.idle_w.get(ConnectorRef(station_id, item[1]))
        return value is not None and value >= item[2] - 1.0
    if item[0] == "plan":
        old = item[1]
        new = latest.connectors.get(old.ref)
        if new is None or new.transaction_id != old.transaction_id:
            return False
        moments = [m for m in set(old.slot_starts) | set(new.slot_starts)
                   if m >= max(old.start, new.start)]
        return all(new.power_at(m) >= old.power_at(m) - 1.0 for m in moments)
    return True


def limited_by_station(topo, station_ids: list[str], root_limited: bool,
                       dr_nodes: set[int] = frozenset()) -> dict[str, set[int]]:
    """Per station, the nodes above it that have a limit: two stations sharing one depend on
    each other's decreases. The root counts when any limit (cap, DR event) may hold on it.
    The circuits above are computed once per circuit a station hangs from (per station:
    14-24 ms CPU in one step of the loop at 5 000, issue 10)."""
    above: dict[int, frozenset[int]] = {}
    out = {}
    for station_id in station_ids:
        node = topo.station_node[station_id]
        parent = int(topo.node_parent[node])
        circuits = above.get(parent)
        if circuits is None:
            chain = topo.ancestors(parent)
            found = {n for n in chain if np.isfinite(topo.static_limit_w[n])
                     or np.isfinite(topo.static_limit_a[n])}
            if root_limited:
                found.add(0)
            # a circuit with no limit of its own is limited while a DR event is on it
            found.update(dr_nodes.intersection(chain))
            circuits = above[parent] = frozenset(found)
        out[station_id] = {node, *circuits}   # its own decreases, always
    return out
