"""One `smartcharge serve` per database. A second one started on the same SQLite file (another
port, a unit started twice, a restart before the old process is gone) ran happily beside the
first: each with its own site in memory - a DR event or a cap the first acknowledged (stored)
was never in force on the stations connected to the second, and each sent its own plans. The
second now refuses to start, naming the database; a SIGKILLed first leaves nothing behind that
stops the restart. Real `smartcharge serve` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.sim_fixtures import free_port, site_toml
from tests.test_site_restart import listening

REPO = str(Path(__file__).resolve().parent.parent)


def _serve(site_file: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smartcharge", "serve", "--config",
                             str(site_file)], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": REPO})


def _site_file(tmp_path: Path, name: str, database: Path) -> tuple[Path, int]:
    port = free_port()
    path = tmp_path / f"{name}.toml"
    path.write_text(site_toml(1, 1, port=port, database=str(database)))
    return path, port


async def test_a_second_serve_on_the_same_database_refuses_to_start(tmp_path):
    database = tmp_path / "one.sqlite"
    first_file, first_port = _site_file(tmp_path, "first", database)
    second_file, second_port = _site_file(tmp_path, "second", database)
    first = _serve(first_file, tmp_path / "first.log")
    second = None
    try:
        await listening(f"http://127.0.0.1:{first_port}")
        second = _serve(second_file, tmp_path / "second.log")
        try:
            code = second.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("a second serve on the same database is running")
        assert code != 0
        said = (tmp_path / "second.log").read_text()
        assert str(database) in said and "already" in said, said
        assert first.poll() is None
        async with aiohttp.ClientSession() as http:   # the first still serves
            async with http.get(f"http://127.0.0.1:{first_port}/api/openapi.json") as resp:
                assert resp.status == 200
        # a SIGKILL leaves no stale lock: the restart starts
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = _serve(second_file, tmp_path / "second.log")
        await listening(f"http://127.0.0.1:{second_port}")
        assert second.poll() is None
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
