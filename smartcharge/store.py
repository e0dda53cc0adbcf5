"""Persistence: SQLite by default (one file, WAL, synchronous=FULL), one writer thread, and for
the server a writer process.

Every piece of work runs as one atomic unit on a writer: `await store.run(fn)` calls `fn(tx)`
with a `StoreTx` (store_tx.py) and returns once the commit is on disk, so an adapter that awaits
it may then acknowledge the station. Work named as a `StoreOp` (store_ops.py: a module function
or a `StoreTx` method and picklable arguments) runs in the writer process when the store was
opened with one (`open(path, writer_process=True)`, as the server does: store_writer.py), where
its SQL does not wait for the GIL behind the event loop; a closure runs on the writer thread.
Both writers keep the same promises (group commit, answer after commit) and take turns on the
file through a lock (`store_ops.run_group`). Reads for people (the API, the CSV export)
use `await store.read(fn)` instead: their own read-only connection on their own thread, which
WAL lets read a consistent snapshot while the writer commits, so a long export never holds up
the acknowledgement of a station's message. Billing rules live in `ledger.py`; the SQL in
`store_tx.py`. A Postgres store would implement `Store` and the `StoreTx` methods.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from smartcharge.store_ops import StoreClosed, StoreOp, connect_writer, run_group, writers_lock
from smartcharge.store_order import WriterOrder
from smartcharge.store_refusals import StoreRefusals
from smartcharge.store_schema import MIGRATIONS
from smartcharge.store_tx import SampleRow, SessionRow, StoreTx, db_time, from_db_time
from smartcharge.store_writer import WriterProcess
from smartcharge.turns import TurnBudget

__all__ = ["SampleRow", "SessionRow", "SqliteStore", "Store", "StoreClosed", "StoreOp", "StoreTx",
           "StoreUnusable",
           "db_time", "from_db_time"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreUnusable(RuntimeError):
    """The database cannot be opened for writing at all (a directory, not SQLite, a newer
    schema, no permission): `serve` ends its start with one line naming it."""


class Store(Protocol):
    async def run(self, work: Callable[[StoreTx], T]) -> T: ...

    async def close(self) -> None: ...


class SqliteStore:
    """One SQLite file, one writing connection per writer (the thread; the process for
    `StoreOp`s, if opened with one), group commit.

    Each `run(work)` is atomic on its own; the writer thread takes every piece of work that is
    waiting, runs them in one transaction and commits once, then answers each caller. So under
    load one fsync covers many messages, and still nobody is answered before the commit that
    holds their work. A failing piece of work is rolled back alone (the group is run again,
    a SAVEPOINT each).
    """

    MAX_GROUP = 256
    ANSWERS_PER_TURN = 32   # callers resumed per turn of their loop (`turns.TurnBudget`)

    def __init__(self, path: str, *, refusal_summary_s: float = 60.0) -> None:
        self.path = path
        # whether commits succeed: one line a streak of refusals, a summary, the health route
        self.refusals = StoreRefusals(path, refusal_summary_s)
        self.writer_process: WriterProcess | None = None   # `open(..., writer_process=True)`
        self._lock_fd: int | None = None   # the writers' lock, with a writer process
        self._order = WriterOrder()   # the two writers' work in the order it was handed in
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._db: sqlite3.Connection | None = None
        self._closed = False   # set before the writer is told to stop: later work raises
        self._thread = threading.Thread(target=self._writer, name=f"store:{path}", daemon=True)
        self._thread.start()
        # one reader thread owns the read-only connection; ":memory:" has nothing to share
        self._reader = None if path == ":memory:" else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"store-read:{path}")
        self._read_db: sqlite3.Connection | None = None
        # per callers' loop, weakly: a loop that is gone (a test's) is not kept alive
        self._settlers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnBudget] = \
            weakref.WeakKeyDictionary()
        self._settlers_lock = threading.Lock()

    @classmethod
    async def open(cls, path: str, *, writer_process: bool = False,
                   refusal_summary_s: float = 60.0) -> SqliteStore:
        """`writer_process`: `StoreOp`s run in a writer process of their own
        (store_writer.py), everything else on the writer thread; a file only (":memory:" has
        nothing to share)."""
        store = cls(path, refusal_summary_s=refusal_summary_s)
        try:
            await store._submit(_RAW, store._connect)   # migrations first, in this process
            if writer_process and path != ":memory:":
                loop = asyncio.get_running_loop()
                store._lock_fd = writers_lock(path)
                store.writer_process = WriterProcess(path, len(MIGRATIONS), loop)
                store.writer_process.settle = store._settler(loop).settle
                store.writer_process.saw_group = store.refusals.saw_group
                await store.writer_process.start()
        except BaseException:
            if store.writer_process is not None:
                await store.writer_process.close()
            store._queue.put(None)
            raise
        return store

    def _connect(self) -> None:
        try:
            db = connect_writer(self.path)   # billing rows: durable before we acknowledge
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as error:   # OperationalError too: no file to write
            raise StoreUnusable(f"cannot open the database {self.path} for writing: "
                                f"{error}") from error
        if version > len(MIGRATIONS):
            db.close()
            raise StoreUnusable(f"{self.path} has schema version {version}, newer than this "
                                f"smartcharge knows ({len(MIGRATIONS)}): upgrade smartcharge")
        if version < len(MIGRATIONS):
            # every pending step in one transaction: all of them or none (a failed upgrade
            # leaves the file as it was), and one commit (one fsync) instead of one per step -
            # a new file took ~40 ms more to open, at every server start and in every test
            db.execute("BEGIN IMMEDIATE")
            try:
                for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                    log.info("store %s: migrating schema to version %d", self.path, number)
                    for statement in re.sub(r"--[^\n]*", "", step).split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self._db = db

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    async def run(self, work: Callable[[StoreTx], T]) -> T:
        """Run `work(tx)` atomically; returns once it is committed (or raises, rolled back).

        `work` acts through `tx` only: when another piece of work of its group fails, the
        group is rolled back and run again with a savepoint each (`_run_group`), so `work` may
        be called twice - its effects and answer are those of the run that committed.

        A `StoreOp` goes to the writer process when the store has one (and the caller is on
        its loop); a closure cannot leave this process and runs on the writer thread. Both
        write the one file under the writers' lock, and commit in the order the work was handed
        in (`store_order.WriterOrder`)."""
        process = self.writer_process
        if process is None or self._closed or asyncio.get_running_loop() is not process.loop:
            return await self._submit(_TX, work)
        # two writers, one order: what was handed in first commits first (store_order.py)
        to_process = isinstance(work, StoreOp)
        order = self._order
        gate = order.turn(to_process)
        if gate is not None:
            await order.wait(gate)
        try:
            if to_process:
                return await process.run(work)
            return await self._submit(_TX, work)
        finally:
            order.done()

    async def read(self, work: Callable[[StoreTx], T]) -> T:
        """Run `work(tx)` on the read-only connection, in one read transaction (a consistent
        snapshot), without going through the writer thread."""
        if self._reader is None:
            return await self.run(work)
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._read, work)

    def _read(self, work: Callable[[StoreTx], T]) -> T:
        if self._read_db is None:
            self._read_db = sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro",
                                            uri=True, isolation_level=None)
            self._read_db.execute("PRAGMA query_only = ON")
            self._read_db.execute("PRAGMA busy_timeout = 5000")
        self._read_db.execute("BEGIN")
        try:
            return work(StoreTx(self._read_db))
        finally:
            self._read_db.execute("ROLLBACK")

    def _close_reader(self) -> None:
        if self._read_db is not None:
            self._read_db.close()
            self._read_db = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.writer_process is not None:   # it answers what it has, then exits
            await self.writer_process.close()
        if self._reader is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._reader, self._close_reader)
            self._reader.shutdown(wait=False)
            self._reader = None
        if self._thread.is_alive():
            await self._submit(_RAW, self._close, closing=True)
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _submit(self, kind: str, function: Callable, *, closing: bool = False) -> Any:
        # work queued after the writer's stop sentinel would never be answered: refuse it
        if (self._closed and not closing) or not self._thread.is_alive():
            raise StoreClosed(f"store {self.path} is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((kind, function, future, loop))
        # A caller that gives up cancels only its future: the work is queued and still
        # commits (or not), and the settler skips a done future. Awaited directly, not through
        # `asyncio.shield`: its callbacks cost every caller one more turn of the loop between
        # the commit and its resumption - a turn of everything else ready (dispatch, the guard,
        # the other stations) that each MeterValues' answer waited through (issue 10's tail)
        return await future

    # -- the writer thread ------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item[0] == _RAW:
                self._answer(item, *self._attempt(item[1]))
                continue
            group = [item]
            while len(group) < self.MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None or more[0] == _RAW:
                    self._queue.put(more)   # handled after this group, in a later round
                    break
                group.append(more)
            self._run_group(group)

    def _run_group(self, group: list) -> None:
        if self._db is None:
            self._answer_all([(item, None, StoreClosed(f"store {self.path} is closed"))
                              for item in group])
            return
        outcomes = run_group(self._db, [item[1] for item in group], self.path, self._lock_fd)
        self.refusals.saw_group(error for _, error in outcomes)
        self._answer_all([(item, result, error) for item, (result, error)
                          in zip(group, outcomes)])

    @staticmethod
    def _attempt(function: Callable, *args: Any) -> tuple[Any, BaseException | None]:
        try:
            return function(*args), None
        except Exception as error:
            return None, error

    def _answer(self, item: tuple, result: Any, error: BaseException | None) -> None:
        self._answer_all([(item, result, error)])

    def _answer_all(self, answers: list[tuple[tuple, Any, BaseException | None]]) -> None:
        """From the writer thread: hand a group's outcomes to their callers' loops, one
        wake-up of each loop per group (not one per piece of work)."""
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_, _, future, loop), result, error in answers:
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settler(loop).settle, outcomes)
            except RuntimeError:
                pass   # the caller's loop is gone: nobody is waiting any more

    def _settler(self, loop: asyncio.AbstractEventLoop) -> TurnBudget:
        """The budget that resumes this loop's callers at most ANSWERS_PER_TURN per turn."""
        with self._settlers_lock:
            settler = self._settlers.get(loop)
            if settler is None:
                settler = self._settlers[loop] = TurnBudget(self.ANSWERS_PER_TURN)
            return settler


_RAW, _TX = "raw", "tx"
