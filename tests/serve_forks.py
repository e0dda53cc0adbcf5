"""`python -m smartcharge serve` for the tests, forked from one process per pytest worker that
has already imported what `serve` imports: a fresh interpreter spent ~0.75 s of CPU (quiet
machine; 1.5-2 s of wall time at load 8) in imports before it read its site file, and the
suite starts ~90 of them, most while other tests wait on sockets.

`serve_popen(args, ...)` takes the arguments after `-m smartcharge` and `subprocess.Popen`'s
keywords and returns a `subprocess.Popen` whose process is `smartcharge.cli.main(args)` in a
process of its own - its own pid, stdio, working directory and environment, killed by SIGKILL,
exiting through the interpreter (atexit, flushes) as `python -m smartcharge` does. It is the
forker's child, not ours: the forker sends its pid with a pidfd (signals go through the pidfd,
never to a reused pid) and its wait status once it has reaped it, which `poll()` and `wait()`
read, so `returncode` is what a child of ours would have (-9 after a SIGKILL).

What a fork shares that fresh interpreters would not:
- state made when a module is imported: `smartcharge.ocpp.central._ID_PREFIX` (message ids
  must differ between processes: a restarted server's ids met the station's memory of the
  killed one's) and the 2.0.1 remote-start ids' first value (the start's time) are made anew
  in each child; `tests/test_serve_forks.py` keeps that list complete;
- the string hash seed and the interpreter's flags and `sys.path`: a request whose `PYTHON*`
  environment differs from the forker's gets a real `python -m smartcharge` instead.
Tests of the interpreter's own start (tests/test_cli_import.py, the CLI's argument errors) and
the kill-point runner (tests/kill_point.py) start real interpreters. SMARTCHARGE_TEST_FRESH_SERVE=1
makes every start a real one.

The forker: `python -m tests.serve_forks CONTROL_FD`, one per pytest worker, started at its
first request; it dies with the worker (PR_SET_PDEATHSIG) or when the control socket closes.
It never starts a thread, a loop or a store, so a fork copies no held lock.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRESH_ENV = "SMARTCHARGE_TEST_FRESH_SERVE"
# what `serve` imports before it reads its site file (cli.serve_command): all but a few of the
# ~1 080 modules a serving process holds
PRELOAD = ("smartcharge.cli", "smartcharge.log_lines", "smartcharge.gc_serving", "smartcharge.app",
           "smartcharge.ocpp.fast_schema", "smartcharge.serving_loop", "smartcharge.store",
           "aiohttp.web", "encodings.utf_8_sig")
_MESSAGE_B = 1 << 16
_PR_SET_PDEATHSIG = 1


def _made_anew_after_fork() -> None:
    """The module state made at import that must differ per process (module docstring)."""
    import itertools
    import time
    import uuid

    from smartcharge.ocpp import central
    from smartcharge.ocpp.v201 import commands
    central._ID_PREFIX = uuid.uuid4().hex[:12]
    commands._remote_start_ids = itertools.count(int(time.time()) % 1_000_000_000)


# -- the forker ------------------------------------------------------------------------------

def _forker(control: socket.socket) -> dict | None:
    """Serves fork requests until the control socket closes (None); in a forked child returns
    its request."""
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, None)
    children: dict[int, tuple[int, socket.socket]] = {}   # pidfd -> (pid, status socket)
    while True:
        for key, _ in selector.select():
            if key.data is not None:            # a child exited: reap it, tell its caller
                pid, status = key.data
                _, wait_status = os.waitpid(pid, 0)
                selector.unregister(key.fd)
                os.close(key.fd)
                del children[key.fd]
                try:
                    status.send(b"X%d" % wait_status)
                except OSError:
                    pass                        # the caller let go of its Popen
                status.close()
                continue
            message, fds, _, _ = socket.recv_fds(control, _MESSAGE_B, 4)
            if not message:
                return None
            request = pickle.loads(message)
            status = socket.socket(fileno=fds[3])
            pid = os.fork()
            if pid == 0:
                selector.close()
                control.close()
                status.close()
                for pidfd, (_, other) in children.items():
                    os.close(pidfd)
                    other.close()
                request["stdio"] = fds[:3]
                return request
            for fd in fds[:3]:
                os.close(fd)
            pidfd = os.pidfd_open(pid)          # before any reaping: it is our child's
            try:
                socket.send_fds(status, [b"P%d" % pid], [pidfd])
            except OSError:
                pass
            children[pidfd] = (pid, status)
            selector.register(pidfd, selectors.EVENT_READ, (pid, status))


def _become(request: dict) -> None:
    for target, fd in enumerate(request["stdio"]):
        os.dup2(fd, target)
    for fd in set(request["stdio"]) - {0, 1, 2}:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [os.path.join(REPO, "smartcharge", "__main__.py"), *request["args"]]
    _made_anew_after_fork()


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(os.environ["SMARTCHARGE_TEST_FORKER_PARENT"]):
        return 0                                # the worker died before the prctl
    for name in PRELOAD:
        __import__(name)
    sys.stdout.flush()
    sys.stderr.flush()
    request = _forker(socket.socket(fileno=int(argv[0])))
    if request is None:
        return 0
    _become(request)
    from smartcharge.cli import main as smartcharge_main
    return smartcharge_main(request["args"])


# -- the worker's side -----------------------------------------------------------------------

class _Forker:
    def __init__(self) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.env = {**os.environ, "SMARTCHARGE_TEST_FORKER_PARENT": str(os.getpid())}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.serve_forks", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), cwd=REPO, env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        theirs.close()
        self.lock = threading.Lock()
        # ended with the worker and waited for: its CPU (and its reaped serves') is counted
        # with the worker's, as the serves' was when they were the worker's children
        atexit.register(self.close)

    def close(self) -> None:
        self.control.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_forker_of: dict[int, _Forker] = {}   # by pid: a forked pytest process makes its own
_forker_lock = threading.Lock()


def _the_forker() -> _Forker | None:
    with _forker_lock:
        forker = _forker_of.get(os.getpid())
        if forker is None or forker.process.poll() is not None:
            forker = _forker_of[os.getpid()] = _Forker()
        return forker


def _python_env(env: dict) -> dict:
    """What of `env` the interpreter reads at its start. PYTHONPATH as the directories it puts
    on sys.path, each once: tests/conftest.py, run twice (as `conftest` and as `tests.conftest`),
    puts the tree there twice, and a test's own "PYTHONPATH: <the tree>" names the same path."""
    python = {k: v for k, v in env.items() if k.startswith("PYTHON")}
    if "PYTHONPATH" in python:
        python["PYTHONPATH"] = tuple(dict.fromkeys(p for p in python["PYTHONPATH"].split(
            os.pathsep) if p))
    return python


