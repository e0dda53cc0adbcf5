"""Session 29, an outside judge of durability: kills and stops at bad moments, on real
`smartcharge serve` processes and the real writer process (docs/promises.md, "Audit, session 29
(kills)"). Each test failed before its fix."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.test_serve_single_instance import REPO, _serve, _site_file
from tests.test_site_restart import listening



async def test_a_second_serve_on_the_same_file_through_a_symlink_refuses_to_start(tmp_path):
    """The lock was `<path as written>.lock`: a second server given the same file through a
    symlink (a data directory linked elsewhere, an old path kept as a link) took
    `link.sqlite.lock`, and both served one SQLite file (SQLite follows the link: one WAL)
    with two sites in memory - and two writers' locks, so their groups were not ordered by
    our flock either."""
    database = tmp_path / "real.sqlite"
    link = tmp_path / "link.sqlite"
    link.symlink_to(database.name)
    first_file, first_port = _site_file(tmp_path, "first", database)
    second_file, _ = _site_file(tmp_path, "second", link)
    first = _serve(first_file, tmp_path / "first.log")
    second = None
    try:
        await listening(f"http://127.0.0.1:{first_port}", timeout_s=180)   # a loaded CI
        second = _serve(second_file, tmp_path / "second.log")
        try:
            code = second.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail("a second serve on the same file through a symlink is running")
        assert code == 2
        said = (tmp_path / "second.log").read_text()
        assert "already" in said and str(database) in said, said
        assert first.poll() is None
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def _gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


async def test_a_stopped_writer_is_ended_its_callers_failed_and_a_new_one_serves(tmp_path):
    """SIGSTOP of the writer process (a debugger, a cgroup freezer, a process stuck in the
    kernel) held every caller for as long as it was stopped - the stations' MeterValues
    unanswered, for ever - and nothing noticed. Now a writer that answers nothing for
    `answer_bound_s` with work in hand is ended: its callers fail (not answered: their
    stations send again), the next op starts a new writer."""
    from smartcharge.store import SqliteStore, StoreClosed, StoreOp
    from smartcharge.store_ops import writer_pid
    from tests.test_store_writer_process import T0, meter_values_op, rows, start_op

    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        started = await store.run(start_op())
        stopped = store.writer_process.pid
        os.kill(stopped, signal.SIGSTOP)
        # a short bound while it is stopped only: a new writer's start under load may take
        # longer, and is bounded by the same clock
        store.writer_process.answer_bound_s = 3.0
        sample = meter_values_op(started.transaction_id, T0 + timedelta(minutes=1), 100)
        with pytest.raises(StoreClosed):
            await asyncio.wait_for(store.run(sample), 120)   # 120: the test's own bound
        store.writer_process.answer_bound_s = 60.0
        assert await store.run(StoreOp(writer_pid)) != stopped
        assert store.writer_process.starts == 2
        while not _gone(stopped):   # SIGKILL ends a stopped process too
            await asyncio.sleep(0.05)
        # never answered, never committed: the station's re-send is written once
        again = await store.run(sample)
        assert not again.duplicate and again.new_samples == 2
        assert rows(path, "SELECT COUNT(*) FROM meter_samples") == [(2,)]
    finally:
        await asyncio.wait_for(store.close(), 120)


async def test_a_store_closes_with_its_writer_stopped(tmp_path):
    """A server stopping (SIGTERM) waited for its writer to answer the stop request: with the
    writer stopped, `Store.close` - and the server's shutdown - never ended."""
    from smartcharge.store import SqliteStore, StoreOp
    from smartcharge.store_ops import writer_pid

    store = await SqliteStore.open(str(tmp_path / "s.sqlite"), writer_process=True)
    stopped = await store.run(StoreOp(writer_pid))
    os.kill(stopped, signal.SIGSTOP)
    store.writer_process.answer_bound_s = 3.0
    try:
        await asyncio.wait_for(store.close(), 120)   # 120: the test's own bound
    finally:
        if not _gone(stopped):
            os.kill(stopped, signal.SIGKILL)
    assert _gone(stopped)


_SERVER = """
import asyncio, sys
from smartcharge.store import SqliteStore, StoreOp
from smartcharge.store_ops import writer_pid

async def main():
    store = await SqliteStore.open(sys.argv[1], writer_process=True)
    print(await store.run(StoreOp(writer_pid)), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _store_server(path: Path) -> subprocess.Popen:
    """A process that holds a store with its writer process, printing the writer's pid."""
    return subprocess.Popen([sys.executable, "-c", _SERVER, str(path)],
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": REPO})


async def test_a_killed_servers_stopped_writer_does_not_outlive_it(tmp_path):
    """A server SIGKILLed while its writer was stopped left the writer behind, stopped for
    ever: an orphan holding the file open, and - stopped inside a group - the writers' lock
    and SQLite's write lock, so the next server's writer waited on them for ever. The
    writer now dies with its server (PR_SET_PDEATHSIG): what it committed is on disk,
    what it had not is rolled back by SQLite, and nobody was answered for it."""
    path = tmp_path / "s.sqlite"
    server = _store_server(path)
    try:
        writer = int(await asyncio.get_running_loop().run_in_executor(
            None, server.stdout.readline))
        os.kill(writer, signal.SIGSTOP)
        server.kill()
        server.wait(timeout=60)
        for _ in range(1200):   # a bounded wait on the state: at most 60 s
            if _gone(writer):
                break
            await asyncio.sleep(0.05)
        assert _gone(writer), "the stopped writer outlived its server"
    finally:
        if server.poll() is None:
            server.kill()
        if not _gone(writer):
            os.kill(writer, signal.SIGKILL)
    # the next server's writer takes the file at once
    from smartcharge.store import SqliteStore, StoreOp
    from smartcharge.store_ops import writer_pid
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        assert await asyncio.wait_for(store.run(StoreOp(writer_pid)), 60) != writer
    finally:
        await store.close()
