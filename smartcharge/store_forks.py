"""The store writers' fork server (s31-writer): one small process per server process, started
once with the writer's modules imported, that forks each store's writer process (Linux).

Why: a writer started as `python -m smartcharge.store_writer` paid an interpreter start and the
imports of the store and the ledger at every store open - ~0.16-0.3 s of CPU, which ~600 of
the test suite's tests paid (~130 s of its ~470 s of CPU), and a server pays at every restart
of a dead writer. Forked from a process that has them all, a writer costs a few ms
(benchmarks/writer_start.py). Not forked from the server itself: its threads (the loop's, the
store's, executors) may hold locks at the fork; the fork server has one thread and never opens
SQLite.

The promises of store_writer.py hold through it:
- The server SIGKILLed: the fork server dies with it (PR_SET_PDEATHSIG, set towards a thread of
  ours that lives as long as the server process: the signal follows the thread that forked the
  child), and every writer dies with the fork server (PR_SET_PDEATHSIG again), stopped or not:
  none is left holding the file or its locks.
- The fork server SIGKILLed or exited: its writers die with it, their callers fail with
  `StoreClosed`, and the next op starts a new fork server and a new writer.
- The fork server stopped or hung: it forks nothing, and the writer's start is bounded like a
  stuck writer (`WriterProcess.answer_bound_s`); ending that start ends the fork server too, so
  the next op starts a new one.
- The writer's own behaviour (the watchdog, the schema-version refusal, SIGINT/SIGTERM ignored,
  StoreClosed when it dies) is `store_writer.serve`'s and `WriterProcess`'s, unchanged.

The protocol: the server sends each start as one message on a SOCK_SEQPACKET socket - the path
and schema version, with the writer's two pipe ends and one end of a fresh status socket as
SCM_RIGHTS. On the status socket the fork server answers `P<pid>` with a pidfd of the writer
(signalled by the server without a race with the pid's reuse), and `X<exit code>` once it has
reaped it.

    python -m smartcharge.store_forks CONTROL_FD
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import pickle
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading

log = logging.getLogger(__name__)

# what the writers run, imported once here instead of in every writer: the ops' functions are
# unpickled by reference (ledger, ledger_events, store_failsafe, store_grants; the StoreTx
# methods by name)
PRELOAD = ("smartcharge.store_writer", "smartcharge.store_ops", "smartcharge.store",
           "smartcharge.ledger", "smartcharge.ledger_events", "smartcharge.store_failsafe",
           "smartcharge.store_grants")
_MESSAGE_B = 1 << 16
_PID_BOUND_S = 5.0   # for the fork server's `P` after a fork (a loaded machine)


def available() -> bool:
    """Forking writers needs Linux's PR_SET_PDEATHSIG and pidfds; elsewhere each writer is
    started as its own interpreter (store_writer.WriterProcess._spawn)."""
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open") \
        and hasattr(signal, "pidfd_send_signal")


# -- the fork server process ----------------------------------------------------------------

def main(argv: list[str]) -> int:
    from smartcharge import store_writer
    store_writer._die_with(int(os.environ["SMARTCHARGE_WRITER_PARENT"]))
    # as the writers (store_writer.main): the server ends them, not the process group's signals
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s store-writer %(message)s")
    for name in PRELOAD:
        __import__(name)
    control = socket.socket(fileno=int(argv[0]))
    control.setblocking(True)
    import gc
    gc.freeze()   # the preloaded objects are never scanned by a writer's collector: not copied
    _serve(control)
    return 0


def _serve(control: socket.socket) -> None:
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    writers: dict[int, tuple[int, socket.socket]] = {}   # pidfd -> (pid, status socket)
    while True:
        for key, _ in selector.select():
            if key.fileobj is control:
                try:
                    message, fds, _, _ = socket.recv_fds(control, _MESSAGE_B, 3)
                except OSError:
                    message, fds = b"", []
                if not message:   # the server closed or died: its writers die with us
                    return
                _fork(message, fds, control, selector, writers)
            else:
                pidfd = key.fd
                pid, status = writers.pop(pidfd)
                selector.unregister(pidfd)
                _, wait_status = os.waitpid(pid, 0)
                os.close(pidfd)
                try:
                    status.send(b"X%d" % os.waitstatus_to_exitcode(wait_status))
                except OSError:
                    pass   # the server closed its end: nobody waits for this writer
                status.close()


def _fork(message: bytes, fds: list[int], control: socket.socket,
          selector: selectors.BaseSelector, writers: dict[int, tuple[int, socket.socket]]) -> None:
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return
    requests_fd, answers_fd, status_fd = fds
    status = socket.socket(fileno=status_fd)
    path, schema_version = pickle.loads(message)
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError as error:
        log.error("store %s: the writer could not be forked: %s", path, error)
        os.close(requests_fd)
        os.close(answers_fd)   # the server reads EOF: the writer did not start
        status.close()
        return
    if pid == 0:
        code = 1
        try:
            # nothing of the fork server's stays open in a writer: not the control socket,
            # nor the other writers' status sockets and pidfds
            selector.close()
            control.close()
            status.close()
            for pidfd, (_, other) in writers.items():
                os.close(pidfd)
                other.close()
            from multiprocessing.connection import Connection

            from smartcharge import store_writer
            store_writer._die_with(parent)
            store_writer.serve(path, Connection(requests_fd, writable=False),
                               Connection(answers_fd, readable=False), schema_version)
            code = 0
        except BaseException:
            log.exception("store %s: the writer failed", path)
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(requests_fd)
    os.close(answers_fd)
    pidfd = os.pidfd_open(pid)   # ours to reap: the pid cannot be reused before waitpid
    try:
        socket.send_fds(status, [b"P%d" % pid], [pidfd])
    except OSError:
        pass   # the server closed its end; the writer reads EOF on its pipe and exits
    writers[pidfd] = (pid, status)
    selector.register(pidfd, selectors.EVENT_READ)   # readable once the writer has exited


# -- the server's side ----------------------------------------------------------------------

class ForkedWriter:
    """The server's handle on a forked writer, in the shape `WriterProcess` uses of a
    `subprocess.Popen`: `pid`, `returncode`, `poll()`, `kill()`, `wait()`."""

    def __init__(self, status: socket.socket, server: _ForkServer) -> None:
        self._status: socket.socket | None = status
        self._server = server
        self._lock = threading.Lock()
        self._pidfd: int | None = None
        self.pid: int | None = None
        self.returncode: int | None = None

    def _receive(self, timeout_s: float | None) -> bool:
        """One message of the fork server's, waited for at most `timeout_s` (0: one already
        there; None: no bound); False if none came. Under `_lock`."""
        if self._status is None:
            return False
        self._status.settimeout(timeout_s)
        try:
            message, fds, _, _ = socket.recv_fds(self._status, 64, 1)
        except (BlockingIOError, TimeoutError):
            return False
        except OSError:
            message, fds = b"", []
        if message.startswith(b"P"):
            self.pid, self._pidfd = int(message[1:]), (fds[0] if fds else None)
            return True
        for fd in fds:
            os.close(fd)
        # its exit code; or EOF without one: the fork server ended, and the writer with it
        # (PR_SET_PDEATHSIG = SIGKILL) - or it never forked it
        self.returncode = int(message[1:]) if message.startswith(b"X") else -signal.SIGKILL
        self._status.close()
        self._status = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return True

    def __del__(self) -> None:   # a handle dropped before the exit code came (a restart)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._status is not None:
            self._status.close()

    def _take(self, timeout_s: float | None) -> None:
        """What the fork server said so far (0), or until it says the writer has exited."""
        with self._lock:
            while self.returncode is None and self._receive(timeout_s):
                pass

    def poll(self) -> int | None:
        self._take(0)
        return self.returncode

    def wait(self, timeout_s: float | None = 60.0) -> int | None:
        """Its exit code once the fork server has reaped it - at once after its answers pipe
        reached EOF; bounded, as a stopped fork server reaps nothing."""
        self._take(timeout_s)
        return self.returncode

    def kill(self) -> None:
        with self._lock:
            while self.returncode is None and self._receive(0):
                pass
            # the fork server says `P` right after the fork: a writer whose answers pipe closed
            # was forked and its pid is on the way (a start that failed is EOF, also at once)
            if self.returncode is None and self.pid is None:
                self._receive(_PID_BOUND_S)
            if self.returncode is not None:
                return
            if self._pidfd is None:   # not forked: the fork server is stuck (stopped, hung)
                self._server.kill()
                return
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _ForkServer:
    def __init__(self) -> None:
        self.owner = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = _launch([sys.executable, "-m", "smartcharge.store_forks",
                                    str(theirs.fileno())], theirs.fileno())
        finally:
            theirs.close()
        self.control = ours
        self.control.setblocking(False)   # a full socket (a stopped fork server) never blocks

    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, path: str, requests_fd: int, answers_fd: int,
              schema_version: int) -> ForkedWriter:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # the server's directory, not the fork server's (tests/test_store_forks.py)
            socket.send_fds(self.control, [pickle.dumps((os.path.abspath(path),
                                                         schema_version))],
                            [requests_fd, answers_fd, theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ForkedWriter(ours, self)

    def kill(self) -> None:
        if self.alive():
            log.error("the store writers' fork server %s forked nothing in time; ending it",
                      self.process.pid)
            self.process.kill()

    def stop(self, timeout_s: float = 5.0) -> None:
        """EOF on its control socket: it exits, and its writers with it. At the server
        process's exit only, after its stores have closed."""
        self.control.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_lock = threading.Lock()
