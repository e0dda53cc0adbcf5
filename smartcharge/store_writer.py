"""The store's writer in its own process: `StoreOp`s in over one pipe, committed answers back
over another, read by the event loop itself (`loop.add_reader`: no thread of ours waits for the
GIL on the way back).

Why a process (issue 10, s26-p99 / s27-store / s28-writer): a writer *thread* lets the GIL go
around every SQLite step and waits to take it back behind the event loop - with the loop busy,
~5 ms a step - so at 5 000 stations a group of MeterValues took hundreds of ms to commit while
the writer was busy a third of the time. In a process the group's SQL and fsync run on the other
core, whatever the loop does; the loop's share is pickling the op (tens of us).

Durability is the thread's: the same connection settings (WAL, synchronous = FULL), the same
group commit (`store_ops.run_group`), and every answer sent only after its group's COMMIT.
- The server is SIGKILLed: on Linux the writer is SIGKILLed with it (PR_SET_PDEATHSIG: a
  stopped writer would outlive it, holding the locks), elsewhere the requests pipe reaches EOF
  and it finishes the group in hand. Committed or rolled back by SQLite, nobody was answered
  for it: a station sends again, and the ledger's keys recognise what had committed.
- The writer is stopped or hung: after `answer_bound_s` without an answer while it has work
  in hand it is SIGKILLed and treated as below.
- The writer is SIGKILLed: the answers pipe reaches EOF; every caller waiting is failed with
  `StoreClosed` (not answered: its station sends again), and the next op starts a new writer.
- Migrations run once, in the server's own connection, before the writer starts; the writer
  refuses a file whose schema version is not the one it was started for.

How it starts (s31-writer): on Linux forked by the server's fork server (store_forks.py: one
process per server with these modules imported - a few ms of CPU a writer instead of ~0.2 s
for an interpreter and its imports); the fork server dies with the server and the writer with
the fork server, so the promises above hold through it. Elsewhere (`start_method = "spawn"`):

    python -m smartcharge.store_writer PATH REQUESTS_FD ANSWERS_FD SCHEMA_VERSION
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from smartcharge import store_forks
from smartcharge.store_ops import StoreClosed, StoreOp, run_group

log = logging.getLogger(__name__)

MAX_GROUP = 256
_UNPICKLABLE = (pickle.PicklingError, TypeError, AttributeError)   # what pickling an op raises
_PIPE_B = 1 << 20   # each pipe's buffer: a burst of ops goes in one write, no wait for a wake-up


# -- the writer process ---------------------------------------------------------------------

def serve(path: str, requests: Connection, answers: Connection, schema_version: int) -> None:
    from smartcharge.store_ops import connect_writer, writers_lock
    db = connect_writer(path)
    lock_fd = writers_lock(path)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != schema_version:
        answers.send(("failed", f"{path} has schema version {version}, the server expects "
                                f"{schema_version}"))
        return
    answers.send(("ready", os.getpid()))
    waiting: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_pump, args=(requests, waiting), daemon=True,
                     name="store-writer-pump").start()
    try:
        while True:
            item = waiting.get()
            if item is None:
                return
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    more = waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    waiting.put(None)   # stop after this group
                    break
                group.append(more)
            began = time.perf_counter()
            outcomes = run_group(db, [op for _, op in group], path, lock_fd)
            committed = time.perf_counter()
            _answer(answers, began, committed,
                    [(number, result, error) for (number, _), (result, error)
                     in zip(group, outcomes)])
    except (BrokenPipeError, EOFError, OSError):
        return   # the server is gone: what committed is on disk, nobody to answer
    finally:
        db.close()
        os.close(lock_fd)


def _pump(requests: Connection, waiting: queue.SimpleQueue) -> None:
    """Drains the requests pipe as they come (the loop never blocks on a full pipe); EOF - the
    server closed or died - and the stop request both end the writer after its group."""
    try:
        while True:
            item = requests.recv()
            if isinstance(item, list):   # the ops of one turn of the server's loop
                for each in item:
                    waiting.put(each)
                continue
            waiting.put(item)
            if item is None:
                return
    except (EOFError, OSError, pickle.UnpicklingError):
        waiting.put(None)


def _answer(answers: Connection, began: float, committed: float, outcomes: list) -> None:
    try:
        answers.send(("group", began, committed, outcomes))
    except (pickle.PicklingError, TypeError, AttributeError):
        answers.send(("group", began, committed,
                      [(number, *_portable(result, error)) for number, result, error
                       in outcomes]))


def _portable(result: Any, error: BaseException | None) -> tuple[Any, BaseException | None]:
    """A result or error that crosses the pipe, or an error that says why it could not."""
    try:
        pickle.loads(pickle.dumps((result, error)))
        return result, error
    except Exception as failure:
        if error is not None:
            return None, RuntimeError(f"{type(error).__name__}: {error}")
        return None, RuntimeError(f"the store's answer could not be sent back: {failure!r}")


def _die_with(server_pid: int) -> None:
    """Linux: SIGKILL when the server dies (PR_SET_PDEATHSIG). EOF on the requests pipe ends a
    running writer, but a stopped one (SIGSTOP, a freezer) outlived a SIGKILLed server for
    ever - holding the file, and, stopped inside a group, the writers' lock and SQLite's, so
    the next server's writer waited on them (tests/test_outside_s29_kills.py). Killed, what it
    committed is on disk and SQLite rolls back the rest; nobody was answered for it. The
    signal follows the server's thread that started us: the loop's, which lives as long as
    the store."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != server_pid:   # the server died before the call above
        os._exit(0)


