"""The store writers' fork server (s31-writer, smartcharge/store_forks.py): each store's writer
is forked from one process per server that has the writer's modules imported, instead of
starting an interpreter per store. The writer's promises still hold with the fork server in
the way: real processes, real signals, real SQLite files."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smartcharge import store_forks
from smartcharge.store import SqliteStore, StoreClosed, StoreOp
from smartcharge.store_ops import writer_pid
from smartcharge.store_schema import MIGRATIONS
from smartcharge.store_writer import WriterProcess
from tests.test_outside_s29_kills import _gone
from tests.test_store_writer_process import TREE, rows
from tests.writer_hold import hold

pytestmark = pytest.mark.skipif(not store_forks.available(), reason="Linux only")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def held_at_start(tmp_path: Path) -> tuple[StoreOp, Path]:
    """An op that holds its writer inside its group, and the file that says it is there."""
    inside, release = tmp_path / "inside", tmp_path / "release"
    os.mkfifo(release)
    return StoreOp(hold, str(inside), str(release)), inside


def locks_free(path: Path) -> bool:
    """Nobody holds the writers' lock or SQLite's write lock on `path`."""
    fd = os.open(str(path) + "-writers.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:   # database is locked
        return False
    finally:
        db.close()


async def wait_for(check, bound_s: float = 60.0) -> bool:
    """Until `check()` holds, at most `bound_s` (a bound for a loaded machine, not a timing)."""
    for _ in range(int(bound_s / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


async def test_every_writer_is_forked_by_one_fork_server_that_holds_no_file(tmp_path):
    first = await SqliteStore.open(str(tmp_path / "a.sqlite"), writer_process=True)
    second = await SqliteStore.open(str(tmp_path / "b.sqlite"), writer_process=True)
    try:
        writers = [await store.run(StoreOp(writer_pid)) for store in (first, second)]
        server = store_forks.server_pid()
        assert server not in (None, os.getpid())
        assert [parent_of(pid) for pid in writers] == [server, server]
        # the files and locks are the writers' alone: a fork server holding one would keep a
        # lock past its writer's death
        held = [os.readlink(f"/proc/{server}/fd/{fd}") for fd in os.listdir(f"/proc/{server}/fd")]
        assert not [name for name in held if str(tmp_path) in name], held
    finally:
        await first.close()
        await second.close()
    assert first.writer_process._process.returncode == 0   # each ended with its store
    assert second.writer_process._process.returncode == 0


async def test_a_killed_fork_server_takes_its_writer_the_callers_fail_and_a_new_one_serves(
        tmp_path):
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        writer = await store.run(StoreOp(writer_pid))
        server = store_forks.server_pid()
        op, inside = held_at_start(tmp_path)
        waiting = asyncio.ensure_future(store.run(op))
        assert await wait_for(inside.exists)   # inside its group, the locks held
        os.kill(server, signal.SIGKILL)
        with pytest.raises(StoreClosed):
            await asyncio.wait_for(waiting, 120)   # 120: the test's own bound
        assert await wait_for(lambda: _gone(writer)), "the writer outlived its fork server"
        assert await wait_for(lambda: locks_free(path))
        assert rows(path, "SELECT COUNT(*) FROM stations") == [(0,)]   # rolled back
        # the next op: a new fork server, a new writer
        assert await store.run(StoreOp(writer_pid)) not in (writer, None)
        assert store_forks.server_pid() not in (server, None)
        assert store.writer_process.starts == 2
    finally:
        await asyncio.wait_for(store.close(), 120)


SERVER = textwrap.dedent("""
    import asyncio, os, sys
    from smartcharge import store_forks
    from smartcharge.store import SqliteStore, StoreOp
    from tests.writer_hold import hold

    async def main():
        store = await SqliteStore.open(sys.argv[1], writer_process=True)
        held = asyncio.ensure_future(store.run(StoreOp(hold, sys.argv[2], sys.argv[3])))
        print(store.writer_process.pid, store_forks.server_pid(), flush=True)
        await held
    asyncio.run(main())
""")


async def test_a_killed_server_leaves_no_fork_server_nor_writer_holding_the_locks(tmp_path):
    """The server SIGKILLed while its forked writer is inside a group, holding the writers'
    lock and SQLite's: the fork server dies with the server, the writer with the fork server;
    the locks are free for the next server, and the group was never committed."""
    path = tmp_path / "s.sqlite"
    op, inside = held_at_start(tmp_path)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(path), *op.args],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": TREE})
    try:
        writer, fork_server = map(int, (await asyncio.get_running_loop().run_in_executor(
            None, server.stdout.readline)).split())
        assert await wait_for(inside.exists, 120)
        assert not locks_free(path)   # the writer holds them
        server.kill()
        server.wait(timeout=60)
        assert await wait_for(lambda: _gone(fork_server)), "the fork server outlived its server"
        assert await wait_for(lambda: _gone(writer)), "the writer outlived its server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert await wait_for(lambda: locks_free(path))
    assert rows(path, "SELECT COUNT(*) FROM stations") == [(0,)]


async def test_a_stopped_fork_server_is_ended_and_the_next_start_has_a_new_one(tmp_path):
    """A fork server that forks nothing (stopped, hung) holds a writer's start like a stuck
    writer: bounded by `answer_bound_s`, then it is ended and the next op starts a new one."""
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path))   # migrated by the server's own connection
    writer = WriterProcess(str(path), len(MIGRATIONS), asyncio.get_running_loop())
    try:
        await writer.start()   # a fork server is running
        await writer.close()
        stopped = store_forks.server_pid()
        os.kill(stopped, signal.SIGSTOP)
        try:
            writer = WriterProcess(str(path), len(MIGRATIONS), asyncio.get_running_loop())
            writer.answer_bound_s = 3.0   # while it is stopped only
            with pytest.raises(StoreClosed):
                await asyncio.wait_for(writer.start(), 120)   # 120: the test's own bound
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert await wait_for(lambda: _gone(stopped))
        writer.answer_bound_s = 60.0
        assert parent_of(await writer.run(StoreOp(writer_pid))) == store_forks.server_pid() \
            != stopped
        assert writer.starts == 2
    finally:
        await asyncio.wait_for(writer.close(), 120)
        await store.close()


async def test_a_spawned_writer_keeps_the_same_promises(tmp_path, monkeypatch):
    """`start_method = "spawn"` (not Linux; the benchmark's baseline): its own interpreter,
    a child of the server."""
    monkeypatch.setattr(WriterProcess, "start_method", "spawn")
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        writer = await store.run(StoreOp(writer_pid))
        assert parent_of(writer) == os.getpid()
        await store.run(StoreOp("station_seen", "CP1", datetime.now(UTC)))
        assert rows(path, "SELECT station_id FROM stations") == [("CP1",)]
    finally:
        await store.close()
    assert store.writer_process._process.returncode == 0


async def test_a_relative_path_is_the_servers_not_the_fork_servers(tmp_path, monkeypatch):
    """The fork server keeps the directory it was started in; the server may have moved on:
    a store opened by a relative path is the file under the server's directory."""
    first = await SqliteStore.open(str(tmp_path / "first.sqlite"), writer_process=True)
    await first.close()   # a fork server is running, started elsewhere
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    store = await SqliteStore.open("s.sqlite", writer_process=True)
    try:
        await store.run(StoreOp("station_seen", "CP1", datetime.now(UTC)))
    finally:
        await store.close()
    assert rows(tmp_path / "here" / "s.sqlite", "SELECT station_id FROM stations") == [("CP1",)]
