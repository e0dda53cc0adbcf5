"""The store's two writers (the process for `StoreOp`s, the thread for closures) commit in the
order their work was handed in (`store_order.py`). Real SQLite file, real writer process:
SIGSTOP holds the process with an op in hand."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime

from smartcharge.store import SqliteStore, StoreOp
from smartcharge.store_order import WriterOrder

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_closure_handed_in_after_an_op_sees_what_the_op_wrote(tmp_path):
    """The audit's flush hands its rows to the process, a reader then runs a closure: it must
    find them (it found nothing while the process was slow: the thread ran it at once)."""
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"), writer_process=True)
    pid = store.writer_process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        written = asyncio.create_task(store.run(StoreOp("station_seen", "CP9", T0)))
        await _until(lambda: store.writer_process._pending)
        read = asyncio.create_task(store.run(
            lambda tx: [r["station_id"] for r in tx.stations()]))
        # either it overtook the op (done while the process cannot commit) or it waits for it
        await _until(lambda: read.done() or store._order.waiting)
    finally:
        os.kill(pid, signal.SIGCONT)
    await written
    assert await read == ["CP9"]
    await store.close()


async def test_an_op_handed_in_after_a_closure_sees_what_it_wrote(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"), writer_process=True)
    try:
        written = asyncio.create_task(store.run(lambda tx: tx.station_seen("CP8", T0)))
        read = asyncio.create_task(store.run(StoreOp("stations")))
        await written
        assert [r["station_id"] for r in await read] == ["CP8"]
    finally:
        await store.close()


async def test_phases_keep_the_order_they_were_handed_in():
    order = WriterOrder()
    assert order.turn("process") is None and order.turn("process") is None
    closure = order.turn("thread")        # waits for both ops
    op_after = order.turn("process")      # waits behind the closure, though its writer is busy
    assert closure is not None and op_after is not None and order.waiting == 2
    order.done()
    assert not closure.done()
    order.done()                          # the ops answered: the closure's phase
    assert closure.done() and not op_after.done() and order.in_flight == 1
    order.done()
    assert op_after.done() and order.in_flight == 1
    order.done()
    assert order.in_flight == 0 and order.waiting == 0


async def test_a_caller_that_gives_up_waiting_leaves_the_order_whole():
    order = WriterOrder()
    assert order.turn("process") is None
    gone = asyncio.create_task(order.wait(order.turn("thread")))
    after = order.turn("thread")
    await asyncio.sleep(0)
    gone.cancel()                          # cancelled before its turn: skipped
    await asyncio.gather(gone, return_exceptions=True)
    order.done()
    assert after.done() and order.in_flight == 1
    # let through and cancelled before it ran: counted as answered, the next one goes
    released = asyncio.create_task(order.wait(order.turn("process")))
    await asyncio.sleep(0)
    order.done()                           # `after` answered: `released` let through
    released.cancel()
    await asyncio.gather(released, return_exceptions=True)
    assert order.in_flight == 0 and order.turn("thread") is None