_server: _ForkServer | None = None
_launcher: _Launcher | None = None


class _Launcher(threading.Thread):
    """Starts fork servers. PR_SET_PDEATHSIG fires when the *thread* that forked the child
    ends, not the process: a fork server started from a loop's thread (a test's, a short-lived
    one) was killed with it, and every writer of the process with it. This thread lives as
    long as the process."""

    def __init__(self) -> None:
        super().__init__(name="store-fork-launcher", daemon=True)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.start()

    def run(self) -> None:
        while True:
            argv, fd, done = self.jobs.get()
            try:
                # in "/": it outlives the directories of the server's moments (a test's)
                done.set_result(subprocess.Popen(
                    argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, cwd="/",
                    env={**os.environ, "SMARTCHARGE_WRITER_PARENT": str(os.getpid()),
                         "PYTHONPATH": os.pathsep.join(
                        p for p in [_tree(), os.environ.get("PYTHONPATH", "")] if p)}))
            except BaseException as error:
                done.set_exception(error)


def _launch(argv: list[str], fd: int) -> subprocess.Popen:
    global _launcher
    if _launcher is None or not _launcher.is_alive():   # none yet, or this is a forked child
        _launcher = _Launcher()
    done: concurrent.futures.Future = concurrent.futures.Future()
    _launcher.jobs.put((argv, fd, done))
    return done.result()


