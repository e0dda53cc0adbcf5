"""The tests' own server ports (tests/sim_fixtures.py): a port handed to a test's server stays
its own until the test ends, though the server binds it only seconds later (a `serve`
subprocess importing) or binds it again after each restart."""

from __future__ import annotations

import fcntl
import itertools

from tests import port_leases, sim_fixtures


def test_a_port_handed_to_a_test_is_not_handed_out_again_until_the_test_ends():
    """Until session 36, `free_port()` only bound the port and closed it again: another pytest
    process walking the same block (copies of a test; another worktree's suite run beside this
    one) was handed the same port before this test's `serve` bound it, and one test's stations
    talked to another's server. The walk is set back here to come to the port again, as
    another process's does: the reservation is a lock on an open file (flock), which another
    open of the file meets in this process as in any other."""
    port = sim_fixtures.free_port()
    start = (port - sim_fixtures._FIRST_PORT) % sim_fixtures._PORT_BLOCK
    sim_fixtures._next_port = itertools.count(start)
    assert sim_fixtures.free_port() != port
    # let go at the test's end (conftest): then anyone may reserve it again
    port_leases.let_go()
    with open(sim_fixtures._PORT_LOCKS / f"{port}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
