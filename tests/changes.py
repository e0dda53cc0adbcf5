"""Waiting on a test peer without polling: the peer sets its `changed` event each time it
records something (a registration, a report, an opt); the wait re-checks only then."""

from __future__ import annotations

import asyncio

from tests.hang_budget import hang_budget_s


async def wait_changed(changed: asyncio.Event, predicate, timeout_s: float, what: str,
                       who: str) -> None:
    """Until `predicate()` holds, re-checked at each `changed`; AssertionError naming `who`
    and `what` after `timeout_s`."""
    async def watch():
        while not predicate():
            changed.clear()
            await changed.wait()
    try:
        await asyncio.wait_for(watch(), hang_budget_s(timeout_s))
    except TimeoutError:
        raise AssertionError(f"{who}: timed out after {hang_budget_s(timeout_s):g} s waiting "
                             f"for {what}")
