"""How long a test waits for an event before it calls the wait hung.

Every bounded wait of the tests (`wait_until` and its kin) waits on the event that matters (a
message seen, a row committed, a profile acknowledged); its budget only bounds a hang. The
budgets written at the call sites are what a step takes on a quiet machine with room to spare.
The README's command runs four pytest-xdist workers on two cores, and on a shared machine (load
8-12) a process gets a sixth of a core: a set-up that takes 1.5 s quiet took over 10 s, and a
10 s budget called it hung (tests/test_dispatch_trust.py's `cp1_on_a_tx_profile` in a CI
rehearsal, benchmarks/README.md, s26-suite). So every budget is the written one times
HANG_FACTOR: a wait that holds costs nothing more, only a real hang is reported later.
"""

from __future__ import annotations

HANG_FACTOR = 6.0


def hang_budget_s(quiet_s: float) -> float:
    """The real budget of a wait written as `quiet_s` (what a quiet machine needs, spare
    included)."""
    return quiet_s * HANG_FACTOR