def main(argv: list[str]) -> int:
    path, requests_fd, answers_fd, schema_version = argv
    _die_with(int(os.environ.get("SMARTCHARGE_WRITER_PARENT", os.getppid())))
    # Ctrl-C in a terminal and a service manager's SIGTERM reach the whole process group: the
    # writer is ended by its server (the stop request, or EOF when the server is gone), so a
    # server shutting down gracefully still has it for its last writes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s store-writer %(message)s")
    serve(path, Connection(int(requests_fd), writable=False),
          Connection(int(answers_fd), readable=False), int(schema_version))
    return 0


# -- the server's side ----------------------------------------------------------------------

class WriterProcess:
    """The server's handle on its writer process, bound to one event loop. `run(op)` returns
    the op's result once its group is committed; raises its error, or `StoreClosed` if the
    writer died with it in hand (a new writer is started for the next op).

    A writer that answers nothing for `answer_bound_s` while it has work in hand (or the stop
    request) is stuck - SIGSTOPped, frozen, hung - and is ended like a dead one: its callers
    fail, unanswered (their stations send again), and the next op starts a new writer. A
    stopped writer held every caller, and the server's shutdown, for as long as it was
    stopped (tests/test_outside_s29_kills.py). A healthy writer answers a group every few ms;
    one waiting behind the writer thread's long closure holds no transaction, so ending it
    loses nothing."""

    answer_bound_s = 60.0
    # "fork": forked by this process's fork server (store_forks.py: ~ms of CPU instead of an
    # interpreter's start and imports, ~0.2 s); "spawn": `python -m smartcharge.store_writer`,
    # also where forking is not available (not Linux)
    start_method = "fork"

    def __init__(self, path: str, schema_version: int, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.schema_version = schema_version
        self.loop = loop
        self.pid: int | None = None
        self.starts = 0            # writers started (a restart after a death counts)
        self._process: subprocess.Popen | None = None
        # the requests pipe's write end, non-blocking, and the bytes not yet taken by it: the
        # loop never waits in write() for the writer (`_send`)
        self._requests: int | None = None
        self._unsent = bytearray()
        self._draining = False   # a writer callback on `_requests` waits for room
        self._answers: Connection | None = None
        self._pending: dict[int, tuple[asyncio.Future, StoreOp]] = {}
        self._numbers = 0
        self._ready: asyncio.Future | None = None
        self._gone: asyncio.Future | None = None   # set once the answers pipe reached EOF
        self._closed = False
        self._progress_at = 0.0   # loop time of the last answer, or of work in hand since
        self._watchdog: asyncio.TimerHandle | None = None
        self.settle = None   # (outcomes) -> None: resumes callers (the store's TurnBudget)
        self.saw_group = None   # (errors) -> None: the store's StoreRefusals
        self.writes = 0      # requests written to the pipe (ops go several to a write)
        # ops handed in this turn of the loop, written together at its end (`_flush`)
        self._outbox: list[tuple[int, StoreOp]] = []

    async def start(self) -> None:
        if self._ready is None:
            self._spawn()
        await asyncio.shield(self._ready)

    def _spawn(self) -> None:
        to_writer_r, to_writer_w = os.pipe()
        from_writer_r, from_writer_w = os.pipe()
        for fd in (to_writer_w, from_writer_w):
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_B)
            except OSError:
                pass   # the system's limit: the default buffer then
        try:
            if self.start_method == "fork" and store_forks.available():
                self._process = store_forks.start_writer(self.path, to_writer_r, from_writer_w,
                                                         self.schema_version)
            else:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "smartcharge.store_writer", self.path,
                     str(to_writer_r), str(from_writer_w), str(self.schema_version)],
                    pass_fds=(to_writer_r, from_writer_w), stdin=subprocess.DEVNULL,
                    env={**os.environ, "SMARTCHARGE_WRITER_PARENT": str(os.getpid()),
                         "PYTHONPATH": os.pathsep.join(
                        p for p in [_tree(), os.environ.get("PYTHONPATH", "")] if p)})
        finally:
            os.close(to_writer_r)
            os.close(from_writer_w)
        self.starts += 1
        os.set_blocking(to_writer_w, False)
        self._requests = to_writer_w
        self._unsent = bytearray()
        self._draining = False
        self._answers = Connection(from_writer_r, writable=False)
        self._ready = self.loop.create_future()
        self._gone = self.loop.create_future()
        self.loop.add_reader(from_writer_r, self._on_readable)
        self._progress_at = self.loop.time()
        self._watch()   # a writer that never says it is ready is stuck too

    async def run(self, op: StoreOp) -> Any:
        if self._closed:
            raise StoreClosed(f"store {self.path} is closed")
        if self._ready is None:   # the first op, or the first after the writer died
            self._spawn()
        if not self._ready.done():
            await asyncio.shield(self._ready)
        elif self._ready.exception() is not None:
            raise self._ready.exception()
        number = self._numbers = self._numbers + 1
        future = self.loop.create_future()
        if not self._pending:
            self._progress_at = self.loop.time()
        self._pending[number] = (future, op)
        self._watch()
        # written at the end of this turn with every op handed in during it (s29-boot: a boot
        # storm's ~8 ops per station each had its own pickle, pipe write and wake-up of the
        # writer's pump, and reached the writer one at a time): in the order handed in
        if not self._outbox:
            self.loop.call_soon(self._flush)
        self._outbox.append((number, op))
        # a caller that gives up cancels only its future: the op still commits (or not)
        return await future

    def _flush(self) -> None:
        ops, self._outbox = self._outbox, []
        # a group's worth to a write: a write bigger than the pipe's buffer would hold the
        # loop until the writer's pump has read the rest
        for start in range(0, len(ops), MAX_GROUP):
            self._write(ops[start:start + MAX_GROUP])

    def _write(self, batch: list[tuple[int, StoreOp]]) -> None:
        if not batch or self._requests is None:
            return   # the writer died meanwhile: `_died` failed their callers
        try:
            self._send(batch if len(batch) > 1 else batch[0])
            self.writes += 1
        except _UNPICKLABLE:   # one op could not be pickled: each alone, so it fails alone
            for number, op in batch:
                if self._requests is None:
                    return   # the writer died meanwhile: `_died` failed their callers
                try:
                    self._send((number, op))
                    self.writes += 1
                except _UNPICKLABLE as error:
                    future, _ = self._pending.pop(number, (None, None))
                    if future is not None and not future.done():
                        future.set_exception(error)

    def _send(self, item: Any) -> None:
        """One message on the requests pipe, framed as `Connection.send` frames it (the
        writer reads it with `Connection.recv`), written as far as the pipe takes it now; the
        rest when it has room (`_drain`). A blocking write held the whole event loop while the
        writer was stopped with its pipe full: no station answered, and the watchdog, a timer
        on that loop, could not end the writer (tests/test_outside_s33_kills.py). Raises what
        pickling raises, before anything is written."""
        data = ForkingPickler.dumps(item)
        size = len(data)
        self._unsent += struct.pack("!i", size) if size <= 0x7fffffff else \
            struct.pack("!i", -1) + struct.pack("!Q", size)
        self._unsent += data
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        """Writes what the pipe takes; waits for room with a writer callback on the loop."""
        while self._unsent and self._requests is not None:
            try:
                written = os.write(self._requests, self._unsent)
            except BlockingIOError:
                break
            except OSError:   # EPIPE: the writer is gone
                self._died()   # every caller not answered is failed (StoreClosed)
                return
            del self._unsent[:written]
        if self._requests is None:
            return
        if self._unsent and not self._draining:
            self.loop.add_writer(self._requests, self._drain)
            self._draining = True
        elif not self._unsent and self._draining:
            self.loop.remove_writer(self._requests)
            self._draining = False

    def _on_readable(self) -> None:
        """From the loop: one message waiting on the pipe (a group's answers: its callers
        resumed through the store's budget); EOF = the writer is gone. One a turn: the reader
        is level-triggered, so the next is read in the loop's next turn - several groups'
        answers read at once held the loop for 28 ms at 2 000 stations (issue 10's stalls)."""
        try:
            if self._answers is not None and self._answers.poll():
                message = self._answers.recv()
                if message[0] == "group":
                    self._group_done(*message[1:])
                elif message[0] == "ready":
                    self.pid = message[1]
                    self._ready.set_result(None)
                elif message[0] == "failed":
                    self._ready.set_exception(RuntimeError(message[1]))
        except (EOFError, OSError):
            self._died()

    def _watch(self) -> None:
        # a check due later than the bound from now (armed under a longer bound) is moved
        due = self.loop.time() + self.answer_bound_s
        if self._watchdog is not None:
            if self._watchdog.when() <= due:
                return
            self._watchdog.cancel()
        self._watchdog = self.loop.call_at(due, self._check_stuck)

    def _check_stuck(self) -> None:
        """From the loop, every `answer_bound_s` while work is in hand: a writer with no
        answer for that long is ended (SIGKILL ends a stopped process too)."""
        self._watchdog = None
        starting = self._ready is not None and not self._ready.done()
        if self._answers is None or not (self._pending or self._closed or starting):
            return
        silent_s = self.loop.time() - self._progress_at
        if silent_s < self.answer_bound_s:
            self._watchdog = self.loop.call_later(self.answer_bound_s - silent_s,
                                                  self._check_stuck)
            return
        log.error("store %s: the writer process %s answered nothing for %.0f s with %d "
                  "callers waiting; ending it", self.path, self.pid, silent_s,
                  len(self._pending))
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._died(ended=True)

    def _group_done(self, began: float, committed: float, outcomes: list) -> None:
        self._progress_at = self.loop.time()
        if self.saw_group is not None:
            self.saw_group(error for _, _, error in outcomes)
        settled = []
        for number, result, error in outcomes:
            future, _ = self._pending.pop(number, (None, None))
            if future is not None:
                settled.append((future, result, error))
        if self.settle is not None:
            self.settle(settled)
            return
        for future, result, error in settled:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(result)

    def _died(self, ended: bool = False) -> None:
        """The writer is gone (killed, or it exited): nobody it did not answer gets an answer -
        their work may or may not have committed, and their stations will send it again."""
        if self._answers is not None:
            self.loop.remove_reader(self._answers.fileno())
            self._answers.close()
            self._answers = None
        if self._requests is not None:
            if self._draining:
                self.loop.remove_writer(self._requests)
                self._draining = False
            os.close(self._requests)
            self._requests = None
        self._unsent = bytearray()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(StoreClosed(f"store {self.path}: the writer process did "
                                                  f"not start"))
        failure = StoreClosed(f"store {self.path}: the writer process ended with this work "
                              f"in hand")
        pending, self._pending = self._pending, {}
        self._outbox = []   # (in `pending`: failed below)
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(failure)
        if self._process is not None:
            if self._process.poll() is None and not self._closed and not ended:
                log.error("store %s: the writer process's answers pipe closed; ending it",
                          self.path)
                self._process.kill()
            if not self._closed:
                log.error("store %s: the writer process %s ended (%s); %d callers not "
                          "answered; the next op starts a new one", self.path, self.pid,
                          self._process.poll(), len(pending))
        self._ready = None   # the next op starts a new writer
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    async def close(self) -> None:
        """The writer finishes what it has, answers it and exits."""
        if self._closed:
            return
        self._closed = True
        process = self._process
        self._flush()   # what was handed in this turn goes before the stop
        if self._requests is not None:
            self._send(None)
            self._progress_at = self.loop.time()
            self._watch()   # a stopped writer never reaches EOF: ended after the bound
        # its answers until EOF: the writer exits after its last group (`_died` sets `_gone`)
        if self._gone is not None:
            await asyncio.shield(self._gone)
        if process is not None:
            await self.loop.run_in_executor(None, process.wait)


def _tree() -> str:
    """The directory this smartcharge is imported from: the writer runs the same code."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
