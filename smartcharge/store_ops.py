"""Store work by name, and the group commit both writers share (the thread and the process).

`StoreOp(function, *args, **kwargs)` is a piece of work for `Store.run` that can be pickled:
`function` is a module-level function called as `function(tx, *args, **kwargs)`, or the name of a
`StoreTx` method called as `tx.name(*args, **kwargs)`. A closure cannot leave the process it was
made in; a `StoreOp` can, so the store runs it in its writer *process* (store_writer.py), where
the group's SQL and commit do not wait for the GIL behind the busy event loop (issue 10,
s27-store: p99 per group 16-44 ms in a process against 97-196 ms in a thread). Called with a
`tx` it is also an ordinary piece of work, so every store runs it.

`run_group(db, works)` runs pieces of work in one transaction and commits once (group commit):
committed together, or - when one piece fails - again with a savepoint each, so only that piece
is rolled back. One copy for the writer thread (store.py) and the writer process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from smartcharge.store_tx import StoreTx

log = logging.getLogger(__name__)

Outcome = tuple[Any, BaseException | None]   # (result, error): error None = it committed


class StoreClosed(RuntimeError):
    """The store is closed (or its writer is gone): nothing was written, or - a writer process
    that died with the work in hand - nothing the caller may count on (its retry is a duplicate
    the ledger recognises)."""


class DatabaseGone(sqlite3.OperationalError):
    """The file at the store's path is no longer the one its writer opened - replaced (a
    backup restored over it), deleted, moved or truncated - so a commit would land in an
    unlinked inode or behind a lost header and be gone at the next start: refused, nothing
    committed (an `OperationalError`, as a full disk's: a CALLERROR, a 503)."""


class WriterConnection(sqlite3.Connection):
    """A writing connection that remembers the file it opened (device, inode) and the size
    it has seen it reach, so a group's commit can first check that the file at the path is
    still that database (`still_the_database`)."""

    path = ""
    file_id: tuple[int, int] | None = None
    size_seen_b = 0   # the main file only grows: WAL checkpoints, no VACUUM here
    refusing = False  # its last group's commit failed: the streak's ERROR line is said


def still_the_database(db: sqlite3.Connection) -> None:
    """Raises `DatabaseGone` if the file at `db`'s path is not the one it writes. SQLite's
    connections keep writing the file they opened: after a restore, a delete or a truncation
    every commit was acknowledged and lost at the next start (session 33's kills audit)."""
    if not isinstance(db, WriterConnection) or db.file_id is None:
        return
    try:
        now = os.stat(db.path)
    except FileNotFoundError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != db.file_id:
        what = "deleted or moved" if now is None else "replaced"
    elif now.st_size < db.size_seen_b:
        what = f"truncated ({db.size_seen_b} to {now.st_size} bytes)"
    else:
        db.size_seen_b = now.st_size
        return
    raise DatabaseGone(f"the database file {db.path} was {what} while this server had it "
                       f"open: nothing is committed to it any more (unanswered, the stations "
                       f"keep their messages); restart smartcharge to use the file now at "
                       f"that path")


_REFUSED = "store_refused_commit"   # an attribute: it crosses the writer's pipe (pickled)


def refused_commit(failure: BaseException) -> BaseException:
    """`failure` marked as a group's failed commit - the store refusing writes - not one piece
    of work's own error (`StoreRefusals` counts the first, the caller handles the second)."""
    setattr(failure, _REFUSED, f"{type(failure).__name__}: {failure}")
    return failure


def refusal_of(error: BaseException | None) -> str | None:
    """The cause of a refused commit (`refused_commit`), else None."""
    return getattr(error, _REFUSED, None) if error is not None else None


class StoreOp:
    """`function(tx, *args, **kwargs)` - or `tx.<function>(*args, **kwargs)` for a name - as a
    picklable piece of store work. Its arguments and result cross a pipe (pickled): plain data,
    dataclasses, datetimes; never a live object of the server's."""

    __slots__ = ("function", "args", "kwargs")

    def __init__(self, function: Callable | str, /, *args: Any, **kwargs: Any) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs

    def __call__(self, tx: StoreTx) -> Any:
        if isinstance(self.function, str):
            return getattr(tx, self.function)(*self.args, **self.kwargs)
        return self.function(tx, *self.args, **self.kwargs)

    def __reduce__(self) -> tuple:
        return _rebuild, (self.function, self.args, self.kwargs)

    def __repr__(self) -> str:
        name = self.function if isinstance(self.function, str) else \
            f"{self.function.__module__}.{self.function.__qualname__}"
        return f"StoreOp({name})"


def _rebuild(function: Callable | str, args: tuple, kwargs: dict) -> StoreOp:
    return StoreOp(function, *args, **kwargs)


def writer_pid(tx: StoreTx) -> int:
    """The process the work ran in (as `StoreOp(writer_pid)`): which writer took it."""
    return os.getpid()


def attempt(work: Callable, *args: Any) -> Outcome:
    try:
        return work(*args), None
    except Exception as error:
        return None, error


def run_group(db: sqlite3.Connection, works: Sequence[Callable[[StoreTx], Any]],
              name: str = "", lock_fd: int | None = None) -> list[Outcome]:
    """Each piece of work's (result, error), in order, once the group's commit is on disk (or
    the commit failed: every piece's error is that failure, nothing of the group is kept).

    `lock_fd`: the writers' lock file (two writers on one file: the thread and the process),
    held from BEGIN to COMMIT. SQLite's own lock makes a writer that finds it taken poll with
    sleeps (busy_timeout): behind a writer that commits group after group it may never find
    it free and fail after 5 s; a blocked flock() is woken the moment it is let go."""
    if lock_fd is None:
        return _run_locked(db, works, name)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        return _run_locked(db, works, name)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)


