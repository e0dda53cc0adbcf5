"""A store that refuses writes (a full or failed disk, the file replaced or moved under us) must
be visible to an operator and must not flood the log: session 33's kills audit left a refused
MeterValues costing two tracebacks (24 log lines) each - thousands of stations sending every
minute fill the log, maybe on the same full disk - and nothing said the store was refusing.

Real `serve` processes, real SQLite files, raw OCPP-J 1.6 stations. The store is made to refuse
deterministically as the kills tests do (`store_ops.still_the_database`): the file moved away
from its path refuses every commit, moved back it is the same file again (recovery in place)."""

from __future__ import annotations

import asyncio
import os
import re

import aiohttp
from ocpp.messages import MessageType
from ocpp.v16 import call as call16

from tests.hang_budget import hang_budget_s
from tests.test_outside_s32_kills import _server, until
from tests.test_outside_s33_kills import _meter_values, _restored_from_backup, _started_charging


async def _health(server) -> tuple[int, dict]:
    """`GET /api/health` without a token (a load balancer's probe)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/api/health") as response:
            return response.status, await response.json()


def _log_since(server, offset: int) -> str:
    return (server.db_path.parent / "server.log").read_bytes()[offset:].decode()


def _log_size(server) -> int:
    return (server.db_path.parent / "server.log").stat().st_size


def _with_summary_every(server, seconds: float) -> None:
    site = server.site_file.read_text()
    server.site_file.write_text(site.replace(
        "[server]\n", f"[server]\nstore_refusal_summary_s = {seconds}\n", 1))


async def test_a_refusing_store_logs_one_error_not_a_traceback_a_message(tmp_path):
    """The database file restored from a backup under `serve`: six MeterValues refused (each a
    CALLERROR) were two tracebacks each. Now the first refusal is one ERROR line (one
    traceback at most) and the next five, inside the summary's minute, no line at all; the
    health route says the store refuses, token-free, 503, with the count and the cause; after
    a restart on the good file it says the store writes (200)."""
    server = _server(tmp_path, 1)
    try:
        async with aiohttp.ClientSession() as http:
            cp, transaction_id = await _started_charging(http, server)
            assert (await cp.call("m1", _meter_values(transaction_id, 1)))[0] == \
                MessageType.CallResult
            status, health = await _health(server)
            assert (status, health["store"]) == (200, "writing"), health
            offset = _log_size(server)
            _restored_from_backup(server.db_path)
            for i in range(2, 8):
                frame = await cp.call(f"m{i}", _meter_values(transaction_id, i))
                assert frame[0] == MessageType.CallError, (i, frame)
            status, health = await _health(server)
            said = _log_since(server, offset)
            assert said.count("Traceback") <= 1, said
            errors = [line for line in said.splitlines() if " ERROR " in line]
            assert len(errors) == 1, said
            assert f"the database file {server.db_path} was replaced" in errors[0], said
            assert status == 503, health
            assert health["store"] == "refusing" and health["refused"] >= 6, health
            assert "replaced" in health["cause"] and health["since"].endswith("+00:00"), health
            assert not {"id_tag", "stations", "sessions"} & set(health), health
            server.process.kill()
            server.process.wait(timeout=10)
            server.start()
            await server.wait_listening()
            status, health = await _health(server)
            assert (status, health["store"], health["refused"]) == (200, "writing", 0), health
    finally:
        server.stop()


async def test_a_refusing_store_sums_up_then_says_it_writes_again(tmp_path):
    """The file moved away from its path refuses every commit; with the summary every 0.5 s
    (a setting, so no test waits a minute) the refusals after the first are counted in
    "N writes refused in the last ..." lines (writes: the messages' and the dispatcher's);
    moved back, the next MeterValues is stored, one line says the store writes again and how
    many it refused, and the health route answers 200 again."""
    server = _server(tmp_path, 1)
    _with_summary_every(server, 0.5)
    moved = server.db_path.with_name("moved.sqlite")
    try:
        async with aiohttp.ClientSession() as http:
            cp, transaction_id = await _started_charging(http, server)
            offset = _log_size(server)
            os.rename(server.db_path, moved)
            refused = 0
            summaries: list[int] = []

            def summed_up() -> bool:
                summaries[:] = [int(n) for n in re.findall(
                    r"(\d+) writes refused in the last", _log_since(server, offset))]
                return len(summaries) >= 1

            async def refuse_one() -> None:
                nonlocal refused
                frame = await cp.call(f"r{refused}", _meter_values(transaction_id, 1))
                assert frame[0] == MessageType.CallError, frame
                refused += 1

            await refuse_one()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + hang_budget_s(30)
            while not summed_up():   # refusals keep coming until the interval has passed
                assert loop.time() < deadline, "no summary line"
                await refuse_one()
            status, health = await _health(server)
            assert status == 503 and health["store"] == "refusing", health
            assert "deleted or moved" in health["cause"], health
            said = _log_since(server, offset)
            assert said.count("Traceback") <= 1, said
            errors = [line for line in said.splitlines() if " ERROR " in line]
            assert len(errors) == 1 + len(summaries), said   # the first, then only summaries
            # writes, not messages: the dispatcher's audit rows are refused too
            assert 1 <= sum(summaries) < health["refused"], (summaries, health)
            os.rename(moved, server.db_path)
            frame = await cp.call("back", _meter_values(transaction_id, 2))
            assert frame[0] == MessageType.CallResult, frame
            await until(lambda: "writes again" in _log_since(server, offset), 10,
                        "the line that says the store writes again")
            again = next(line for line in _log_since(server, offset).splitlines()
                         if "writes again" in line)
            total = int(re.search(r"(\d+) writes refused", again).group(1))
            assert total >= refused, (again, refused)
            status, health = await _health(server)
            assert (status, health["store"]) == (200, "writing"), health
    finally:
        server.stop()
