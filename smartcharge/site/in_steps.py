"""Work over every connector of a large site, written once as a generator that yields between
steps: run at once (tests, benchmarks, no loop) or on the event loop, giving the loop back at
every yield so the stations' answers never wait for it long (issue 10: the loop is never
blocked for more than 20 ms)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

Steps = Generator[None, None, T]


def run_all(steps: Steps[T]) -> T:
    """Every step at once; the generator's return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def run_async(steps: Steps[T], share=None) -> T:
    """The generator's return value, giving the loop back between two steps: at every step,
    or with `share` (turn_share.TurnShare, when run through it) once the turn's share of
    background CPU is spent."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        if share is None or share.should_yield():
            await asyncio.sleep(0)


def chunks(items: list, size: int):
    """(first index, the items from there) per step of `size`."""
    for first in range(0, len(items), size):
        yield first, items[first:first + size]
