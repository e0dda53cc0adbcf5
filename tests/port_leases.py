"""Ports a test reserved for a server in another process (`sim_fixtures.free_port`),
held until the test ends: conftest closes them after the test's own clean-up has stopped its
servers. One module, imported by one name: test files import sim_fixtures both as
`sim_fixtures` and as `tests.sim_fixtures` (two module objects), and both must share the list."""

from __future__ import annotations

from typing import IO

held: list[IO] = []


def let_go() -> None:
    """Close every lock a test took (after its servers are gone)."""
    while held:
        held.pop().close()
