"""A database `smartcharge serve` cannot use - a path that is a directory, a file that is not
SQLite, a schema newer than this smartcharge - ends the start with one line naming the file
and status 2, as a database in use does; it was a Python traceback and status 1 (session 32's
kills audit). Nothing listens, so nothing is acknowledged. Real `smartcharge serve`
processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from smartcharge.store_schema import MIGRATIONS
from tests.sim_fixtures import free_port, site_toml

REPO = str(Path(__file__).resolve().parent.parent)


def _start(tmp_path: Path, database: Path) -> subprocess.CompletedProcess:
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_toml(1, 1, port=free_port(), database=str(database)))
    return subprocess.run([sys.executable, "-m", "smartcharge", "serve", "--config",
                           str(site_file)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO})


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"these are the operator's notes, not a database\n" * 200)


def _too_new(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()


@pytest.mark.parametrize("make", [Path.mkdir, _not_sqlite, _too_new],
                         ids=["a directory", "not sqlite", "a newer schema"])
def test_a_database_serve_cannot_use_ends_the_start_with_one_line_naming_it(tmp_path, make):
    database = tmp_path / "site.sqlite"
    make(database)
    done = _start(tmp_path, database)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if str(database) in line]
    assert said and said[-1].startswith("smartcharge: "), done.stderr
    assert "listening" not in done.stdout
