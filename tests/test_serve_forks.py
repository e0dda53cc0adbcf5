"""The tests' forked `smartcharge serve` (tests/serve_forks.py) is a process of its own: its own
pid and message ids, ended by SIGTERM and SIGKILL with the return codes a child of ours has, and
the module state made at import that a fresh interpreter would make differently is all made
anew in each fork."""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.hang_budget import hang_budget_s
from tests.serve_forks import ForkedServe, _made_anew_after_fork, serve_popen
from tests.sim_fixtures import STATION_PASSWORD
from tests.test_kill_points import Server

REPO = Path(__file__).resolve().parent.parent
# calls whose value differs per process or per start: made at import, a fork would share it
_PER_PROCESS = {("uuid", "uuid4"), ("uuid", "uuid1"), ("time", "time"), ("time", "monotonic"),
                ("time", "time_ns"), ("os", "getpid"), ("os", "urandom"), ("random", "random"),
                ("random", "randint"), ("random", "Random"), ("secrets", "token_hex"),
                ("secrets", "token_bytes"), ("datetime", "now"), ("SystemRandom", "")}


def _import_time_per_process_state() -> set[tuple[str, str]]:
    """(module, name) of every module-level assignment in smartcharge/ whose value calls one of
    `_PER_PROCESS`."""
    found = set()
    for path in (REPO / "smartcharge").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
                continue
            for call in ast.walk(node.value):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                        and isinstance(call.func.value, ast.Name) \
                        and (call.func.value.id, call.func.attr) in _PER_PROCESS:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    found |= {(module, t.id) for t in targets if isinstance(t, ast.Name)}
    return found


def test_every_per_process_value_made_at_import_is_made_anew_in_a_fork():
    made_anew = {("smartcharge.ocpp.central", "_ID_PREFIX"),
                 ("smartcharge.ocpp.v201.commands", "_remote_start_ids")}
    assert _import_time_per_process_state() == made_anew, \
        "a new module-level per-process value: make it anew in serve_forks._made_anew_after_fork"
    from smartcharge.ocpp import central
    before = central._ID_PREFIX
    try:
        _made_anew_after_fork()
        assert central._ID_PREFIX != before
    finally:
        central._ID_PREFIX = before


async def _first_call_id(server: Server) -> str:
    """The unique id of the first call the server sends CP1 once it booted."""
    await server.wait_listening()
    auth = base64.b64encode(f"CP1:{STATION_PASSWORD}".encode()).decode()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"ws://127.0.0.1:{server.port}/ocpp/CP1",
                                   protocols=("ocpp1.6",),
                                   headers={"Authorization": f"Basic {auth}"}) as ws:
            await ws.send_str(json.dumps([2, "boot", "BootNotification", {
                "chargePointVendor": "test", "chargePointModel": "forks"}]))
            async with asyncio.timeout(hang_budget_s(10)):
                async for message in ws:
                    frame = json.loads(message.data)
                    if frame[0] == 2:
                        return frame[1]
    raise AssertionError("the server sent CP1 no call")


async def test_two_forked_serves_are_two_processes_with_their_own_message_ids(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    servers = [Server(tmp_path / "a"), Server(tmp_path / "b")]
    try:
        for server in servers:
            server.start()
        assert all(isinstance(s.process, ForkedServe) for s in servers)
        assert len({s.process.pid for s in servers} | {os.getpid()}) == 3
        ids = [await _first_call_id(server) for server in servers]
        # `<process prefix>-<n>`: the same n in both, never the same prefix
        assert ids[0].rsplit("-", 1)[0] != ids[1].rsplit("-", 1)[0], ids
        assert all(s.process.poll() is None for s in servers)
        with pytest.raises(subprocess.TimeoutExpired):
            servers[0].process.wait(timeout=0.05)
        servers[0].process.send_signal(signal.SIGTERM)     # a clean shutdown
        assert servers[0].process.wait(timeout=hang_budget_s(10)) == 0
        servers[1].process.kill()
        assert servers[1].process.wait(timeout=10) == -signal.SIGKILL
        assert servers[1].process.poll() == -signal.SIGKILL
        servers[1].process.kill()                          # ended: a no-op, as Popen's
    finally:
        for server in servers:
            server.stop()


def test_a_forked_serve_gives_the_exit_code_output_and_directory_of_a_fresh_one(tmp_path):
    missing = "no-such-site.toml"
    forked = serve_popen(["serve", "--config", missing], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, cwd=tmp_path)
    assert isinstance(forked, ForkedServe)
    output, _ = forked.communicate(timeout=hang_budget_s(10))
    fresh = subprocess.run([sys.executable, "-m", "smartcharge", "serve", "--config", missing],
                           capture_output=True, cwd=tmp_path, env={
                               **os.environ, "PYTHONPATH": str(REPO)})
    assert forked.returncode == fresh.returncode == 2
    assert output == fresh.stdout + fresh.stderr
    assert b"no-such-site.toml: cannot read the site file" in output
