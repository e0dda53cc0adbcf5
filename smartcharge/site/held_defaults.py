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

A mixin of `Dispatcher` (needs `store`, `clock`, `topology`, `stations`, `_held_offline`,
`_held_version`, `_default_steps`)."""

from __future__ import annotations

import logging

from smartcharge import store_failsafe
from smartcharge.site import steps
from smartcharge.site.station_control import StationControl
from smartcharge.site.steps import Step
from smartcharge.site.topology import ConnectorRef
from smartcharge.store_ops import StoreOp

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

    async def _record_held(self, control: StationControl, new: dict[int, Step] | None = None
                           ) -> None:
        """Store what the station's connectors may hold now, with `new` (connector id -> W
        steps about to be sent) as if taken too: written only where that raises what is
        stored (written ahead), or, without `new`, where it differs."""
        if self.store is None:
            return
        now = self.clock.now()
        held = {}
        for ref, kept in self._held_kept(control):
            extra = new.get(ref.connector_id) if new is not None else None
            held[ref.connector_id] = envelope(kept if extra is None else (*kept, extra), now)
        stored = self._held_stored.get(control.station_id, {})
        if new is not None:
            changed = any(stored.get(c) is None or steps.compare(stored[c], step, now)[1]
                          for c, step in held.items())
        else:
            changed = any(stored.get(c) != step for c, step in held.items())
        if not changed:
            return
        try:
            await self.store.run(StoreOp(   # by name: the writer process takes it
                store_failsafe.write_held, control.station_id, held, at=now))
        except Exception:   # the defaults go out all the same: the station needs them
            log.exception("station %s: what its fail-safe defaults may hold is not stored",
                          control.station_id)
            return
        self._held_stored[control.station_id] = held

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