class ForkedServe(subprocess.Popen):
    """A `subprocess.Popen` of a `serve` forked by the worker's forker (module docstring)."""

    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env,
                       startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite,
                       errread, errwrite, *rest) -> None:
        if preexec_fn is not None or pass_fds or shell:
            raise ValueError("a forked serve takes no preexec_fn, pass_fds or shell")
        stdio = [fd if fd != -1 else default for fd, default in
                 ((p2cread, 0), (c2pwrite, 1), (errwrite, 2))]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            request = pickle.dumps({"args": list(args[3:]), "cwd": os.fspath(cwd or os.getcwd()),
                                    "env": dict(os.environ if env is None else env)})
            forker = _the_forker()
            with forker.lock:
                socket.send_fds(forker.control, [request], [*stdio, theirs.fileno()])
            theirs.close()
            # the forker imports for a second or more at its start (under load: many)
            ours.settimeout(600)
            message, fds, _, _ = socket.recv_fds(ours, 64, 1)
            if not message.startswith(b"P") or len(fds) != 1:
                raise OSError(f"the serve forker did not start the process: {message!r}")
        except BaseException:
            ours.close()
            theirs.close()
            raise
        ours.settimeout(None)
        self.pid, self._pidfd, self._status = int(message[1:]), fds[0], ours
        self._child_created = True
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _exited(self, wait_status: int) -> None:
        self._handle_exitstatus(wait_status)
        os.close(self._pidfd)
        self._status.close()

    def _read_status(self, timeout_s: float | None) -> bool:
        if self._status.fileno() == -1:
            return self.returncode is not None
        selector = selectors.DefaultSelector()
        with selector:
            selector.register(self._status, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                return False
        message = self._status.recv(64)
        if not message:                         # the forker died: its children die unreaped
            raise OSError(f"the serve forker died before telling how {self.pid} ended")
        self._exited(int(message[1:]))
        return True

    def _internal_poll(self, _deadstate=None, **_):
        if self.returncode is None:
            with self._waitpid_lock:
                if self.returncode is None:
                    try:
                        self._read_status(0)
                    except OSError:
                        if _deadstate is None:
                            raise
                        self.returncode = _deadstate
        return self.returncode

    def _wait(self, timeout):
        with self._waitpid_lock:
            if self.returncode is None and not self._read_status(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig) -> None:
        self.poll()
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass


def serve_popen(args: list[str], **popen_kw) -> subprocess.Popen:
    """`python -m smartcharge *args` with `subprocess.Popen`'s keywords: forked (module
    docstring) where it can be, a fresh interpreter where not."""
    env = popen_kw.get("env")
    command = [sys.executable, "-m", "smartcharge", *args]
    if os.environ.get(FRESH_ENV) != "1" and sys.platform.startswith("linux"):
        forker = _the_forker()
        if _python_env(os.environ if env is None else env) == _python_env(forker.env):
            return ForkedServe(command, **popen_kw)
    return subprocess.Popen(command, **popen_kw)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