def start_writer(path: str, requests_fd: int, answers_fd: int,
                 schema_version: int) -> ForkedWriter:
    """A writer for `path`, forked by this process's fork server (started on first use, and
    again when it has died). The fds are sent, not given away: the caller closes its copies."""
    global _server
    with _lock:
        for attempt in range(2):
            if _server is None or _server.owner != os.getpid() or not _server.alive():
                if _server is None or _server.owner != os.getpid():
                    atexit.register(_stop)   # once per process that starts one
                if _server is not None:   # ours, dead; or the parent's, inherited by a fork
                    _server.control.close()
                _server = _ForkServer()
            try:
                return _server.start(path, requests_fd, answers_fd, schema_version)
            except OSError:   # it died (EPIPE) or is stuck with a full socket: a new one
                if attempt:
                    raise
                _server.process.kill()
                _server.process.wait()
        raise AssertionError("unreachable")


def server_pid() -> int | None:
    """This process's fork server, if it has one running (for tests)."""
    with _lock:
        if _server is None or _server.owner != os.getpid() or not _server.alive():
            return None
        return _server.process.pid


def _stop() -> None:
    global _server
    with _lock:
        if _server is not None and _server.owner == os.getpid():
            _server.stop()
        _server = None


def _tree() -> str:
    """The directory this smartcharge is imported from: the fork server runs the same code."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
