"""Every planned connector's schedule as columns - one (N, T) array of powers and a few columns of
numbers - read as a mapping ref -> `ConnectorPlan`, each made when it is read.

Why columns (issue 10): a plan kept one ConnectorPlan, one schedule array and often one
LimitSource per connector, ~1.4 objects the cyclic garbage collector tracks per connector (5 000
connectors: ~6 800 of the ~19 000 a re-plan allocated; benchmarks/plan_objects.py). The young
collection after a re-plan traversed them while the event loop waited (the interpreter lock is
one for every thread). Here a plan holds a handful of tracked objects whatever its size: arrays, ints, floats,
strings and `range`s are not tracked, and the ref -> row index and the rows per station are taken
over from the previous plan when the connectors are the same. A ConnectorPlan read from it is
the same as the one the plan used to hold (same fields, same values); it is a short-lived object,
freed when its reader is done with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import datetime

import numpy as np

from smartcharge.site.limits import LimitSource
from smartcharge.site.plan import ConnectorPlan
from smartcharge.site.topology import ConnectorRef


_new = object.__new__
_FIELDS = ("ref", "transaction_id", "start", "slot_starts", "power_w", "min_power_w", "binding",
           "phases", "phases_known")
if set(_FIELDS) != {f.name for f in fields(ConnectorPlan)}:   # a field added: set it below too
    raise TypeError("connector_plans.ConnectorPlans.row does not set every ConnectorPlan field")
(_set_ref, _set_tx, _set_start, _set_slot_starts, _set_power_w, _set_min_power_w, _set_binding,
 _set_phases, _set_phases_known) = (ConnectorPlan.__dict__[name].__set__ for name in _FIELDS)


class ConnectorPlans(Mapping):
    """ref -> ConnectorPlan over columns; rows in the order of `refs`."""

    __slots__ = ("refs", "rows", "stations", "start", "slot_starts", "power_w",
                 "transaction_ids", "min_power_w", "bindings", "phases", "phases_known")

    def __init__(self, refs: Sequence[ConnectorRef], *, start: datetime,
                 slot_starts: list[datetime], power_w: np.ndarray,
                 transaction_ids: Sequence[int], min_power_w: np.ndarray,
                 bindings: Sequence[LimitSource | None], phases: Sequence[int],
                 phases_known: Sequence[bool], previous: ConnectorPlans | None = None) -> None:
        refs = tuple(refs)
        if previous is not None and previous.refs == refs:
            # the same connectors as the last plan: its index and grouping (most re-plans)
            refs, self.rows, self.stations = previous.refs, previous.rows, previous.stations
        else:
            self.rows = {ref: row for row, ref in enumerate(refs)}
            self.stations = _station_rows(refs)
        self.refs = refs
        self.start = start
        self.slot_starts = slot_starts            # shared by every row
        self.power_w = np.asarray(power_w, dtype=float)   # (N, T) [W]
        self.power_w.flags.writeable = False      # each ConnectorPlan reads a row of it
        self.transaction_ids = tuple(transaction_ids)
        self.min_power_w = np.asarray(min_power_w, dtype=float)
        self.bindings = tuple(bindings)
        self.phases = tuple(int(p) for p in phases)
        self.phases_known = tuple(bool(k) for k in phases_known)

    def row(self, row: int) -> ConnectorPlan:
        # each field set through its slot, as the dataclass's __init__ would set it: its
        # frozen __init__ goes through object.__setattr__ per field (~4.7 against ~1.0 us a
        # plan, and every connector's is read in every dispatch round and snapshot)
        plan = _new(ConnectorPlan)
        _set_ref(plan, self.refs[row])
        _set_tx(plan, self.transaction_ids[row])
        _set_start(plan, self.start)
        _set_slot_starts(plan, self.slot_starts)
        _set_power_w(plan, self.power_w[row])
        _set_min_power_w(plan, float(self.min_power_w[row]))
        _set_binding(plan, self.bindings[row])
        _set_phases(plan, self.phases[row])
        _set_phases_known(plan, self.phases_known[row])
        return plan

    def __getitem__(self, ref: ConnectorRef) -> ConnectorPlan:
        return self.row(self.rows[ref])

    def get(self, ref, default=None):
        row = self.rows.get(ref)
        return default if row is None else self.row(row)

    def __contains__(self, ref) -> bool:
        return ref in self.rows

    def __iter__(self) -> Iterator[ConnectorRef]:
        return iter(self.refs)

    def __len__(self) -> int:
        return len(self.refs)

    def of_station(self, station_id: str) -> Iterator[ConnectorPlan]:
        """The station's connectors' plans, in row order (made as they are read)."""
        for row in self.stations.get(station_id, ()):
            yield self.row(row)

    def __repr__(self) -> str:
        return f"ConnectorPlans({len(self.refs)} connectors x {self.power_w.shape[1]} slots)"


def _station_rows(refs: tuple[ConnectorRef, ...]) -> dict[str, range | list[int]]:
    """station id -> its rows: a `range` (not tracked by the collector) when they follow each
    other, as they do in a plan (its rows are sorted by ref)."""
    out: dict[str, range | list[int]] = {}
    first = 0
    for row in range(1, len(refs) + 1):
        if row == len(refs) or refs[row].station_id != refs[first].station_id:
            station_id = refs[first].station_id
            found = out.get(station_id)
            if found is None:
                out[station_id] = range(first, row)
            else:   # not sorted: this station's rows are apart
                out[station_id] = [*found, *range(first, row)]
            first = row
    return out


def station_plans(connectors: Mapping[ConnectorRef, ConnectorPlan]):
    """station id -> an iterable of its connectors' plans, for any mapping of plans (a
    `ConnectorPlans` groups them already; any other is grouped once here)."""
    if isinstance(connectors, ConnectorPlans):
        return connectors.of_station
    grouped: dict[str, list[ConnectorPlan]] = {}
    for ref, cplan in connectors.items():
        grouped.setdefault(ref.station_id, []).append(cplan)
    return lambda station_id: grouped.get(station_id, ())
