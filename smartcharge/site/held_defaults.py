"""What each station's fail-safe defaults may be in it, kept in the store across our restarts.

An offline station keeps the defaults it accepted whatever we decide, so the others' defaults
share what it leaves (failsafe.hold_offline). A new process knew nothing of what it holds: a
station offline since before a restart was shared as if it had taken a new, lower share, and
once we were gone the stations' own profiles summed over the cap (CP1 away on 22 kW, CP2 given
15 kW of a 30 kW cap: tests/test_failsafe_held_restart.py). So per connector the store keeps
the most its default may be (`store_failsafe.py`): the larger of what it accepted (its maximum
where none is known accepted) and what it was last sent, and every station is held at it from
the start until its first set-up's defaults went out.

Written ahead: a default that may raise what is stored is recorded before it is sent (killed
after the station took it, the record must not be lower); after the answers the record is what
is known then (lower or the same). Both under the station's lock, so they land in order. A
station that lost its profiles while we were away draws up to its maximum, which no record can
know: the record is what we told it, as the in-process hold is.

A record that only lowers is not waited for: it is queued and written with the others queued
meanwhile, in one store transaction (`_flush_held`). Lost (killed before it lands), the stored
record is the higher one from before - a restart holds the station at more than it has, never
less. Awaited under the station's lock and a sending slot, each lowered default of a DR round
held its station's round for a commit: 500 store transactions a round at 1 000 connectors,
and the round at 2.0 s where it was 1.3-1.6 s before the records (issue 10, s28-dr). A record
that raises anything stored is still written and committed before we go on, and takes the
station's queued one out of the queue (its own is newer): the queued lower one never lands
after it (the store runs work in the order it is given).

Beside each connector's default record, the most an idle share of ours may let a car draw there
where that is above the default (`_idle_above`), written ahead the same way when an idle share
raises it (idle.py) - a restart holds a station still offline at it for a profile's lifetime.

A mixin of `Dispatcher` (needs `store`, `clock`, `topology`, `stations`, `installed`,
`settings`, `_held_offline`, `_held_version`, `_default_steps`, `_idle_sent_w`, `_spawn`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from smartcharge import store_failsafe
from smartcharge.site import learned, steps
from smartcharge.site.station_control import StationControl
from smartcharge.site.steps import Step
from smartcharge.site.topology import ConnectorRef
from smartcharge.store_ops import StoreOp
from smartcharge.store_refusals import log_unless_refused

log = logging.getLogger("smartcharge.site.dispatch")


def envelope(kept, since) -> Step:
    """The most any of the steps `kept` allows at each moment from `since` on."""
    out: Step = []
    for moment in steps.moments(*kept, since=since):
        value = max(steps.value_at(step, moment) for step in kept)
        if not out or out[-1][1] != value:
            out.append((moment, value))
    return out


class HeldDefaults:
    def _held_kept(self, control: StationControl) -> tuple:
        """((ref, (W steps, ...)), ...) per connector of the station: what it accepted (its
        maximum where unknown), and what it was last sent as W before its unit's rounding - it
        may hold the larger of them."""
        held = []
        for connector in self.topology.station(control.station_id).connectors:
            ref = ConnectorRef(control.station_id, connector.connector_id)
            # read back from the station's unit alone, the same share held 7 452 W where
            # 7 500 W was sent, and every station's default moved by the difference at each
            # drop and each return
            accepted = tuple(self._default_steps(control, ref, connector.phases))
            sent = control.default_sent.get(connector.connector_id)
            held.append((ref, (accepted,) if sent is None else (accepted, tuple(sent))))
        return tuple(held)

    async def _record_held(self, control: StationControl, new: dict[int, Step] | None = None,
                           *, queue_lower: bool = False,
                           idle_new: dict[int, float] | None = None) -> None:
        """Store what the station's connectors may hold now, with `new` (connector id -> W
        steps about to be sent) as if taken too, and `idle_new` (connector id -> an idle
        share about to be sent, W): written only where that raises what is stored (written
        ahead), or, without either, where it differs - `queue_lower`: where it only lowers,
        queued and not waited for (`_queue_held`)."""
        if self.store is None:
            return
        now = self.clock.now()
        held, idle = {}, {}
        for ref, kept in self._held_kept(control):
            extra = new.get(ref.connector_id) if new is not None else None
            step = envelope(kept if extra is None else (*kept, extra), now)
            held[ref.connector_id] = step
            idle[ref.connector_id] = self._idle_above(
                control, ref, step, now, None if idle_new is None
                else idle_new.get(ref.connector_id))
        sid = control.station_id
        stored = self._held_stored.get(sid, {})
        stored_idle = self._idle_stored.get(sid, {})
        raises = any(stored.get(c) is None or steps.compare(stored[c], step, now)[1]
                     for c, step in held.items()) or any(
            w is not None and (stored_idle.get(c) is None or w > stored_idle[c] + 1e-6)
            for c, w in idle.items())
        if not raises:
            # the same from now on (a step made now starts now: compared by value, or every
            # idle share answered wrote its station's record again)
            if new is not None or idle_new is not None or (
                    all(stored.get(c) is not None
                        and steps.compare(stored[c], step, now) == (False, False)
                        for c, step in held.items())
                    and all(stored_idle.get(c) == w for c, w in idle.items())):
                return
            if queue_lower:
                self._queue_held(sid, held, now, idle)   # a stale record is a higher one
                return
        self._held_pending.pop(sid, None)   # this one is newer, and lands first
        try:
            await self.store.run(StoreOp(   # by name: the writer process takes it
                store_failsafe.write_held, sid, held, at=now, idle=idle))
        except Exception as error:   # the defaults go out all the same: the station needs them
            log_unless_refused(log, error, "station %s: what its fail-safe defaults may hold "
                               "is not stored", sid)
            self._held_stored.pop(sid, None)   # not known: the next record is written
            self._idle_stored.pop(sid, None)
            return
        self._held_stored[sid] = held
        self._idle_stored[sid] = idle

    def _idle_above(self, control: StationControl, ref: ConnectorRef, default: Step, now,
                    new_w: float | None) -> float | None:
        """The most an idle share of ours may let a car draw at the connector - the one in
        force (as taken, and as sent before its unit's rounding) and `new_w` about to be sent
        - where that is above what its default record allows from now on; else None.

        Stored beside the default record: a station offline through a restart of ours holds
        its idle share (until the plans' common end, up to 30 min) above its default, and the
        new process, knowing the default alone, gave that room to the others - CP1 a 15 kW
        plan beside offline CP2's 22 kW idle share under a 30 kW grid
        (tests/test_outside_s36_held_idle.py). No end is stored: every share ends at most a
        profile's lifetime after it was sent, so a restart holds it that long from its start -
        and a share re-sent to a later common end writes nothing."""
        out = new_w
        layer = control.idle_layer.get(ref.connector_id)
        if layer is not None and layer.expires > now:
            phases = self.topology.connector(ref).phases
            most = max(w for _, w in self.installed.sent_steps(layer, phases, 1.0, ref))
            sent = self._idle_sent_w.get(ref)
            most = most if sent is None else max(most, sent)
            out = most if out is None else max(out, most)
        if out is None or out <= steps.maximum(default, now) + 1.0:
            return None   # its default allows as much: nothing to keep beside it
        return out

    def _queue_held(self, station_id: str, held: dict[int, Step], at,
                    idle: dict[int, float | None] | None = None) -> None:
        """A record that lowers what is stored, written with the others queued meanwhile
        (`_flush_held`); counted as stored from now, so a later raise above it is written
        ahead and one under it is not (the store ends at the lower record or this one, both
        above it)."""
        self._held_pending[station_id] = (held, at, idle or {})
        self._held_stored[station_id] = held
        self._idle_stored[station_id] = idle or {}
        if not self._held_flushing:
            self._held_flushing = True
            self._spawn(self._flush_held())

    async def _flush_held(self) -> None:
        """The queued records, each batch in one store transaction, until none is queued; the
        batch is taken and handed to the store in one step (nothing overtakes it)."""
        try:
            while self._held_pending:
                batch, self._held_pending = self._held_pending, {}
                await self._write_held_batch(batch)
        finally:   # (cancelled at close: `flush_held` writes what is left)
            self._held_flushing = False

    async def _write_held_batch(self, batch: dict) -> None:
        try:
            await self.store.run(StoreOp(store_failsafe.write_held_batch, batch))
        except Exception as error:   # stale: the higher records from before stay: safe
            log_unless_refused(log, error, "what the fail-safe defaults of %d stations may "
                               "hold (lowered) is not stored", len(batch))
            for station_id, (held, *_) in batch.items():
                if self._held_stored.get(station_id) is held:
                    self._held_stored.pop(station_id)   # not known: the next is written
                    self._idle_stored.pop(station_id, None)

    async def flush_held(self) -> None:
        """At close: the queued records written (a restart then holds no station higher than
        needed)."""
        batch, self._held_pending = self._held_pending, {}
        if batch and self.store is not None:
            await self._write_held_batch(batch)

    async def restore_held(self) -> int:
        """At start, before any station connects: every station is held at what the store
        says its defaults may be until it is set up (connectors the site file no longer lists
        are left out). Returns how many connectors are held."""
        if self.store is None:
            return 0
        rows = await self.store.run(store_failsafe.read_held)
        idle_rows = await self.store.run(store_failsafe.read_held_idle)
        count = 0
        for station_id, by_connector in rows.items():
            if station_id not in self.stations:
                continue
            station = self.topology.station(station_id)
            known = {c.connector_id for c in station.connectors}
            held = tuple((ConnectorRef(station_id, c), (step,))
                         for c, step in sorted(by_connector.items()) if c in known)
            if held:
                self._held_offline[station_id] = held
                self._held_stored[station_id] = {ref.connector_id: kept[0]
                                                 for ref, kept in held}
                self._idle_stored[station_id] = {
                    c: w for c, w in idle_rows.get(station_id, {}).items() if c in known}
                count += len(held)
        if count:
            self._held_version += 1
            self.holds_added += 1
            now = self.clock.now()
            # an idle share the process before sent ends at most a profile's lifetime after
            # it was sent: held that long from now (`_idle_above`)
            until = now + timedelta(seconds=self.settings.profile_lifetime_s)
            for station_id, held in self._held_offline.items():
                idle = self._idle_stored.get(station_id, {})
                self.publish(learned.HeldIdle(station_id, tuple(
                    (ref, kept[0] if idle.get(ref.connector_id) is None else envelope(
                        (kept[0], [(now, idle[ref.connector_id]), (until, 0.0)]), now))
                    for ref, kept in held), self.holds_added))
            log.info("%d connectors held at their stored fail-safe defaults until their "
                     "stations are set up", count)
        return count

    def _flush_releases(self) -> None:
        """The stations set up since the last flush take their shares (one change of the
        defaults' key for a boot storm's set-ups, not one each: every change made every
        station's shares be computed again). Holding one a little longer is safe: its set-up
        gave it what it was held at."""
        pending, self._release_pending = self._release_pending, set()
        released = [sid for sid in pending if self._held_offline.pop(sid, None) is not None]
        if released:
            self._held_version += 1
        for sid in released:
            self.publish(learned.HeldIdle(sid, (), self.holds_added))
