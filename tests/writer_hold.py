"""A store op that holds its writer inside a group (tests/test_store_forks.py): it writes a row,
says so by creating `inside`, then waits on `release` (a FIFO) - with the group's transaction,
the writers' lock and SQLite's write lock held. Stdlib only: the writer imports it when it
unpickles the op."""

from __future__ import annotations

import os
from datetime import UTC, datetime


def hold(tx, inside: str, release: str) -> None:
    tx.station_seen("HELD", datetime.now(UTC))
    with open(inside, "w"):
        pass
    with open(release) as fifo:   # blocks until a writer opens it: never, in these tests
        fifo.read()
    os.remove(inside)
