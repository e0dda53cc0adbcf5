"""Background tasks that belong to one owner (a station link, a simulated station, dispatch).

asyncio keeps only a weak reference to a task, so each owner holds its own; a failed task is
logged with its owner's name (nobody awaits it to see the error), and the owner cancels them all
when it closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable


class OwnedTasks:
    def __init__(self, logger: logging.Logger, owner: str) -> None:
        self._log = logger
        self._owner = owner
        self._tasks: set[asyncio.Future] = set()

    def spawn(self, awaitable: Awaitable) -> asyncio.Future:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def cancel_all(self) -> list[asyncio.Future]:
        """Cancel every running task; returns them so the caller can await their end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def close(self) -> None:
        await asyncio.gather(*self.cancel_all(), return_exceptions=True)

    def _done(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s: background task failed", self._owner,
                            exc_info=task.exception())
