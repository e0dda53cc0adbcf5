"""The obligations store: operator cap, cap windows, DR events (with an id sequence that never
restarts), session needs; written, reloaded from a reopened file, pruned when expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge import store_obligations as ob
from smartcharge.store import SqliteStore, StoreClosed

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _event(event_id, start, end, **kw):
    return ob.EventRow(event_id=event_id, start=start, end=end, limit_w=kw.get("limit_w", 5_000.0),
                       reduction_w=kw.get("reduction_w"), priority=kw.get("priority", 0),
                       cancelled=kw.get("cancelled", False))


async def test_written_obligations_reload_from_a_reopened_file(tmp_path):
    path = str(tmp_path / "o.sqlite")
    store = await SqliteStore.open(path)

    def write(tx):
        ob.set_operator_cap(tx, 40_000.0, NOW, at=NOW)
        ob.set_cap_windows(tx, [(NOW + HOUR, NOW + 2 * HOUR, 30_000.0)])
        ob.save_event(tx, _event("dr-x", NOW + HOUR, NOW + 2 * HOUR), at=NOW)
        ob.save_event(tx, _event("dr-y", NOW, NOW + HOUR, limit_w=None, reduction_w=2_000.0,
                                 priority=3, cancelled=True), at=NOW)
        ob.set_need(tx, 7, requested_wh=12_000.0, departure=NOW + 5 * HOUR, at=NOW)
    await store.run(write)
    await store.close()

    again = await SqliteStore.open(path)
    try:
        loaded = await again.run(ob.load)
    finally:
        await again.close()
    assert loaded.operator_cap == (40_000.0, NOW)
    assert loaded.cap_windows == [(NOW + HOUR, NOW + 2 * HOUR, 30_000.0)]
    assert sorted(loaded.events, key=lambda e: e.event_id) == [
        _event("dr-x", NOW + HOUR, NOW + 2 * HOUR),
        _event("dr-y", NOW, NOW + HOUR, limit_w=None, reduction_w=2_000.0, priority=3,
               cancelled=True)]
    assert loaded.needs == {7: ob.NeedRow(7, 12_000.0, NOW + 5 * HOUR)}


async def test_clearing_the_cap_and_replacing_windows(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "o.sqlite"))
    try:
        await store.run(lambda tx: ob.set_operator_cap(tx, 1_000.0, NOW, at=NOW))
        await store.run(lambda tx: ob.set_operator_cap(tx, None, None, at=NOW))
        await store.run(lambda tx: ob.set_cap_windows(
            tx, [(NOW, NOW + HOUR, 1.0), (NOW, NOW + HOUR, 2.0)]))
        await store.run(lambda tx: ob.set_cap_windows(tx, [(NOW, NOW + HOUR, 3.0)]))
        loaded = await store.run(ob.load)
    finally:
        await store.close()
    assert loaded.operator_cap is None
    assert loaded.cap_windows == [(NOW, NOW + HOUR, 3.0)]


async def test_event_ids_never_restart_across_reopen(tmp_path):
    path = str(tmp_path / "o.sqlite")
    store = await SqliteStore.open(path)
    first = await store.run(lambda tx: ob.new_event_id(tx, at=NOW))
    # an operator took the next generated name by hand: the sequence skips it
    await store.run(lambda tx: ob.save_event(tx, _event("dr-2", NOW, NOW + HOUR), at=NOW))
    second = await store.run(lambda tx: ob.new_event_id(tx, at=NOW))
    await store.close()
    again = await SqliteStore.open(path)
    try:
        await again.run(lambda tx: ob.prune(tx, NOW + 1000 * HOUR))   # prunes numbers too
        third = await again.run(lambda tx: ob.new_event_id(tx, at=NOW))
    finally:
        await again.close()
    assert (first, second, third) == ("dr-1", "dr-3", "dr-4")


async def test_prune_drops_what_has_expired_and_keeps_the_rest(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "o.sqlite"))
    try:
        def write(tx):
            open_id = tx.insert_session(station_id="CP1", connector_id=1, id_tag="T",
                                        start_time=NOW, meter_start_wh=0.0, reservation_id=None,
                                        state="open", at=NOW)
            done_id = tx.insert_session(station_id="CP1", connector_id=2, id_tag="T",
                                        start_time=NOW, meter_start_wh=0.0, reservation_id=None,
                                        state="stopped", at=NOW)
            for tid in (open_id, done_id, 999):
                ob.set_need(tx, tid, requested_wh=1.0, departure=None, at=NOW)
            ob.set_cap_windows(tx, [(NOW - 2 * HOUR, NOW - HOUR, 1.0),
                                    (NOW - HOUR, NOW + HOUR, 2.0)])
            ob.save_event(tx, _event("old", NOW - 30 * HOUR, NOW - 25 * HOUR), at=NOW)
            ob.save_event(tx, _event("recent", NOW - 3 * HOUR, NOW - 2 * HOUR), at=NOW)
            ob.save_event(tx, _event("coming", NOW + HOUR, NOW + 2 * HOUR), at=NOW)
            return open_id
        open_id = await store.run(write)
        pruned = await store.run(lambda tx: ob.prune(tx, NOW))
        loaded = await store.run(ob.load)
    finally:
        await store.close()
    assert pruned == {"events": 1, "cap_windows": 1, "needs": 2, "event_keys": 0}
    assert {e.event_id for e in loaded.events} == {"recent", "coming"}   # kept a day for audit
    assert loaded.cap_windows == [(NOW - HOUR, NOW + HOUR, 2.0)]
    assert set(loaded.needs) == {open_id}


async def test_run_after_close_raises_instead_of_hanging(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "o.sqlite"))
    await store.close()
    with pytest.raises(StoreClosed):
        await store.run(ob.load)
    await store.close()    # a second close is harmless
