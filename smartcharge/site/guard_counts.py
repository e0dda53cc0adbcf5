"""The guard's count of every connector, kept from one pass to the next (issue 10, s23-guard).

A pass used to count every connector again (its sample aged, its installed schedule, its
session) and sum every node: ~21 us per connector, a pass of ~0.1 s at 5 000 stations, and the
guard's passes were 35-45 % of the event loop (benchmarks/README.md, s22-msgcost). A
connector's count changes only when one of its inputs does, or when time reaches a moment of
its own; so each connector's count (W, A per site phase, how, its obeying evidence) is kept
with that moment (`SiteGuard._assess`: its sample going stale, a young session growing old,
an edge of its installed schedule, a settle time's end), and a pass counts again only

- the connectors whose inputs changed: the state's sessions and samples, what their station
  accepted (its `StationControl`), their settle-time start, what a station said it applies
  after a restart - each a `WatchedDict` that tells us the key it changed (watched.py);
- the connectors whose moment has come;
- every connector when anything global changed (the installed view, the sessions older than
  this process, the settings, a dict replaced by one nobody watches, the clock going back),
  and on an audit pass (below).

The nodes are then summed from the kept counts in one go (numpy `bincount` over the
(connector, ancestor) pairs, in connector order: the same additions in the same order as the
loop it replaces, so the same floats), connectors the site file does not list are counted
again every pass (few), and a station's cap on its estimates (guard.py `_station_caps`) is
made again for the stations whose counts changed.

The same answer as counting everything again, by construction and by test
(tests/test_guard_incremental.py, on random sites driven through random changes and time).
An audit counts every connector again once per `audit_period_s` of real time (the controller's
`guard_audit_real_s`), a slice with each pass, and compares: a connector whose kept count
differs there was changed by a path that does not tell (a bug); it is logged and counted in
`missed`, and the audit's count is the one used.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import numpy as np

from smartcharge.site import undeclared
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger("smartcharge.site.guard")

NEVER_US = np.iinfo(np.int64).max
# connectors (or stations) told changed that a pass turns into indices per step: ~2 us each, a
# ConnectorRef's hash and equality in Python; all at once, every connector told changed (a
# dispatch round, every meter) made one step of 20-36 ms at 10 000 connectors (s31-p99)
LOOKUPS_PER_STEP = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime | None) -> int:
    """Microseconds since 1970 (exact: datetimes are microseconds); None: never."""
    if moment is None:
        return NEVER_US
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class ConnectorCounts:
    def __init__(self, guard) -> None:
        self.guard = guard
        topo = guard.topology
        self.refs = topo.refs
        n = len(self.refs)
        # per connector: W counted (0: draws nothing, or less), A per site phase counted
        self.wa = np.zeros((n, 4))
        self.w, self.a = self.wa[:, 0], self.wa[:, 1:]     # views
        self.until_us = np.full(n, -1, dtype=np.int64)   # count again from then on
        self.estimated = np.zeros(n, dtype=bool)          # counted at an estimate, > 0 W
        self.draws: dict[ConnectorRef, tuple[float, str]] = {}
        self.evidence: dict[ConnectorRef, tuple[float, float]] = {}
        # the evidence of a connector drawing clearly more than its profiles allowed
        self.over_profile: dict[ConnectorRef, tuple[float, float]] = {}
        # (connector, node) for every node above every connector, in connector order
        conns, nodes = [], []
        self.station_rows: dict[str, list[int]] = {}
        for index, ref in enumerate(self.refs):
            self.station_rows.setdefault(ref.station_id, []).append(index)
            for node in guard._ancestors(ref.station_id):
                conns.append(index)
                nodes.append(node)
        self.pair_conn = np.array(conns, dtype=np.int64)
        self.pair_node = np.array(nodes, dtype=np.int64)
        # (node, column) of every pair's W and 3 A, flat: one bincount sums them all
        self.pair_bins = (self.pair_node[:, None] * 4 + np.arange(4)).ravel()
        self.n_nodes = topo.n_nodes
        # station -> (W cut, [A cut per phase], order) of its estimates (guard._station_caps)
        self.cuts: dict[str, tuple[float, list[float], tuple]] = {}
        self._cut_arrays = None                 # the cuts as arrays, made again on a change
        self._dirty_refs: set = set()
        self._dirty_stations: set = set()
        self._key: tuple | None = None
        self._last_now: datetime | None = None
        self._unwatched = False                 # one cannot tell: count everything
        self.audit_next = False                 # the next pass audits every connector
        # every connector audited once per this many real seconds, a slice with each pass
        # (None: only when asked); the controller sets it (guard_audit_real_s)
        self.audit_period_s: float | None = None
        self._audit_cursor = 0
        self._audit_real = time.monotonic()
        self.recounted = 0                      # connectors counted again (all passes)
        self.missed = 0                         # kept counts an audit found wrong

    # --- what changed -----------------------------------------------------------------------
    def _ref_changed(self, ref) -> None:
        self._dirty_refs.add(ref)

    def _station_changed(self, station_id) -> None:
        self._dirty_stations.add(station_id)

    @staticmethod
    def _watch(source, watcher) -> bool:
        """Watch `source` (its `watch` keeps one of each); False if it cannot tell."""
        watch = getattr(source, "watch", None)
        if watch is None:
            return False
        watch(watcher)
        return True

    def _global_key(self) -> tuple[tuple, tuple]:
        """(the objects a count is read from, compared by identity - held, so an id is never
        another's; the values, compared by value)."""
        c = self.guard.controller
        state, installed = c.state, c.installed
        objects = (installed, state.sessions, state.measurements)
        values = (state.earlier_transactions_upto, c.settings.stale_after_s)
        if installed is not None:
            objects += (installed.stations, installed.changed_at, installed.restored,
                        installed.restored.by_ref, installed.clock)
            values += (installed.settle_s,)
        return objects, values

    def _same_key(self, key: tuple[tuple, tuple]) -> bool:
        if self._key is None:
            return False
        (objects, values), (kept_objects, kept_values) = key, self._key
        return values == kept_values and len(objects) == len(kept_objects) \
            and all(a is b for a, b in zip(objects, kept_objects))

    def _all_watched(self) -> bool:
        """Watch every source of a count; False if one cannot tell (then every pass counts
        every connector, as before)."""
        c = self.guard.controller
        ok = self._watch(c.state.sessions, self._ref_changed) \
            and self._watch(c.state.measurements, self._ref_changed)
        installed = c.installed
        if installed is not None:
            ok = ok and self._watch(installed.stations, self._station_changed) \
                and self._watch(installed.changed_at, self._ref_changed) \
                and self._watch(installed.restored.by_ref, self._ref_changed)
            for control in installed.stations.values():
                ok = self._watch(control, self._station_changed) and ok
        return ok

    def _due(self, now: datetime):
        """(indices to count again, sorted; the ones an audit adds - None: no audit). A
        generator: yields every LOOKUPS_PER_STEP connectors or stations told changed."""
        key = self._global_key()
        everything = not self._same_key(key) or (self._last_now is not None
                                                 and now < self._last_now)
        refs, stations = self._dirty_refs, self._dirty_stations
        self._dirty_refs, self._dirty_stations = set(), set()
        if everything:
            # a source that cannot tell its changes: every pass counts everything, as before
            self._unwatched = not self._all_watched()
        elif self._unwatched:
            everything = True
        else:
            # a record replaced in the stations' dict is told as its station: watch the new
            # one (only those: watching is a look per station)
            installed = self.guard.controller.installed
            for done, station_id in enumerate(stations):
                if done % LOOKUPS_PER_STEP == LOOKUPS_PER_STEP - 1:
                    yield
                control = installed.stations.get(station_id) if installed is not None else None
                if control is not None and not self._watch(control, self._station_changed):
                    everything = True
        self._key, self._last_now = key, now
        audit, self.audit_next = self.audit_next, False
        n = len(self.refs)
        if everything:
            return np.arange(n), None
        index = self.guard.topology._index
        due = set(np.flatnonzero(self.until_us <= _us(now)).tolist())
        for done, ref in enumerate(refs):
            if done % LOOKUPS_PER_STEP == LOOKUPS_PER_STEP - 1:
                yield
            found = index.get(ref)
            if found is not None:
                due.add(found)
        for done, station_id in enumerate(stations):
            if done % LOOKUPS_PER_STEP == LOOKUPS_PER_STEP - 1:
                yield
            due.update(self.station_rows.get(station_id, ()))
        if audit:
            return np.arange(n), set(range(n)) - due
        audited = set(self._audit_slice(n)) - due
        due |= audited
        return np.array(sorted(due), dtype=np.int64), audited

    def _audit_slice(self, n: int) -> range | list:
        """The connectors this pass audits: as many as the real time since the last slice
        is of `audit_period_s`, going round the site (an audit all at once held the passes
        after it back for ~0.2 s at 5 000 stations)."""
        if not self.audit_period_s or n == 0:
            return ()
        real = time.monotonic()
        count = int(n * (real - self._audit_real) / self.audit_period_s)
        if count < 1:
            return ()
        if count >= n:
            count, self._audit_real = n, real
        else:
            self._audit_real += count * self.audit_period_s / n
        start, self._audit_cursor = self._audit_cursor, (self._audit_cursor + count) % n
        return [(start + k) % n for k in range(count)]

    # --- counting ---------------------------------------------------------------------------
    def refresh(self, now: datetime, chunk: int):
        """Count again what is due (a generator: yields every `chunk` connectors counted)."""
        stations: set[str] = set()
        wrong = []
        finished = False
        try:
            # (inside: a pass ended while it sorts out what it was told of lost those changes)
            due, audited = yield from self._due(now)
            yield from self._count(due, audited, now, chunk, stations, wrong)
            finished = True
        finally:
            if not finished:
                # a pass that failed or was cancelled half-way took the changes it was told
                # of with it: the next one counts everything
                self._key = None
        self.recounted += len(due)
        if wrong:
            self.missed += len(wrong)
            log.error("guard: %d connector(s) counted at an old value, changed by a path that "
                      "does not tell the guard (counted again now): %s", len(wrong),
                      "; ".join(f"{r.station_id}/{r.connector_id} kept {k}, now {n}"
                                for r, k, n in wrong[:5]))
        return stations

    def _count(self, due: np.ndarray, audited: set[int] | None, now: datetime, chunk: int,
               stations: set[str], wrong: list):
        guard = self.guard
        for done, index in enumerate(due.tolist()):
            if done % chunk == chunk - 1:
                yield
            ref = self.refs[index]
            watts, how, allowed, until = guard._assess(ref, now)
            if audited is not None and index in audited:
                kept = (self.draws.get(ref), self.evidence.get(ref), self.a[index].tolist())
                self._store(index, ref, watts, how, allowed, until)
                if kept != (self.draws.get(ref), self.evidence.get(ref), self.a[index].tolist()):
                    wrong.append((ref, kept, (watts, how, allowed)))
            else:
                self._store(index, ref, watts, how, allowed, until)
            stations.add(ref.station_id)

    def _store(self, index: int, ref: ConnectorRef, watts: float, how: str,
               allowed: float | None, until: datetime | None) -> None:
        guard = self.guard
        self.draws[ref] = (watts, how)
        if allowed is None:
            self.evidence.pop(ref, None)
            self.over_profile.pop(ref, None)
        else:
            self.evidence[ref] = (watts, allowed)
            if watts > allowed + guard.overdraw_w:
                self.over_profile[ref] = (watts, allowed)
            else:
                self.over_profile.pop(ref, None)
        self.until_us[index] = _us(until)
        row = self.a[index]
        row[:] = 0.0
        if watts <= 0:
            self.w[index] = 0.0
            self.estimated[index] = False
            return
        self.w[index] = watts
        self.estimated[index] = how != "fresh"
        used, amps = guard._phases_and_amps(ref, watts, how)
        for p in used:
            row[p] += amps

    # --- summing ----------------------------------------------------------------------------
    def node_loads(self, changed_stations: set[str], now: datetime, chunk: int = 0):
        """((M,) W, (M, 3) A) of every node from the kept counts; the connectors the site file
        does not list counted now; the stations' caps on estimates. A generator: yields every
        `chunk` stations whose cap is made again (0: never) - after a pass that counted every
        connector, all 5 000 of them, 20-70 ms in one step (s25-budget)."""
        guard = self.guard
        c = guard.controller
        m = self.n_nodes
        # each (node, column) bin takes its pairs in connector order: the loop's additions
        summed = np.bincount(self.pair_bins, weights=self.wa[self.pair_conn].ravel(),
                             minlength=4 * m).reshape(m, 4)
        load_w, load_a = summed[:, 0].copy(), summed[:, 1:].copy()
        # connectors the site file does not list draw all the same: under their station
        # (undeclared.py), on every phase (their wiring is not known)
        state, stale_after_s = c.state, c.settings.stale_after_s
        extra: dict[str, list] = {}
        for ref in list(state.undeclared):
            watts, how = undeclared.draw_w(state, guard.topology, ref, now, stale_after_s)
            self.draws[ref] = (watts, how)
            changed_stations.add(ref.station_id)    # counted again every pass: its cap too
            if watts <= 0:
                continue
            amps = undeclared.amps(guard.topology, ref, watts)
            if how != "fresh":
                extra.setdefault(ref.station_id, []).append((watts, (0, 1, 2), amps))
            for node in guard._ancestors(ref.station_id):
                load_w[node] += watts
                for p in range(3):
                    load_a[node, p] += amps
        if c.installed is not None:
            yield from self._caps(changed_stations, extra, load_w, load_a, chunk)
            self._apply_cuts(load_w, load_a)
        elif self.cuts:
            self.cuts, self._cut_arrays = {}, None
        return load_w, load_a

    def _caps(self, stations: set[str], extra: dict[str, list], load_w: np.ndarray,
              load_a: np.ndarray, chunk: int = 0):
        """Make again the cut of every station in `stations` (guard._station_cut); a generator
        that yields every `chunk` stations (the loads it reads are each station's own node's,
        which no other station's cut changes before `_apply_cuts`)."""
        guard = self.guard
        undeclared_order = {ref.station_id: i for i, ref in
                            reversed(list(enumerate(guard.controller.state.undeclared)))}
        for done, station_id in enumerate(list(stations)):
            if chunk and done % chunk == chunk - 1:
                yield
            rows = []
            first = None
            for index in self.station_rows.get(station_id, ()):
                if self.estimated[index]:
                    first = index if first is None else first
                    ref = self.refs[index]
                    used, amps = guard._phases_and_amps(ref, float(self.w[index]),
                                                        self.draws[ref][1])
                    rows.append((float(self.w[index]), used, amps))
            rows += extra.get(station_id, [])
            cut = guard._station_cut(station_id, rows, load_w, load_a) if rows else None
            before = self.cuts.get(station_id)
            if cut is None or (cut[0] == 0.0 and not any(cut[1])):
                if before is not None:
                    del self.cuts[station_id]
                    self._cut_arrays = None
                continue
            # the order the loop it replaces took the stations in: its declared connectors
            # first, in the site's order, then the undeclared ones in the order seen
            order = (0, first) if first is not None else (1, undeclared_order[station_id])
            entry = (cut[0], cut[1], order)
            if before != entry:
                self.cuts[station_id] = entry
                self._cut_arrays = None

    def _apply_cuts(self, load_w: np.ndarray, load_a: np.ndarray) -> None:
        if not self.cuts:
            return
        if self._cut_arrays is None:
            nodes, cut_w, cut_a = [], [], []
            for station_id, (w, a, _) in sorted(self.cuts.items(), key=lambda kv: kv[1][2]):
                for node in self.guard._ancestors(station_id):
                    nodes.append(node)
                    cut_w.append(w)
                    cut_a.append(a)
            self._cut_arrays = (np.array(nodes, dtype=np.int64), np.array(cut_w),
                                np.array(cut_a).reshape(len(nodes), 3))
        nodes, cut_w, cut_a = self._cut_arrays
        # in order, one at a time (unbuffered): the same subtractions as the loop's
        np.subtract.at(load_w, nodes, cut_w)
        for p in range(3):
            column = load_a[:, p].copy()
            np.subtract.at(column, nodes, cut_a[:, p])
            load_a[:, p] = column


__all__ = ["ConnectorCounts", "NEVER_US"]