def _run_locked(db: sqlite3.Connection, works: Sequence[Callable[[StoreTx], Any]],
                name: str) -> list[Outcome]:
    try:
        outcomes = _run_optimistic(db, works)
        if outcomes is None:   # a piece of work failed: again, each in a savepoint
            outcomes = _run_isolated(db, works)
        if isinstance(db, WriterConnection):
            db.refusing = False
        return outcomes
    except Exception as failure:
        # the first of a streak only: a full disk refuses every message of every station
        # (the server's StoreRefusals sums up the rest, and says when it writes again)
        if not getattr(db, "refusing", False):
            if isinstance(failure, DatabaseGone):   # the message says it all
                log.error("store %s", failure)
            else:
                log.exception("store %s: transaction of %d failed; refusing writes until a "
                              "commit succeeds", name, len(works))
        if isinstance(db, WriterConnection):
            db.refusing = True
        if db.in_transaction:
            db.execute("ROLLBACK")
        return [(None, refused_commit(failure))] * len(works)


def _run_optimistic(db: sqlite3.Connection, works: Sequence[Callable]) -> list[Outcome] | None:
    """The group in one transaction without a savepoint per piece of work: committed, or
    rolled back whole at the first piece that fails (None). Work rarely fails, and
    SAVEPOINT / RELEASE were two of a MeterValues' SQL statements, each a step that lets
    the GIL go and waits to take it back behind the busy event loop (s27-store)."""
    db.execute("BEGIN IMMEDIATE")
    tx = StoreTx(db)
    outcomes: list[Outcome] = []
    for work in works:
        result, error = attempt(work, tx)
        if error is not None:
            if db.in_transaction:   # some SQLite errors end it themselves
                db.execute("ROLLBACK")
            return None
        outcomes.append((result, None))
    still_the_database(db)
    db.execute("COMMIT")
    return outcomes


def _run_isolated(db: sqlite3.Connection, works: Sequence[Callable]) -> list[Outcome]:
    """The group again, each piece of work in its own savepoint: one that fails is rolled
    back alone, the others commit together. The pieces before the failure run a second
    time here - their first run was rolled back with the group - so work acts through
    `tx` only (`Store.run`'s contract)."""
    db.execute("BEGIN IMMEDIATE")
    tx = StoreTx(db)
    outcomes: list[Outcome] = []
    for work in works:
        db.execute("SAVEPOINT work")
        result, error = attempt(work, tx)
        if error is not None:
            db.execute("ROLLBACK TO work")
        db.execute("RELEASE work")
        outcomes.append((result, error))
    still_the_database(db)
    db.execute("COMMIT")
    return outcomes


def writers_lock(path: str) -> int:
    """The file both writers of a store lock around each group (`run_group`); named after the
    file itself, as SQLite opens it through a symlink (instance_lock.hold_database)."""
    return os.open(os.path.realpath(path) + "-writers.lock",
                   os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def connect_writer(path: str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A writing connection with the store's durability: WAL, synchronous = FULL (billing rows
    are on disk before we acknowledge), foreign keys, and a wait for the other writer's lock."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread,
                         factory=WriterConnection)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 5000")
    if path != ":memory:" and not path.startswith("file:"):
        opened = os.stat(path)   # the file SQLite opened (it follows a symlink: so does stat)
        db.path, db.file_id, db.size_seen_b = path, (opened.st_dev, opened.st_ino), opened.st_size
    return db
