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

A mixin of `Dispatcher` (needs `store`, `clock`, `topology`, `stations`, `_held_offline`,
`_held_version`, `_default_steps`, `_spawn`)."""

from __future__ import annotations

import logging

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
                           *, queue_lower: bool = False) -> None:
        """Store what the station's connectors may hold now, with `new` (connector id -> W
        steps about to be sent) as if taken too: written only where that raises what is
        stored (written ahead), or, without `new`, where it differs - `queue_lower`: where it
        only lowers, queued and not waited for (`_queue_held`)."""
        if self.store is None:
            return
        now = self.clock.now()
        held = {}
        for ref, kept in self._held_kept(control):
            extra = new.get(ref.connector_id) if new is not None else None
            held[ref.connector_id] = envelope(kept if extra is None else (*kept, extra), now)
        sid = control.station_id
        stored = self._held_stored.get(sid, {})
        raises = any(stored.get(c) is None or steps.compare(stored[c], step, now)[1]
                     for c, step in held.items())
        if not raises:
            if new is not None or all(stored.get(c) == step for c, step in held.items()):
                return
            if queue_lower:
                self._queue_held(sid, held, now)   # a stale record is a higher one
                return
        self._held_pending.pop(sid, None)   # this one is newer, and lands first
        try:
            await self.store.run(StoreOp(   # by name: the writer process takes it
                store_failsafe.write_held, sid, held, at=now))
        except Exception as error:   # the defaults go out all the same: the station needs them
            log_unless_refused(log, error, "station %s: what its fail-safe defaults may hold "
                               "is not stored", sid)
            self._held_stored.pop(sid, None)   # not known: the next record is written
            return
        self._held_stored[sid] = held

    def _queue_held(self, station_id: str, held: dict[int, Step], at) -> None:
        """A record that lowers what is stored, written with the others queued meanwhile
        (`_flush_held`); counted as stored from now, so a later raise above it is written
        ahead and one under it is not (the store ends at the lower record or this one, both
        above it)."""
        self._held_pending[station_id] = (held, at)
        self._held_stored[station_id] = held
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
            for station_id, (held, _) in batch.items():
                if self._held_stored.get(station_id) is held:
                    self._held_stored.pop(station_id)   # not known: the next is written

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
                count += len(held)
        if count:
            self._held_version += 1
            self.holds_added += 1
            for station_id, held in self._held_offline.items():
                # (its idle shares were the process's before: none known, its default's)
                self.publish(learned.HeldIdle(
                    station_id, tuple((ref, kept[0]) for ref, kept in held), self.holds_added))
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
